"""Pure health logic: the Up/Down state machine, probe classification and probe targets."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.upstream import UpstreamResponse
from health.classify import classify
from health.status import MemoryStatusStore, UpstreamStatus, lease_key, next_status
from health.targets import ProbeTarget, probe_targets
from schemas.config import GatewayConfig
from schemas.endpoints import EndpointKey
from schemas.events import AttemptOutcome, ProbeStatus
from tests.unit.payload_samples import VALID_SAMPLES

OK, TIMEOUT, ERROR, INVALID = (
    ProbeStatus.OK,
    ProbeStatus.TIMEOUT,
    ProbeStatus.ERROR,
    ProbeStatus.INVALID,
)
TARGET = ProbeTarget(
    category="anime",
    source_name="samehadaku",
    base_url="http://samehadaku.test/v1",
    url="http://samehadaku.test/v1/home",
    endpoint_key=EndpointKey.HOME,
    interval_s=600.0,
    timeout_s=15.0,
    headers=(),
    min_confidence=0.5,
)


def run(results: list[ProbeStatus], down_after: int = 2) -> list[UpstreamStatus]:
    """Feed probe results one per minute; return every status along the way."""
    statuses: list[UpstreamStatus] = []
    previous: UpstreamStatus | None = None
    for minute, result in enumerate(results):
        detail = "" if result is OK else result.value
        previous = next_status(previous, TARGET, result, 12.5, detail, 60.0 * minute, down_after)
        statuses.append(previous)
    return statuses


# --- state machine ---------------------------------------------------------------------------


def test_first_ok_probe_is_up_and_starts_the_change_clock() -> None:
    [status] = run([OK])
    assert (status.up, status.status, status.consecutive_failures) == (True, OK, 0)
    assert status.changed_at == status.checked_at == 0.0
    assert (status.url, status.category, status.source_name) == (
        TARGET.base_url,
        "anime",
        "samehadaku",
    )


def test_upstream_goes_down_only_after_down_after_failures_in_a_row() -> None:
    statuses = run([OK, ERROR, TIMEOUT, INVALID])
    assert [s.up for s in statuses] == [True, True, False, False]
    assert [s.consecutive_failures for s in statuses] == [0, 1, 2, 3]
    assert [s.status for s in statuses] == [OK, ERROR, TIMEOUT, INVALID]


def test_one_ok_probe_brings_a_down_upstream_back_up() -> None:
    statuses = run([ERROR, ERROR, ERROR, OK])
    assert [s.up for s in statuses] == [True, False, False, True]
    assert statuses[-1].consecutive_failures == 0


def test_an_ok_between_failures_resets_the_count() -> None:
    statuses = run([ERROR, OK, ERROR, OK, ERROR])
    assert all(s.up for s in statuses)
    assert [s.consecutive_failures for s in statuses] == [1, 0, 1, 0, 1]


def test_changed_at_moves_only_when_up_flips() -> None:
    statuses = run([OK, OK, ERROR, ERROR, ERROR, OK, OK])
    assert [s.changed_at for s in statuses] == [0.0, 0.0, 0.0, 180.0, 180.0, 300.0, 300.0]
    assert [s.checked_at for s in statuses] == [60.0 * i for i in range(7)]


def test_down_after_one_marks_down_on_the_first_failure() -> None:
    assert [s.up for s in run([ERROR, OK, TIMEOUT], down_after=1)] == [False, True, False]


def test_status_round_trips_through_json() -> None:
    status = run([OK, ERROR])[-1]
    assert UpstreamStatus.from_json(status.to_json()) == status
    with pytest.raises(ValueError, match="not an upstream status"):
        UpstreamStatus.from_json(b'{"url": "x"}')


# --- memory store ----------------------------------------------------------------------------


async def test_memory_store_keeps_the_latest_status_per_base_url() -> None:
    store = MemoryStatusStore()
    first, second = run([ERROR, ERROR])
    await store.put(first)
    await store.put(second)
    assert await store.get_all() == {TARGET.base_url: second}
    assert await store.get(TARGET.base_url) == second
    assert await store.get("http://other.test") is None


async def test_memory_lease_is_granted_once_per_slot_until_it_expires() -> None:
    now = [100.0]
    store = MemoryStatusStore(clock=lambda: now[0])
    assert await store.try_lease("k", 7, "a", ttl_s=10)
    assert not await store.try_lease("k", 7, "b", ttl_s=10)
    assert await store.try_lease("other", 7, "b", ttl_s=10)
    assert await store.try_lease("k", 8, "b", ttl_s=10)
    now[0] = 111.0
    assert await store.try_lease("k", 8, "a", ttl_s=10)


def test_lease_keys_hash_the_target_key_and_name_the_slot() -> None:
    key = lease_key(TARGET.key, 2_833_333)
    assert key.startswith("apicat:health:lease:") and key.endswith(":2833333")
    assert TARGET.base_url not in key
    assert key != lease_key("drakor|" + TARGET.base_url, 2_833_333)


# --- classification --------------------------------------------------------------------------


def response(
    outcome: AttemptOutcome = AttemptOutcome.OK,
    body: bytes | None = None,
    status_code: int | None = 200,
    detail: str = "",
) -> UpstreamResponse:
    return UpstreamResponse(outcome, status_code, body, len(body or b""), 8.0, detail)


def home(**changes: Any) -> bytes:
    return orjson.dumps({**VALID_SAMPLES[EndpointKey.HOME](), **changes})


def test_valid_2xx_json_is_ok() -> None:
    assert classify(response(body=home()), EndpointKey.HOME, 0.5) == (OK, "")


def test_timeout_is_timeout() -> None:
    timed_out = response(AttemptOutcome.TIMEOUT, None, None, "no complete answer within 2s")
    assert classify(timed_out, EndpointKey.HOME, 0.5) == (TIMEOUT, "no complete answer within 2s")


@pytest.mark.parametrize(
    ("outcome", "status_code", "detail"),
    [
        (AttemptOutcome.HTTP_5XX, 503, "HTTP 503"),
        (AttemptOutcome.HTTP_4XX, 404, "HTTP 404"),
        (AttemptOutcome.CONNECTION_ERROR, None, "ClientConnectorError"),
        (AttemptOutcome.BODY_TOO_LARGE, 200, "body over cap of 1024 bytes"),
        (AttemptOutcome.HTTP_OTHER, 302, "TooManyRedirects: ..."),
    ],
)
def test_transport_failures_and_non_2xx_are_errors(
    outcome: AttemptOutcome, status_code: int | None, detail: str
) -> None:
    failed = response(outcome, None, status_code, detail)
    assert classify(failed, EndpointKey.HOME, 0.5) == (ERROR, detail)


def test_non_json_2xx_is_invalid() -> None:
    status, detail = classify(response(body=b"<html>oops</html>"), EndpointKey.HOME, 0.5)
    assert status is INVALID
    assert detail.startswith("invalid JSON")


def test_low_confidence_is_invalid_naming_the_rule() -> None:
    low = response(body=home(confidence_score=0.2))
    assert classify(low, EndpointKey.HOME, 0.5) == (
        INVALID,
        "confidence_score: confidence_below_threshold",
    )
    # The threshold is the probed endpoint's: the same body passes a lower one.
    assert classify(low, EndpointKey.HOME, 0.1) == (OK, "")


def test_schema_failure_is_invalid_with_the_first_issue_path_and_rule() -> None:
    payload = VALID_SAMPLES[EndpointKey.HOME]()
    payload["top10"][1]["judul"] = ""
    payload["movies"] = "none"
    status, detail = classify(response(body=orjson.dumps(payload)), EndpointKey.HOME, 0.5)
    assert (status, detail) == (INVALID, "top10[1].judul: empty")


def test_a_body_valid_for_another_endpoint_is_invalid_for_this_one() -> None:
    status, _ = classify(response(body=home()), EndpointKey.MOVIE, 0.5)
    assert status is INVALID


# --- targets ---------------------------------------------------------------------------------


def config(*categories: dict[str, Any]) -> GatewayConfig:
    return GatewayConfig.model_validate({"categories": list(categories)})


def primary(name: str, priority: int = 1, **fields: Any) -> dict[str, Any]:
    return {
        "source_name": name,
        "base_url": f"http://{name}.test/v1",
        "priority": priority,
        **fields,
    }


ANIME = {
    "name": "anime",
    "endpoints": [
        {
            "path": "/api/v1/home",
            "timeout_seconds": 12,
            "min_confidence": 0.6,
            "primary_apis": [
                primary("a", 1, headers={"X-Key": "secret"}),
                primary("b", 2, timeout_seconds=4),
                primary("off", 3, is_active=False),
            ],
            "fallback_apis": {
                "a": ["http://a-mirror.test/v1"],
                "off": ["http://off-mirror.test/v1"],
            },
        },
        {
            "path": "/api/v1/movie",
            "primary_apis": [primary("a", 1), primary("c", 2)],
            "fallback_apis": {"c": ["http://c-mirror.test/v1", "http://a-mirror.test/v1"]},
        },
    ],
}


def by_url(targets: list[ProbeTarget]) -> dict[str, ProbeTarget]:
    return {target.base_url: target for target in targets}


def test_every_active_primary_and_fallback_is_probed_once_per_category() -> None:
    targets = probe_targets(config(ANIME), default_interval_s=600)
    assert [t.base_url for t in targets] == [
        "http://a.test/v1",
        "http://a-mirror.test/v1",
        "http://b.test/v1",
        "http://c.test/v1",
        "http://c-mirror.test/v1",
    ]
    assert {t.key for t in targets} == {f"anime|{t.base_url}" for t in targets}


def test_default_probe_is_the_first_endpoint_with_its_policy() -> None:
    targets = by_url(probe_targets(config(ANIME), default_interval_s=600))
    a, mirror, b, c = (
        targets["http://a.test/v1"],
        targets["http://a-mirror.test/v1"],
        targets["http://b.test/v1"],
        targets["http://c.test/v1"],
    )
    assert a.url == "http://a.test/v1/home"
    assert c.url == "http://c.test/v1/home"
    assert {t.endpoint_key for t in targets.values()} == {EndpointKey.HOME}
    assert {t.min_confidence for t in targets.values()} == {0.6}
    assert {t.interval_s for t in targets.values()} == {600.0}
    # The source's own timeout wins over the probed endpoint's.
    assert (a.timeout_s, b.timeout_s, c.timeout_s) == (12.0, 4.0, 12.0)
    # Fallbacks carry the headers and name of the primary they belong to.
    assert a.headers == mirror.headers == (("X-Key", "secret"),)
    assert mirror.source_name == "a"
    assert targets["http://c-mirror.test/v1"].source_name == "c"


def test_probe_settings_override_path_params_interval_and_timeout() -> None:
    anime = {
        **ANIME,
        "probe": {
            "interval_seconds": 60,
            "path": "/api/v1/movie",
            "params": {"page": "1", "q": "a b"},
            "timeout_seconds": 3,
        },
    }
    targets = by_url(probe_targets(config(anime), default_interval_s=600))
    b = targets["http://b.test/v1"]
    assert b.url == "http://b.test/v1/movie?page=1&q=a+b"
    assert (b.endpoint_key, b.interval_s, b.timeout_s) == (EndpointKey.MOVIE, 60.0, 3.0)
    assert b.min_confidence == 0.5  # the movie endpoint's default


def test_day_endpoint_is_probed_with_a_concrete_day() -> None:
    category = {
        "name": "anime",
        "endpoints": [{"path": "/api/v1/jadwal-rilis/{day}", "primary_apis": [primary("a")]}],
    }
    [target] = probe_targets(config(category), default_interval_s=600)
    assert target.url == "http://a.test/v1/jadwal-rilis/senin"
    assert target.endpoint_path == "/api/v1/jadwal-rilis/{day}"


def test_inactive_categories_and_empty_ones_are_not_probed() -> None:
    inactive = {**ANIME, "name": "drakor", "is_active": False}
    empty = {"name": "donghua"}
    all_off = {
        "name": "film",
        "endpoints": [{"path": "/api/v1/home", "primary_apis": [primary("x", is_active=False)]}],
    }
    targets = probe_targets(config(ANIME, inactive, empty, all_off), default_interval_s=600)
    assert {t.category for t in targets} == {"anime"}


def test_a_url_shared_by_two_categories_is_a_target_in_each() -> None:
    drakor = {**ANIME, "name": "drakor", "probe": {"interval_seconds": 30}}
    targets = probe_targets(config(ANIME, drakor), default_interval_s=600)
    shared = [t for t in targets if t.base_url == "http://a.test/v1"]
    assert [(t.category, t.interval_s) for t in shared] == [("anime", 600.0), ("drakor", 30.0)]
    assert len({t.key for t in shared}) == 2
