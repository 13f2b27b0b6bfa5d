"""Pure conversion of one consumed event message into a row of its ClickHouse table."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from schemas.events import EVENT_TYPES, EventEnvelope, ValidationFailureEvent

__all__ = ["COLUMNS", "TABLE_OF_TYPE", "PoisonMessage", "event_to_row"]


class PoisonMessage(Exception):
    """A message that can never become a row; the consumer dead-letters it with ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


TABLE_OF_TYPE: dict[str, str] = {
    "request": "requests",
    "upstream_attempt": "upstream_attempts",
    "validation_failure": "validation_failures",
    "circuit_change": "circuit_changes",
    "health_probe": "health_probes",
    "config_change": "config_changes",
}

_ENVELOPE = ("event_id", "ts", "schema_version", "request_id", "trace_id", "instance")
_INGESTION = ("_topic", "_partition", "_offset")
_FAILURE_COLUMNS = ("failures.path", "failures.rule", "failures.detail")

# The insert column order per table; must match schemas/clickhouse/001_events.sql.
COLUMNS: dict[str, tuple[str, ...]] = {
    "requests": (
        *_ENVELOPE,
        *("category", "endpoint", "path", "status", "cache_status", "source_name"),
        *("fallback_depth", "latency_ms", "client_ip", "error_code"),
        *_INGESTION,
    ),
    "upstream_attempts": (
        *_ENVELOPE,
        *("category", "endpoint", "source_name", "role", "depth", "retry", "url"),
        *("status_code", "latency_ms", "outcome", "confidence", "bytes", "detail"),
        *_INGESTION,
    ),
    "validation_failures": (
        *_ENVELOPE,
        *("category", "endpoint", "source_name", "role", "depth", "url"),
        *_FAILURE_COLUMNS,
        *_INGESTION,
    ),
    "health_probes": (
        *_ENVELOPE,
        *("upstream_url", "category", "endpoint", "source_name", "status", "status_code"),
        *("latency_ms", "detail"),
        *_INGESTION,
    ),
    "circuit_changes": (
        *_ENVELOPE,
        *("upstream_url", "from_state", "to_state", "consecutive_failures"),
        *_INGESTION,
    ),
    "config_changes": (
        *_ENVELOPE,
        *("actor", "action", "target", "before", "after"),
        *_INGESTION,
    ),
}

# Integer columns are unsigned and narrower than Python ints: a value that does not fit would
# fail (or silently wrap in) the whole batch insert, so it is rejected here, per message.
_UINT_MAX = {
    "schema_version": 2**16 - 1,
    "status": 2**16 - 1,
    "fallback_depth": 2**16 - 1,
    "depth": 2**16 - 1,
    "retry": 2**16 - 1,
    "status_code": 2**16 - 1,
    "consecutive_failures": 2**32 - 1,
    "bytes": 2**64 - 1,
}
_FLOATS = frozenset({"latency_ms", "confidence"})
# DateTime64(3) covers 1900..2299; anything near the ends is a producer bug, not an event.
_TS_MIN = datetime(1970, 1, 1, tzinfo=UTC)
_TS_MAX = datetime(2200, 1, 1, tzinfo=UTC)
_MAX_REASON_ERRORS = 5


def _check_uint(column: str, value: object) -> None:
    if isinstance(value, int) and not 0 <= value <= _UINT_MAX[column]:
        raise PoisonMessage(f"{column}: {value} is out of range 0..{_UINT_MAX[column]}")


def _check_finite(column: str, value: object) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise PoisonMessage(f"{column}: {value} is not a finite number")


@dataclass(frozen=True, slots=True)
class _Plan:
    """How one table's columns come out of its validated model, computed once per table."""

    enums: tuple[str, ...]  # StrEnum -> plain str, so no encoder needs to know about enums
    uints: tuple[str, ...]
    floats: tuple[str, ...]


