"""The fake upstreams' payloads: valid per Appendix A, deterministic, honouring parameters."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import orjson
import pytest

from demo.data import generate_payload, used_params
from demo.faults import PayloadVariant, apply_variant, render_body
from schemas.endpoints import EndpointKey
from schemas.validation import validate_payload

PARAMS = {"slug": "one-piece-episode-12", "q": "naruto"}
DETAIL_PARAMS = {EndpointKey.ANIME_DETAIL: {"slug": "one-piece"}}
SOURCES = ("samehadaku", "drakorid", "kuramanime_v2")


def _gen(
    endpoint: EndpointKey, source: str, params: Mapping[str, str], day: str | None, seed: int = 1
) -> Any:
    """The payload typed loosely, so tests can index into it like the JSON it is."""
    return generate_payload(endpoint, source, params, day, seed)


def _payload(endpoint: EndpointKey, source: str = "samehadaku", seed: int = 1) -> Any:
    return _gen(endpoint, source, DETAIL_PARAMS.get(endpoint, PARAMS), "senin", seed)


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("endpoint", list(EndpointKey))
def test_every_endpoint_payload_passes_the_gateway_validator(
    endpoint: EndpointKey, source: str
) -> None:
    result = validate_payload(endpoint, _payload(endpoint, source), 0.5)

    assert result.ok, result.issues


@pytest.mark.parametrize("endpoint", list(EndpointKey))
def test_same_inputs_give_the_same_payload(endpoint: EndpointKey) -> None:
    assert _payload(endpoint, seed=3) == _payload(endpoint, seed=3)


@pytest.mark.parametrize("endpoint", list(EndpointKey))
def test_another_seed_gives_other_data(endpoint: EndpointKey) -> None:
    assert _payload(endpoint, seed=1) != _payload(endpoint, seed=2)


@pytest.mark.parametrize("endpoint", list(EndpointKey))
def test_payload_names_its_source_with_high_confidence(endpoint: EndpointKey) -> None:
    payload = _payload(endpoint, "otakudesu")

    assert payload["source"] == "otakudesu"
    assert payload["message"]
    assert 0.9 <= payload["confidence_score"] <= 1.0


@pytest.mark.parametrize("endpoint", list(EndpointKey))
def test_every_url_points_at_the_sources_example_host(endpoint: EndpointKey) -> None:
    urls = [s for s in _strings(_payload(endpoint, "otakudesu")) if "://" in s]

    assert urls
    assert all(url.startswith("https://otakudesu.example/") for url in urls)


def test_drama_sources_serve_dramas_and_anime_sources_serve_anime() -> None:
    drama = _gen(EndpointKey.SEARCH, "drakorid", {"q": "queen"}, None)
    anime = _gen(EndpointKey.SEARCH, "samehadaku", {"q": "queen"}, None)

    assert drama["data"][0]["judul"] == "Queen of Tears"
    assert anime["data"][0]["judul"] != "Queen of Tears"


@pytest.mark.parametrize("query", ["naruto", "KAISEN", "Zzyzx Quest"])
def test_every_search_result_title_contains_the_query(query: str) -> None:
    payload = _gen(EndpointKey.SEARCH, "samehadaku", {"q": query}, None)

    titles = [item["judul"] for item in payload["data"]]

    assert titles
    assert all(query.casefold() in title.casefold() for title in titles)


def test_anime_detail_describes_the_requested_slug() -> None:
    payload = _gen(EndpointKey.ANIME_DETAIL, "samehadaku", {"slug": "dr-stone"}, None)

    assert (payload["judul"], payload["anime_slug"]) == ("Dr. Stone", "dr-stone")
    assert payload["url"] == "https://samehadaku.example/anime/dr-stone/"


def test_episode_detail_describes_the_requested_episode() -> None:
    params = {"slug": "dandadan-episode-1"}

    payload = _gen(EndpointKey.EPISODE_DETAIL, "samehadaku", params, None)

    assert payload["title"] == "Dandadan Episode 1 Subtitle Indonesia"
    assert payload["navigation"]["previous_episode_url"] is None
    assert payload["navigation"]["next_episode_url"].endswith("/dandadan-episode-2/")


def test_a_days_schedule_matches_that_day_in_the_weekly_schedule() -> None:
    week = _gen(EndpointKey.JADWAL_RILIS, "samehadaku", {}, None)

    day = _gen(EndpointKey.JADWAL_RILIS_DAY, "samehadaku", {}, "Rabu")

    assert day["data"] == week["data"]["Rabu"]


def test_english_and_indonesian_day_names_give_the_same_schedule() -> None:
    english = _gen(EndpointKey.JADWAL_RILIS_DAY, "samehadaku", {}, "friday")

    assert english == _gen(EndpointKey.JADWAL_RILIS_DAY, "samehadaku", {}, "jumat")


def test_an_unknown_day_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown day 'someday'"):
        _gen(EndpointKey.JADWAL_RILIS_DAY, "samehadaku", {}, "someday")


@pytest.mark.parametrize(
    ("endpoint", "name"),
    [
        (EndpointKey.ANIME_DETAIL, "slug"),
        (EndpointKey.EPISODE_DETAIL, "slug"),
        (EndpointKey.SEARCH, "q"),
    ],
)
def test_a_missing_required_parameter_is_refused_by_name(endpoint: EndpointKey, name: str) -> None:
    with pytest.raises(ValueError, match=f"missing query parameter '{name}'"):
        _gen(endpoint, "samehadaku", {name: "  "}, None)


def test_only_required_parameters_shape_the_cache_key() -> None:
    assert used_params(EndpointKey.SEARCH, {"q": "naruto", "page": "2"}) == (("q", "naruto"),)
    assert used_params(EndpointKey.HOME, {"page": "2"}) == ()


@pytest.mark.parametrize(
    "variant",
    [PayloadVariant.INVALID_SCHEMA, PayloadVariant.PLACEHOLDER, PayloadVariant.LOW_CONFIDENCE],
)
@pytest.mark.parametrize("endpoint", list(EndpointKey))
def test_every_fault_variant_fails_the_gateway_validator(
    endpoint: EndpointKey, variant: PayloadVariant
) -> None:
    faulty = apply_variant(_payload(endpoint), endpoint, variant)

    result = validate_payload(endpoint, faulty, 0.5)

    assert not result.ok
    assert result.low_confidence is (variant is PayloadVariant.LOW_CONFIDENCE)


def test_invalid_schema_drops_a_required_url() -> None:
    payload = _payload(EndpointKey.MOVIE)

    faulty: Any = apply_variant(payload, EndpointKey.MOVIE, PayloadVariant.INVALID_SCHEMA)

    assert "url" not in faulty["data"][0]


def test_injecting_a_fault_leaves_the_original_payload_untouched() -> None:
    payload = _payload(EndpointKey.HOME)
    before = orjson.dumps(payload)

    apply_variant(payload, EndpointKey.HOME, PayloadVariant.PLACEHOLDER)

    assert orjson.dumps(payload) == before


def test_rendered_bodies_are_cached_and_equal_the_generated_payload() -> None:
    key = (EndpointKey.SEARCH, "samehadaku", (("q", "naruto"),), None, 1, PayloadVariant.VALID)

    body = render_body(*key)

    assert render_body(*key) is body
    assert orjson.loads(body) == _gen(EndpointKey.SEARCH, "samehadaku", {"q": "naruto"}, None)
