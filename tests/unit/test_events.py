"""Event construction and encoding shortcuts must give exactly what the models would."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from schemas.events import (
    AttemptOutcome,
    CacheStatus,
    CircuitChangeEvent,
    ConfigChangeEvent,
    EventEnvelope,
    FieldFailure,
    HealthProbeEvent,
    ProbeStatus,
    RequestEvent,
    SourceRole,
    UpstreamAttemptEvent,
    ValidationFailureEvent,
)
from schemas.wire import decode_record, encode_record

ENVELOPE: dict[str, Any] = {"request_id": "r-1", "trace_id": "t" * 32, "instance": "gw-1"}
SAMPLES: list[tuple[type[EventEnvelope], dict[str, Any]]] = [
    (
        RequestEvent,
        {
            **ENVELOPE,
            "category": "anime",
            "endpoint": "/api/v1/jadwal-rilis/{day}",
            "path": "/api/v1/jadwal-rilis/senin",
            "status": 200,
            "cache_status": CacheStatus.MISS,
            "source_name": "samehadaku",
            "fallback_depth": 1,
            "latency_ms": 0.1 + 0.2,
            "client_ip": "::1",
        },
    ),
    (
        UpstreamAttemptEvent,
        {
            "category": "anime",
            "endpoint": "/api/v1/home",
            "source_name": 's\u00e9rie "quoted"\nline',
            "role": SourceRole.FALLBACK,
            "depth": 2,
            "url": "http://127.0.0.1:1/home?q=a&b=%20",
            "status_code": None,
            "latency_ms": 1e16,
            "outcome": AttemptOutcome.LOW_CONFIDENCE,
            "confidence": 0.49999999999999994,
            "bytes": 2**40,
        },
    ),
    (
        ValidationFailureEvent,
        {
            **ENVELOPE,
            "category": "drakor",
            "endpoint": "/api/v1/search",
            "source_name": "x",
            "role": SourceRole.PRIMARY,
            "depth": 0,
            "url": "http://127.0.0.1:1/search?q=a",
            "failures": [
                FieldFailure(path="data.0.title", rule="placeholder", detail="'N/A'"),
                FieldFailure(path="confidence_score", rule="low_confidence"),
            ],
        },
    ),
    (
        CircuitChangeEvent,
        {
            "upstream_url": "http://a",
            "from_state": "closed",
            "to_state": "open",
            "consecutive_failures": 5,
        },
    ),
    (
        HealthProbeEvent,
        {
            "upstream_url": "http://a",
            "category": "anime",
            "endpoint": "/api/v1/home",
            "source_name": "a",
            "status": ProbeStatus.TIMEOUT,
            "latency_ms": 5000.0,
        },
    ),
    (
        ConfigChangeEvent,
        {
            "actor": "sighup",
            "action": "reload",
            "target": "config.json",
            "before": '{"a": 1}',
            "after": "",
        },
    ),
]
TIMESTAMPS = [
    datetime(2026, 11, 22, 7, 30, 1, 123456, tzinfo=UTC),
    datetime(2026, 11, 22, 7, 30, 1, tzinfo=UTC),  # no fraction
    datetime(2026, 11, 22, 7, 30, 1, 500),  # naive
]


@pytest.mark.parametrize(("model", "fields"), SAMPLES, ids=lambda v: getattr(v, "__name__", ""))
def test_build_equals_a_validated_instance(
    model: type[EventEnvelope], fields: dict[str, Any]
) -> None:
    built = model.build(**fields)
    validated = model.model_validate(
        {**fields, "event_id": built.event_id, "ts": built.ts}, strict=False
    )
    assert built == validated
    assert built.model_dump() == validated.model_dump()
    assert built.model_fields_set == validated.model_fields_set


@pytest.mark.parametrize(("model", "fields"), SAMPLES, ids=lambda v: getattr(v, "__name__", ""))
@pytest.mark.parametrize("ts", TIMESTAMPS, ids=["aware", "whole-second", "naive"])
def test_encoded_json_is_what_the_model_serializer_writes(
    model: type[EventEnvelope], fields: dict[str, Any], ts: datetime
) -> None:
    event = model.build(**fields, ts=ts)
    event_type, _key, payload = decode_record(encode_record(event))
    assert event_type == model.model_fields["type"].default
    assert orjson.loads(payload) == orjson.loads(event.__pydantic_serializer__.to_json(event))
    assert b"\n" not in payload, "records are newline-delimited in transit"
    assert model.model_validate_json(payload) == event


def test_event_ids_are_unique_version_4_uuids() -> None:
    ids = [RequestEvent.build(**SAMPLES[0][1]).event_id for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    for event_id in ids[:200]:
        parsed = uuid.UUID(event_id)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, event_id)


def test_build_keeps_given_envelope_fields() -> None:
    ts = TIMESTAMPS[0]
    event = RequestEvent.build(**SAMPLES[0][1], event_id="fixed-id", ts=ts)
    assert (event.event_id, event.ts, event.schema_version) == ("fixed-id", ts, 1)