def _plan(table: str, model: type[EventEnvelope]) -> _Plan:
    fields = [c for c in COLUMNS[table] if c not in ("ts", *_INGESTION, *_FAILURE_COLUMNS)]
    annotations = {c: model.model_fields[c].annotation for c in fields}
    enums = tuple(
        c
        for c, kind in annotations.items()
        if isinstance(kind, type) and issubclass(kind, enum.Enum)
    )
    return _Plan(
        enums=enums,
        uints=tuple(c for c in fields if c in _UINT_MAX),
        floats=tuple(c for c in fields if c in _FLOATS),
    )


_PLANS: dict[str, _Plan] = {
    table: _plan(table, EVENT_TYPES[event_type]) for event_type, table in TABLE_OF_TYPE.items()
}


def _utc(ts: datetime) -> datetime:
    # A naive timestamp is taken as UTC (SPEC §6: every ts is UTC); others are converted.
    ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    if not _TS_MIN <= ts < _TS_MAX:
        raise PoisonMessage(f"ts: {ts.isoformat()} is out of range")
    return ts


def _reason(event_type: str, error: ValidationError) -> str:
    errors = error.errors(include_url=False, include_input=False)
    parts = [
        f"{'.'.join(str(part) for part in item['loc']) or '(event)'}: {item['msg']}"
        for item in errors[:_MAX_REASON_ERRORS]
    ]
    more = len(errors) - _MAX_REASON_ERRORS
    if more > 0:
        parts.append(f"and {more} more")
    return f"invalid {event_type} event: " + "; ".join(parts)


def event_to_row(
    event: Mapping[str, object], topic: str, partition: int, offset: int
) -> tuple[str, dict[str, object]]:
    """Validate one decoded event message and turn it into a row of its table.

    The event is validated with its pydantic model from ``schemas.events.EVENT_TYPES`` (the
    contract), then mapped column by column: enums become plain strings, ``ts`` becomes an
    aware UTC datetime, validation failures become the three parallel ``failures.*`` arrays.

    Args:
        event: the decoded JSON object of one message.
        topic: the topic it was consumed from (stored as ``_topic``).
        partition: its partition (``_partition``).
        offset: its offset in that partition (``_offset``).

    Returns:
        The table name (unqualified, e.g. ``"upstream_attempts"``) and the row keyed by the
        names in ``COLUMNS[table]``.

    Raises:
        PoisonMessage: the message is not a valid event of a known type, or one of its values
            does not fit its column; ``reason`` says which field and why.
    """
    event_type = event.get("type")
    if event_type is None:
        raise PoisonMessage("missing event type ('type' field)")
    model = EVENT_TYPES.get(event_type) if isinstance(event_type, str) else None
    if model is None or not isinstance(event_type, str):
        raise PoisonMessage(f"unknown event type {event_type!r}")
    try:
        parsed: EventEnvelope = model.model_validate(event)
    except ValidationError as exc:
        raise PoisonMessage(_reason(event_type, exc)) from None

    table = TABLE_OF_TYPE[event_type]
    plan = _PLANS[table]
    # A copy of the instance dict is the cheapest way out of the model (cheaper than
    # model_dump or per-field attribute access); only the few special columns are touched.
    row: dict[str, Any] = parsed.__dict__.copy()
    del row["type"]
    for column in plan.enums:
        row[column] = row[column].value
    for column in plan.uints:
        _check_uint(column, row[column])
    for column in plan.floats:
        _check_finite(column, row[column])
    row["ts"] = _utc(row["ts"])
    if isinstance(parsed, ValidationFailureEvent):
        del row["failures"]
        row["failures.path"] = [failure.path for failure in parsed.failures]
        row["failures.rule"] = [failure.rule for failure in parsed.failures]
        row["failures.detail"] = [failure.detail for failure in parsed.failures]
    row["_topic"] = topic
    row["_partition"] = partition
    row["_offset"] = offset
    return table, row
