"""Message → row conversion (consumers.rows): pure, no ClickHouse."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from pydantic import ValidationError

from consumers.fast_decode import event_decoder
from consumers.rows import (
    COLUMNS,
    FINITE_COLUMNS,
    TABLE_OF_TYPE,
    UINT_COLUMN_MAX,
    PoisonMessage,
    event_to_row,
    message_to_row,
)
from schemas.events import (
    EVENT_TYPES,
    CircuitChangeEvent,
    ConfigChangeEvent,
    EventEnvelope,
    FieldFailure,
    HealthProbeEvent,
    RequestEvent,
    UpstreamAttemptEvent,
    ValidationFailureEvent,
)

TS = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)

SAMPLES: dict[str, EventEnvelope] = {
    "request": RequestEvent(
        ts=TS,
        category="anime",
        endpoint="/api/v1/home",
        path="/api/v1/home",
        status=200,
        cache_status="MISS",
        source_name="samehadaku_v1",
        fallback_depth=1,
        latency_ms=42.5,
        client_ip="10.0.0.1",
    ),
    "upstream_attempt": UpstreamAttemptEvent(
        ts=TS,
        category="anime",
        endpoint="/api/v1/home",
        source_name="samehadaku_v1",
        role="fallback",
        depth=1,
        retry=1,
        url="http://fallback1/v1/home",
        status_code=503,
        latency_ms=12.25,
        outcome="http_5xx",
        confidence=None,
        bytes=2048,
    ),
    "validation_failure": ValidationFailureEvent(
        ts=TS,
        category="anime",
        endpoint="/api/v1/home",
        source_name="otakudesu_v3",
        role="primary",
        depth=0,
        url="http://api_source_2/v1/home",
        failures=[
            FieldFailure(path="data.0.cover", rule="placeholder", detail="N/A"),
            FieldFailure(path="data.0.url", rule="required"),
        ],
    ),
    "circuit_change": CircuitChangeEvent(
        ts=TS,
        upstream_url="http://api_source_1/v1",
        from_state="closed",
        to_state="open",
        consecutive_failures=5,
    ),
    "health_probe": HealthProbeEvent(
        ts=TS,
        upstream_url="http://api_source_1/v1",
        category="anime",
        endpoint="/api/v1/home",
        source_name="samehadaku_v1",
        status="Timeout",
        latency_ms=15000.0,
        detail="read timeout",
    ),
    "config_change": ConfigChangeEvent(
        ts=TS, actor="admin", action="update", target="category:anime", before="{}", after="{}"
    ),
}


def message(event_type: str, **changes: object) -> dict[str, object]:
    """The sample as it arrives from Kafka: JSON-decoded, with ``changes`` applied."""
    decoded: dict[str, object] = orjson.loads(SAMPLES[event_type].model_dump_json())
    decoded.update(changes)
    return decoded


def test_every_event_type_has_a_table_and_a_sample() -> None:
    assert set(TABLE_OF_TYPE) == set(EVENT_TYPES) == set(SAMPLES)
    assert set(COLUMNS) == set(TABLE_OF_TYPE.values())


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_columns_are_the_model_fields_plus_ingestion_metadata(event_type: str) -> None:
    fields = set(EVENT_TYPES[event_type].model_fields) - {"type", "failures"}
    if event_type == "validation_failure":
        fields |= {"failures.path", "failures.rule", "failures.detail"}
    columns = COLUMNS[TABLE_OF_TYPE[event_type]]
    assert set(columns) == fields | {"_topic", "_partition", "_offset"}
    assert len(columns) == len(set(columns))


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_message_becomes_a_row_of_its_table(event_type: str) -> None:
    table, row = event_to_row(message(event_type), "apicat.events", 3, 41)

    assert table == TABLE_OF_TYPE[event_type]
    assert set(row) == set(COLUMNS[table])
    assert row["event_id"] == SAMPLES[event_type].event_id
    assert row["ts"] == TS
    assert (row["_topic"], row["_partition"], row["_offset"]) == ("apicat.events", 3, 41)


def test_enums_become_plain_strings() -> None:
    _, row = event_to_row(message("upstream_attempt"), "t", 0, 0)

    assert type(row["role"]) is str and row["role"] == "fallback"
    assert type(row["outcome"]) is str and row["outcome"] == "http_5xx"


def test_optional_fields_stay_none() -> None:
    _, row = event_to_row(message("upstream_attempt"), "t", 0, 0)

    assert row["confidence"] is None


def test_validation_failures_become_parallel_arrays() -> None:
    _, row = event_to_row(message("validation_failure"), "t", 0, 0)

    assert row["failures.path"] == ["data.0.cover", "data.0.url"]
    assert row["failures.rule"] == ["placeholder", "required"]
    assert row["failures.detail"] == ["N/A", ""]


def test_timestamp_with_an_offset_is_converted_to_utc() -> None:
    _, row = event_to_row(message("request", ts="2026-01-02T05:04:05.678+02:00"), "t", 0, 0)

    assert row["ts"] == TS
    assert row["ts"].tzinfo is UTC  # type: ignore[attr-defined]


def test_naive_timestamp_is_taken_as_utc() -> None:
    _, row = event_to_row(message("request", ts="2026-01-02T03:04:05.678"), "t", 0, 0)

    assert row["ts"] == TS


def test_row_from_a_model_instance_dict_equals_row_from_json() -> None:
    python_message = SAMPLES["request"].model_dump()

    assert event_to_row(python_message, "t", 0, 0) == event_to_row(message("request"), "t", 0, 0)


def test_unknown_event_type_is_poison() -> None:
    with pytest.raises(PoisonMessage, match="unknown event type 'bogus'"):
        event_to_row(message("request", type="bogus"), "t", 0, 0)


def test_missing_event_type_is_poison() -> None:
    decoded = message("request")
    del decoded["type"]

    with pytest.raises(PoisonMessage, match="missing event type"):
        event_to_row(decoded, "t", 0, 0)


def test_non_string_event_type_is_poison() -> None:
    with pytest.raises(PoisonMessage, match="unknown event type 7"):
        event_to_row(message("request", type=7), "t", 0, 0)


def test_wrong_field_type_is_poison_naming_the_field() -> None:
    with pytest.raises(PoisonMessage) as caught:
        event_to_row(message("upstream_attempt", depth="deep"), "t", 0, 0)

    assert caught.value.reason.startswith("invalid upstream_attempt event: depth: ")
    assert "integer" in caught.value.reason


def test_missing_field_is_poison_naming_the_field() -> None:
    decoded = message("request")
    del decoded["category"]

    with pytest.raises(PoisonMessage, match=r"category: Field required"):
        event_to_row(decoded, "t", 0, 0)


def test_unexpected_field_is_poison() -> None:
    with pytest.raises(PoisonMessage, match=r"surprise: Extra inputs are not permitted"):
        event_to_row(message("request", surprise=1), "t", 0, 0)


def test_bad_enum_value_is_poison() -> None:
    with pytest.raises(PoisonMessage, match=r"outcome: Input should be"):
        event_to_row(message("upstream_attempt", outcome="exploded"), "t", 0, 0)


def test_bad_nested_failure_is_poison_with_its_path() -> None:
    with pytest.raises(PoisonMessage, match=r"failures\.0\.rule: Field required"):
        event_to_row(message("validation_failure", failures=[{"path": "x"}]), "t", 0, 0)


def test_reason_lists_at_most_five_errors() -> None:
    decoded = message("upstream_attempt")
    for field in ("category", "endpoint", "source_name", "role", "depth", "url", "latency_ms"):
        del decoded[field]

    with pytest.raises(PoisonMessage, match=r"and 2 more$"):
        event_to_row(decoded, "t", 0, 0)


@pytest.mark.parametrize(
    ("field", "value"),
    [("status_code", 70_000), ("depth", -1), ("bytes", 2**64), ("consecutive_failures", -5)],
)
def test_integer_that_does_not_fit_its_column_is_poison(field: str, value: int) -> None:
    event_type = "circuit_change" if field == "consecutive_failures" else "upstream_attempt"

    with pytest.raises(PoisonMessage, match=rf"{field}: {value} is out of range"):
        event_to_row(message(event_type, **{field: value}), "t", 0, 0)


def test_non_finite_latency_is_poison() -> None:
    with pytest.raises(PoisonMessage, match="latency_ms: nan is not a finite number"):
        event_to_row(message("request", latency_ms=math.nan), "t", 0, 0)


def test_timestamp_out_of_column_range_is_poison() -> None:
    with pytest.raises(PoisonMessage, match=r"ts: .* is out of range"):
        event_to_row(message("request", ts="1900-01-01T00:00:00Z"), "t", 0, 0)


def test_timezone_arithmetic_near_midnight_keeps_the_instant() -> None:
    local = datetime(2026, 1, 2, 0, 30, tzinfo=timezone(timedelta(hours=5)))

    _, row = event_to_row(message("request", ts=local.isoformat()), "t", 0, 0)

    assert row["ts"] == datetime(2026, 1, 1, 19, 30, tzinfo=UTC)


def payload(event_type: str, **changes: object) -> bytes:
    return orjson.dumps(message(event_type, **changes))


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_row_from_json_bytes_equals_row_from_the_decoded_message(event_type: str) -> None:
    table, row = message_to_row(payload(event_type), "t", 2, 9)

    assert (table, dict(zip(COLUMNS[table], row, strict=True))) == event_to_row(
        message(event_type), "t", 2, 9
    )


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not JSON: "),
        (b"[1, 2]", "message is not a JSON object"),
        (b'{"category": "anime"}', "missing event type"),
        (b'{"type": "bogus"}', "unknown event type 'bogus'"),
    ],
)
def test_bytes_that_are_no_event_are_poison(raw: bytes, reason: str) -> None:
    with pytest.raises(PoisonMessage, match=reason):
        message_to_row(raw, "t", 0, 0)


def test_json_bytes_are_checked_against_the_columns_like_decoded_messages() -> None:
    with pytest.raises(PoisonMessage, match=r"status_code: 70000 is out of range 0\.\.65535"):
        message_to_row(payload("upstream_attempt", status_code=70_000), "t", 0, 0)


# Changes to a valid sample, each valid or not for the model; the derived validator must agree
# with model_validate on every one, except where only the column cannot hold the value.
VARIANTS: list[tuple[str, dict[str, object]]] = [
    ("request", {}),
    ("request", {"status": "200"}),
    ("request", {"status": 200.0}),
    ("request", {"status": 200.5}),
    ("request", {"status": True}),
    ("request", {"status": None}),
    ("request", {"latency_ms": "1.5"}),
    ("request", {"latency_ms": "fast"}),
    ("request", {"cache_status": "hit"}),
    ("request", {"cache_status": "HIT"}),
    ("request", {"source_name": None}),
    ("request", {"source_name": 5}),
    ("request", {"ts": 1_767_322_800}),
    ("request", {"ts": "2026-01-02"}),
    ("request", {"ts": "yesterday"}),
    ("request", {"event_id": 7}),
    ("request", {"extra": 1}),
    ("upstream_attempt", {"role": "secondary"}),
    ("upstream_attempt", {"outcome": "timeout"}),
    ("upstream_attempt", {"confidence": None}),
    ("upstream_attempt", {"retry": "1"}),
    ("validation_failure", {"failures": []}),
    ("validation_failure", {"failures": [{"path": "a", "rule": "b", "extra": 1}]}),
    ("validation_failure", {"failures": "none"}),
    ("health_probe", {"status": "OK"}),
    ("health_probe", {"status": "ok"}),
    ("circuit_change", {"consecutive_failures": "5"}),
    ("config_change", {"before": None}),
    # Edges of the strict fast path (consumers.fast_decode): each is either rejected by it and
    # decided by the models' rules, or accepted with the same value.
    ("upstream_attempt", {"bytes": 2**63 - 1}),
    ("upstream_attempt", {"bytes": 2**63}),
    ("upstream_attempt", {"bytes": 2**64 - 1}),
    ("upstream_attempt", {"bytes": -1}),
    ("upstream_attempt", {"latency_ms": 3}),
    ("upstream_attempt", {"latency_ms": 1.7e308}),
    ("upstream_attempt", {"confidence": 1}),
    ("request", {"ts": "2026-01-02T03:04:05.678+05:30"}),
    ("request", {"ts": "2026-01-02T03:04:05.678"}),
    ("request", {"ts": "2026-01-02 03:04:05Z"}),
    ("request", {"ts": "2026-01-02T03:04Z"}),
    ("request", {"ts": 1_767_322_800.5}),
    ("request", {"schema_version": "1"}),
    ("request", {"event_id": None}),
    ("validation_failure", {"failures": [{"path": "a", "rule": "b"}]}),
    ("validation_failure", {"failures": [{"path": "a", "rule": 7}]}),
    ("validation_failure", {"failures": [{"path": "a"}]}),
    ("health_probe", {"status_code": None, "status": "Timeout"}),
]


@pytest.mark.parametrize(("event_type", "changes"), VARIANTS)
def test_derived_validator_accepts_and_rejects_what_the_model_does(
    event_type: str, changes: dict[str, object]
) -> None:
    decoded = message(event_type, **changes)
    model = EVENT_TYPES[event_type]
    table = TABLE_OF_TYPE[event_type]
    try:
        model.model_validate(decoded)
        model.model_validate_json(orjson.dumps(decoded))
    except ValidationError:
        model_accepts = False
    else:
        model_accepts = True

    try:
        from_decoded: dict[str, object] | str = event_to_row(decoded, "t", 0, 0)[1]
    except PoisonMessage as exc:
        from_decoded = exc.reason
    try:
        row = message_to_row(orjson.dumps(decoded), "t", 0, 0)[1]
        from_bytes: dict[str, object] | str = dict(zip(COLUMNS[table], row, strict=True))
    except PoisonMessage as exc:
        from_bytes = exc.reason

    only_the_column_refuses = isinstance(from_decoded, str) and "out of range 0.." in from_decoded
    assert isinstance(from_decoded, dict) == model_accepts or only_the_column_refuses
    # The bytes go through the strict fast decoder first: the same row, or poison too (the
    # wording may differ: pydantic says "array" for JSON input where it says "list").
    assert type(from_bytes) is type(from_decoded)
    if isinstance(from_decoded, dict):
        assert from_bytes == from_decoded


def test_the_fast_decoder_takes_every_well_formed_event() -> None:
    # Otherwise every message would pay for the slower model validation (bench (d) figure).
    decoder, struct_types = event_decoder(UINT_COLUMN_MAX, FINITE_COLUMNS)
    for event_type in EVENT_TYPES:
        assert struct_types[type(decoder.decode(payload(event_type)))] == event_type


def test_a_repeated_key_is_read_as_the_models_read_it() -> None:
    raw = payload("request").replace(b'"path":', b'"path":"/first","path":', 1)
    _, row = message_to_row(raw, "t", 0, 0)
    expected = event_to_row(orjson.loads(raw), "t", 0, 0)[1]
    assert dict(zip(COLUMNS["requests"], row, strict=True)) == expected
