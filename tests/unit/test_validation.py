"""validate_payload: what the gateway accepts, caches and serves, and what triggers a fallback."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from schemas.endpoints import EndpointKey
from schemas.validation import (
    MAX_LISTED_ISSUES,
    ROOT_PATH,
    Rule,
    ValidationResult,
    format_path,
    validate_payload,
)
from tests.unit.payload_samples import (
    VALID_SAMPLES,
    anime_detail_payload,
    anime_terbaru_payload,
    episode_detail_payload,
    home_payload,
    jadwal_rilis_day_payload,
    jadwal_rilis_payload,
    movie_payload,
    search_payload,
    top_anime,
)

MIN_CONFIDENCE = 0.5
LIST_ENDPOINTS = [
    EndpointKey.JADWAL_RILIS_DAY,
    EndpointKey.ANIME_TERBARU,
    EndpointKey.MOVIE,
    EndpointKey.SEARCH,
]


def check(endpoint: EndpointKey, payload: object) -> ValidationResult:
    return validate_payload(endpoint, payload, MIN_CONFIDENCE)


def found(result: ValidationResult) -> set[tuple[str, str]]:
    return {(issue.path, issue.rule) for issue in result.issues}


# --- valid answers ---------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", list(EndpointKey))
def test_realistic_answer_of_every_endpoint_is_valid(endpoint: EndpointKey) -> None:
    result = check(endpoint, VALID_SAMPLES[endpoint]())
    assert result.issues == ()
    assert result.ok
    assert result.confidence == pytest.approx(0.92)


def test_extra_fields_added_by_upstreams_are_accepted() -> None:
    payload = movie_payload()
    payload["pagination"] = {"page": 1, "has_next": True}
    payload["data"][0]["trailer"] = None
    assert check(EndpointKey.MOVIE, payload).ok


def test_title_slug_and_cover_url_spellings_satisfy_the_universal_fields() -> None:
    payload = search_payload()
    item = payload["data"][0]
    item["title"] = item.pop("judul")
    item["slug"] = item.pop("anime_slug")
    item["cover_url"] = item.pop("cover")
    assert check(EndpointKey.SEARCH, payload).ok


def test_a_broken_alternative_is_fine_when_the_other_one_is_usable() -> None:
    payload = movie_payload()
    payload["data"][0]["title"] = "N/A"
    payload["data"][0]["cover_url"] = "https://via.placeholder.com/300"
    assert check(EndpointKey.MOVIE, payload).ok


def test_optional_fields_may_be_null_absent_or_hold_placeholder_like_text() -> None:
    payload = jadwal_rilis_day_payload()
    first, second = payload["data"]
    first.update(release_time="TBA", score="?", type=None, genres=[])
    for field in ("release_time", "score", "type", "genres"):
        del second[field]
    assert check(EndpointKey.JADWAL_RILIS_DAY, payload).ok


def test_message_and_source_are_optional() -> None:
    payload = movie_payload()
    del payload["message"], payload["source"]
    assert check(EndpointKey.MOVIE, payload).ok


def test_empty_search_result_is_a_valid_answer() -> None:
    payload = search_payload()
    payload["data"] = []
    assert check(EndpointKey.SEARCH, payload).ok


def test_home_with_a_single_filled_section_is_valid() -> None:
    payload = home_payload()
    payload["new_eps"] = []
    payload["movies"] = None
    del payload["jadwal_rilis"]
    assert check(EndpointKey.HOME, payload).ok


def test_schedule_may_have_days_without_releases() -> None:
    payload = jadwal_rilis_payload()
    payload["data"]["Minggu"] = []
    assert check(EndpointKey.JADWAL_RILIS, payload).ok


def test_first_episode_has_no_previous_episode_link() -> None:
    payload = episode_detail_payload()
    payload["navigation"]["previous_episode_url"] = None
    assert check(EndpointKey.EPISODE_DETAIL, payload).ok


def test_announced_title_without_episodes_is_a_valid_detail() -> None:
    payload = anime_detail_payload()
    payload["episode_list"] = []
    del payload["recommendations"]
    assert check(EndpointKey.ANIME_DETAIL, payload).ok


def test_integer_confidence_of_one_is_accepted() -> None:
    payload = movie_payload()
    payload["confidence_score"] = 1
    result = check(EndpointKey.MOVIE, payload)
    assert result.ok
    assert result.confidence == 1.0


def test_confidence_equal_to_the_threshold_passes() -> None:
    payload = movie_payload()
    payload["confidence_score"] = MIN_CONFIDENCE
    assert check(EndpointKey.MOVIE, payload).ok


# --- confidence ------------------------------------------------------------------------------


def test_confidence_below_threshold_is_reported_as_low_confidence() -> None:
    payload = movie_payload()
    payload["confidence_score"] = 0.3
    result = check(EndpointKey.MOVIE, payload)
    assert found(result) == {("confidence_score", Rule.CONFIDENCE_BELOW_THRESHOLD)}
    assert result.low_confidence
    assert result.confidence == pytest.approx(0.3)


def test_missing_confidence_counts_as_low_confidence() -> None:
    payload = movie_payload()
    del payload["confidence_score"]
    result = check(EndpointKey.MOVIE, payload)
    assert found(result) == {("confidence_score", Rule.MISSING)}
    assert result.low_confidence
    assert result.confidence is None


@pytest.mark.parametrize("score", [True, "0.9", None, [0.9], float("nan")])
def test_confidence_that_is_not_a_finite_number_is_rejected(score: object) -> None:
    payload = movie_payload()
    payload["confidence_score"] = score
    result = check(EndpointKey.MOVIE, payload)
    assert not result.ok
    assert [issue.path for issue in result.issues] == ["confidence_score"]
    assert result.confidence is None


@pytest.mark.parametrize("score", [-0.1, 1.5, 95])
def test_confidence_outside_zero_to_one_is_out_of_range(score: float) -> None:
    payload = movie_payload()
    payload["confidence_score"] = score
    result = check(EndpointKey.MOVIE, payload)
    assert found(result) == {("confidence_score", Rule.OUT_OF_RANGE)}
    assert not result.low_confidence


def test_schema_failure_alone_is_not_low_confidence() -> None:
    payload = movie_payload()
    payload["data"][0]["url"] = "N/A"
    result = check(EndpointKey.MOVIE, payload)
    assert not result.ok
    assert not result.low_confidence


def test_confidence_issue_is_listed_first() -> None:
    payload = anime_detail_payload()
    payload["url"] = "/relative"
    payload["confidence_score"] = 0.1
    result = check(EndpointKey.ANIME_DETAIL, payload)
    assert result.issues[0].rule == Rule.CONFIDENCE_BELOW_THRESHOLD


# --- failure kinds ---------------------------------------------------------------------------


@pytest.mark.parametrize("body", [[], "Just a moment...", None, 42, True])
def test_body_that_is_not_a_json_object_is_rejected(body: object) -> None:
    result = check(EndpointKey.HOME, body)
    assert found(result) == {(ROOT_PATH, Rule.NOT_OBJECT)}
    assert result.confidence is None


def test_missing_required_field_is_reported_at_its_path() -> None:
    payload = anime_terbaru_payload()
    del payload["data"][1]["url"]
    assert found(check(EndpointKey.ANIME_TERBARU, payload)) == {("data[1].url", Rule.MISSING)}


def test_null_required_field_is_reported_as_missing() -> None:
    payload = episode_detail_payload()
    payload["title"] = None
    assert found(check(EndpointKey.EPISODE_DETAIL, payload)) == {("title", Rule.MISSING)}


def test_missing_either_or_pair_names_both_alternatives() -> None:
    payload = movie_payload()
    del payload["data"][0]["cover"]
    result = check(EndpointKey.MOVIE, payload)
    assert found(result) == {("data[0].cover|cover_url", Rule.MISSING)}


def test_wrong_type_is_reported_with_the_json_type_received() -> None:
    payload = movie_payload()
    payload["data"][0]["judul"] = 12
    result = check(EndpointKey.MOVIE, payload)
    assert found(result) == {("data[0].judul", Rule.TYPE)}
    assert "number" in result.issues[0].detail


def test_wrongly_typed_optional_field_is_rejected() -> None:
    payload = search_payload()
    payload["data"][0]["skor"] = 8.26
    payload["data"][1]["genre"] = "Action, Adventure"
    assert found(check(EndpointKey.SEARCH, payload)) == {
        ("data[0].skor", Rule.TYPE),
        ("data[1].genre", Rule.TYPE),
    }


def test_number_where_a_string_is_due_is_not_coerced() -> None:
    payload = anime_detail_payload()
    payload["details"]["Total Episode"] = 28
    assert found(check(EndpointKey.ANIME_DETAIL, payload)) == {
        ('details["Total Episode"]', Rule.TYPE)
    }


@pytest.mark.parametrize("value", ["", "   ", "\u200b"])
def test_blank_required_text_is_empty(value: str) -> None:
    payload = jadwal_rilis_day_payload()
    payload["data"][0]["anime_slug"] = value
    assert found(check(EndpointKey.JADWAL_RILIS_DAY, payload)) == {
        ("data[0].anime_slug", Rule.EMPTY)
    }


@pytest.mark.parametrize(
    "value", ["N/A", "null", "undefined", "-", "Error 404", "Just a moment..."]
)
def test_placeholder_or_error_text_in_a_required_field_is_rejected(value: str) -> None:
    payload = anime_detail_payload()
    payload["judul"] = value
    assert found(check(EndpointKey.ANIME_DETAIL, payload)) == {("judul", Rule.PLACEHOLDER)}


@pytest.mark.parametrize("value", ["/anime/naruto/", "//cdn.example/x", "naruto", "https://a b/"])
def test_malformed_required_url_is_rejected(value: str) -> None:
    payload = movie_payload()
    payload["data"][1]["url"] = value
    assert found(check(EndpointKey.MOVIE, payload)) == {("data[1].url", Rule.URL_FORMAT)}


def test_url_built_from_a_missing_slug_is_a_placeholder() -> None:
    payload = movie_payload()
    payload["data"][0]["url"] = "https://otakudesu.cloud/anime/undefined/"
    assert found(check(EndpointKey.MOVIE, payload)) == {("data[0].url", Rule.PLACEHOLDER)}


@pytest.mark.parametrize(
    "cover",
    [
        "https://via.placeholder.com/225x320",
        "https://otakudesu.cloud/wp-content/themes/x/img/no-image.png",
        "data:image/gif;base64,R0lGODlhAQABAAAAACw=",
    ],
)
def test_placeholder_cover_image_is_rejected(cover: str) -> None:
    payload = home_payload()
    payload["top10"][3]["cover"] = cover
    assert found(check(EndpointKey.HOME, payload)) == {("top10[3].cover", Rule.PLACEHOLDER_IMAGE)}


def test_relative_cover_is_a_url_format_issue() -> None:
    payload = home_payload()
    payload["jadwal_rilis"]["Senin"][0]["cover_url"] = "/wp-content/uploads/x.jpg"
    assert found(check(EndpointKey.HOME, payload)) == {
        ("jadwal_rilis.Senin[0].cover_url", Rule.URL_FORMAT)
    }


@pytest.mark.parametrize("endpoint", [e for e in LIST_ENDPOINTS if e != EndpointKey.SEARCH])
def test_empty_data_list_is_rejected(endpoint: EndpointKey) -> None:
    payload = VALID_SAMPLES[endpoint]()
    payload["data"] = []
    assert found(check(endpoint, payload)) == {("data", Rule.EMPTY)}


def test_schedule_without_any_entry_is_rejected() -> None:
    payload = jadwal_rilis_payload()
    payload["data"] = {"Senin": [], "Selasa": []}
    assert found(check(EndpointKey.JADWAL_RILIS, payload)) == {("data", Rule.EMPTY)}


def test_home_without_any_section_item_is_rejected() -> None:
    payload = home_payload()
    payload.update(top10=[], new_eps=None, movies=[], jadwal_rilis={"Senin": []})
    assert found(check(EndpointKey.HOME, payload)) == {
        ("top10|new_eps|movies|jadwal_rilis", Rule.EMPTY)
    }


def test_data_of_the_wrong_container_type_is_rejected() -> None:
    payload = movie_payload()
    payload["data"] = {"0": payload["data"][0]}
    assert found(check(EndpointKey.MOVIE, payload)) == {("data", Rule.TYPE)}


def test_item_that_is_not_an_object_is_rejected() -> None:
    payload = search_payload()
    payload["data"].append("Naruto")
    assert found(check(EndpointKey.SEARCH, payload)) == {("data[2]", Rule.TYPE)}


def test_episode_detail_without_streaming_servers_is_rejected() -> None:
    payload = episode_detail_payload()
    payload["streaming_servers"] = []
    assert found(check(EndpointKey.EPISODE_DETAIL, payload)) == {("streaming_servers", Rule.EMPTY)}


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("", Rule.EMPTY),
        ("-", Rule.PLACEHOLDER),
        ("javascript:void(0)", Rule.URL_FORMAT),
        (None, Rule.MISSING),
    ],
)
def test_every_streaming_url_must_be_a_usable_url(value: str | None, rule: Rule) -> None:
    payload = episode_detail_payload()
    payload["streaming_servers"][1]["streaming_url"] = value
    result = check(EndpointKey.EPISODE_DETAIL, payload)
    assert found(result) == {("streaming_servers[1].streaming_url", rule)}


def test_episode_list_entry_needs_a_url_and_a_name() -> None:
    payload = anime_detail_payload()
    del payload["episode_list"][0]["url"]
    del payload["episode_list"][2]["title"], payload["episode_list"][2]["episode"]
    assert found(check(EndpointKey.ANIME_DETAIL, payload)) == {
        ("episode_list[0].url", Rule.MISSING),
        ("episode_list[2].title|episode", Rule.MISSING),
    }


def test_recommendations_are_held_to_the_universal_fields() -> None:
    payload = anime_detail_payload()
    payload["recommendations"][0]["cover_url"] = "https://placehold.co/200x300"
    assert found(check(EndpointKey.ANIME_DETAIL, payload)) == {
        ("recommendations[0].cover_url", Rule.PLACEHOLDER_IMAGE)
    }


def test_optional_links_of_an_episode_are_only_type_checked() -> None:
    payload = episode_detail_payload()
    payload["navigation"]["next_episode_url"] = "#"
    payload["download_links"]["MP4"]["480p"][0]["url"] = ""
    payload["thumbnail_url"] = "https://via.placeholder.com/300"
    assert check(EndpointKey.EPISODE_DETAIL, payload).ok


def test_wrongly_typed_download_links_are_reported_at_their_nested_path() -> None:
    payload = episode_detail_payload()
    payload["download_links"]["MP4"]["720p"][0]["url"] = ["https://mega.nz/file/x"]
    assert found(check(EndpointKey.EPISODE_DETAIL, payload)) == {
        ('download_links.MP4["720p"][0].url', Rule.TYPE)
    }


# --- reporting -------------------------------------------------------------------------------


def test_one_bad_item_invalidates_the_answer_and_every_issue_is_listed() -> None:
    payload = home_payload()
    payload["top10"][0]["judul"] = "N/A"
    payload["top10"][0]["url"] = "/relative"
    payload["new_eps"][4]["cover"] = "https://via.placeholder.com/300"
    payload["movies"][2]["genres"] = "Drama"
    del payload["jadwal_rilis"]["Rabu"][0]["url"]
    result = check(EndpointKey.HOME, payload)
    assert not result.ok
    assert found(result) == {
        ("top10[0].url", Rule.URL_FORMAT),
        ("top10[0].judul", Rule.PLACEHOLDER),
        ("new_eps[4].cover", Rule.PLACEHOLDER_IMAGE),
        ("movies[2].genres", Rule.TYPE),
        ("jadwal_rilis.Rabu[0].url", Rule.MISSING),
    }


def test_every_issue_has_a_human_detail() -> None:
    payload = home_payload()
    payload["top10"][0] = {"url": 5}
    payload["confidence_score"] = 2
    result = check(EndpointKey.HOME, payload)
    assert len(result.issues) >= 4
    assert all(issue.detail for issue in result.issues)


def test_validating_the_same_answer_again_gives_the_same_verdict() -> None:
    payload = home_payload()
    payload["top10"][1]["cover"] = "https://via.placeholder.com/300"
    payload["movies"][0]["judul"] = "Error 404"
    first = check(EndpointKey.HOME, payload)
    again = check(EndpointKey.HOME, payload)
    assert first == again
    assert found(again) == {
        ("top10[1].cover", Rule.PLACEHOLDER_IMAGE),
        ("movies[0].judul", Rule.PLACEHOLDER),
    }


def test_huge_broken_list_is_truncated_to_a_bounded_report() -> None:
    payload = movie_payload()
    payload["data"] = [{"judul": "N/A"} for _ in range(10_000)]
    result = check(EndpointKey.MOVIE, payload)
    assert len(result.issues) == MAX_LISTED_ISSUES + 1
    last = result.issues[-1]
    assert (last.path, last.rule) == (ROOT_PATH, Rule.TRUNCATED)
    # 4 issues per item: url missing, judul placeholder, slug missing, cover missing.
    assert f"{4 * 10_000 - MAX_LISTED_ISSUES} more" in last.detail


def test_deeply_nested_values_do_not_break_validation() -> None:
    deep: Any = "bottom"
    for _ in range(5_000):
        deep = [deep]
    payload = movie_payload()
    payload["data"][0]["genres"] = deep
    payload["data"][1]["extra"] = deep
    payload["data"].append(deep)
    assert found(check(EndpointKey.MOVIE, payload)) == {
        ("data[0].genres[0]", Rule.TYPE),
        ("data[2]", Rule.TYPE),
    }


@pytest.mark.parametrize("endpoint", list(EndpointKey))
def test_random_json_never_raises(endpoint: EndpointKey) -> None:
    rng = random.Random(f"apicat-{endpoint.value}")
    base = VALID_SAMPLES[endpoint]()
    for _ in range(200):
        payload = _mutate(json.loads(json.dumps(base)), rng)
        result = validate_payload(endpoint, payload, MIN_CONFIDENCE)
        assert isinstance(result, ValidationResult)
        assert len(result.issues) <= MAX_LISTED_ISSUES + 1


def test_paths_quote_keys_that_are_not_identifiers() -> None:
    assert format_path(("jadwal_rilis", "Senin", 0, "title")) == "jadwal_rilis.Senin[0].title"
    assert format_path(("details", "Released:")) == 'details["Released:"]'
    assert format_path(()) == ROOT_PATH


_ODD_VALUES: list[Any] = [None, True, 0, -1.5, "", "N/A", [], {}, [None], {"x": [1]}, "x" * 1000]


def _mutate(node: Any, rng: random.Random) -> Any:
    """Replace a few random nodes of a JSON tree with odd values (a seeded, tiny fuzzer)."""
    if rng.random() < 0.08:
        return rng.choice([*_ODD_VALUES, top_anime()])
    if isinstance(node, dict):
        return {key: _mutate(value, rng) for key, value in node.items() if rng.random() > 0.05}
    if isinstance(node, list):
        return [_mutate(value, rng) for value in node]
    return node
