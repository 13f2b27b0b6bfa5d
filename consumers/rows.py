"""Pure conversion of one consumed event message into a row of its ClickHouse table."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, cast

import msgspec
from pydantic_core import CoreSchema, ErrorDetails, SchemaValidator, ValidationError, core_schema

from consumers.fast_decode import event_decoder
from schemas.events import EVENT_TYPES, EventEnvelope, FieldFailure

__all__ = [
    "COLUMNS",
    "FINITE_COLUMNS",
    "TABLE_OF_TYPE",
    "UINT_COLUMN_MAX",
    "PoisonMessage",
    "event_to_row",
    "message_to_row",
]


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
UINT_COLUMN_MAX = {
    "schema_version": 2**16 - 1,
    "status": 2**16 - 1,
    "fallback_depth": 2**16 - 1,
    "depth": 2**16 - 1,
    "retry": 2**16 - 1,
    "status_code": 2**16 - 1,
    "consecutive_failures": 2**32 - 1,
    "bytes": 2**64 - 1,
}
FINITE_COLUMNS = frozenset({"latency_ms", "confidence"})
# DateTime64(3) covers 1900..2299; anything near the ends is a producer bug, not an event.
_TS_MIN = datetime(1970, 1, 1, tzinfo=UTC)
_TS_MAX = datetime(2200, 1, 1, tzinfo=UTC)
_MAX_REASON_ERRORS = 5


def _column_schema(column: str, schema: CoreSchema) -> CoreSchema:
    """``schema`` of one model field, narrowed to what its column can hold.

    Enums validate to their plain string value (a ``literal`` of the members' values, so no
    encoder needs to know about enums); unsigned integer columns get their range; floats must
    be finite. Everything else is the model's own schema, untouched.
    """
    kind = schema["type"]
    if kind in ("default", "nullable"):
        inner = _column_schema(column, schema["schema"])
        return cast(CoreSchema, {**schema, "schema": inner})
    if kind == "enum":
        return core_schema.literal_schema([member.value for member in schema["members"]])
    if kind == "int" and column in UINT_COLUMN_MAX:
        return cast(CoreSchema, {**schema, "ge": 0, "le": UINT_COLUMN_MAX[column]})
    if kind == "float" and column in FINITE_COLUMNS:
        return cast(CoreSchema, {**schema, "allow_inf_nan": False})
    return schema


def _event_fields_schema(model: type[EventEnvelope]) -> CoreSchema:
    """The model's own fields schema: validates like the model but yields a plain dict."""
    schema = model.__pydantic_core_schema__
    fields = schema["schema"]
    if schema["type"] != "model" or fields["type"] != "model-fields":
        raise TypeError(f"{model.__name__}: unexpected core schema {schema['type']}")
    narrowed = {
        name: {**field, "schema": _column_schema(name, field["schema"])}
        for name, field in fields["fields"].items()
    }
    extra = schema["config"].get("extra_fields_behavior")
    return cast(CoreSchema, {**fields, "fields": narrowed, "extra_behavior": extra})


def _event_validator() -> SchemaValidator:
    """One validator for every event type, derived from the models of ``schemas.events``.

    A tagged union on ``type`` of each model's fields schema: same fields, types, defaults,
    coercions and unknown-field rule as ``model_validate``, but straight from JSON bytes in
    Rust and into a dict, without a model instance (the instance and the Python-side JSON
    decoding were most of the cost of a row). ``_column_schema`` adds the column limits.
    tests/unit/test_rows.py checks that it accepts and rejects what the models do.
    """
    choices = {event_type: _event_fields_schema(model) for event_type, model in EVENT_TYPES.items()}
    return SchemaValidator(core_schema.tagged_union_schema(choices, "type"))


_VALIDATOR = _event_validator()


def _error_text(error: ErrorDetails) -> str:
    column = str(error["loc"][-1]) if error["loc"] else ""
    if error["type"] in ("greater_than_equal", "less_than_equal") and column in UINT_COLUMN_MAX:
        return f"{error['input']} is out of range 0..{UINT_COLUMN_MAX[column]}"
    if error["type"] == "finite_number":
        return f"{error['input']} is not a finite number"
    return error["msg"]


def _reason(error: ValidationError) -> str:
    errors = error.errors(include_url=False)
    first = errors[0]
    if first["type"] == "json_invalid":
        return f"not JSON: {first['msg']}"
    if first["type"] in ("dict_type", "model_attributes_type"):
        return "message is not a JSON object"
    if first["type"] == "union_tag_not_found":
        return "missing event type ('type' field)"
    if first["type"] == "union_tag_invalid":
        return f"unknown event type {first['input']['type']!r}"
    event_type = first["loc"][0]  # the union's tag leads every path below it
    parts = [
        f"{'.'.join(str(part) for part in item['loc'][1:]) or '(event)'}: {_error_text(item)}"
        for item in errors[:_MAX_REASON_ERRORS]
    ]
    more = len(errors) - _MAX_REASON_ERRORS
    if more > 0:
        parts.append(f"and {more} more")
    return f"invalid {event_type} event: " + "; ".join(parts)


# Per event type: its table and how to pick the table's columns (before the ingestion ones,
# which always come last) out of the validated fields.
_LAYOUT: dict[str, tuple[str, Callable[[dict[str, Any]], tuple[object, ...]]]] = {
    event_type: (table, itemgetter(*COLUMNS[table][: -len(_INGESTION)]))
    for event_type, table in TABLE_OF_TYPE.items()
}


def _utc_in_range(ts: datetime) -> datetime:
    # A naive timestamp is taken as UTC (SPEC §6: every ts is UTC); others are converted.
    ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    if not _TS_MIN <= ts < _TS_MAX:
        raise PoisonMessage(f"ts: {ts.isoformat()} is out of range")
    return ts


def _fields_to_row(
    fields: dict[str, Any], topic: str, partition: int, offset: int
) -> tuple[str, tuple[object, ...]]:
    fields["ts"] = _utc_in_range(fields["ts"])
    event_type: str = fields["type"]
    if event_type == "validation_failure":
        failures: list[FieldFailure] = fields["failures"]
        fields["failures.path"] = [failure.path for failure in failures]
        fields["failures.rule"] = [failure.rule for failure in failures]
        fields["failures.detail"] = [failure.detail for failure in failures]
    table, pick = _LAYOUT[event_type]
    return table, (*pick(fields), topic, partition, offset)


def _fast_layout() -> dict[type[msgspec.Struct], tuple[str, bool]]:
    """Per fast-path Struct: its table, and whether its last field is ``failures``.

    A Struct's fields are positionally the table's columns (``failures`` standing for the
    three ``failures.*`` arrays, ``event_id`` and ``ts`` first); checked here, at import, so
    a model change that breaks the correspondence fails loudly instead of misplacing values.
    """
    layout: dict[type[msgspec.Struct], tuple[str, bool]] = {}
    for struct, event_type in _FAST_TYPES.items():
        table = TABLE_OF_TYPE[event_type]
        fields = struct.__struct_fields__
        has_failures = fields[-1] == "failures"
        expected = COLUMNS[table][
            : -len(_INGESTION) - (len(_FAILURE_COLUMNS) if has_failures else 0)
        ]
        if fields[: len(fields) - has_failures] != expected or expected[:2] != ("event_id", "ts"):
            raise TypeError(f"{event_type}: fields {fields} do not line up with {table} columns")
        layout[struct] = (table, has_failures)
    return layout


_FAST_DECODER, _FAST_TYPES = event_decoder(UINT_COLUMN_MAX, FINITE_COLUMNS)
_FAST_LAYOUT = _fast_layout()


def message_to_row(
    payload: bytes, topic: str, partition: int, offset: int
) -> tuple[str, tuple[object, ...]]:
    """Validate one event message's JSON bytes and turn it into a row of its table.

    The fast path of :func:`event_to_row`, with the same checks and reasons: the row is a
    tuple in the order of ``COLUMNS[table]``. A message is decoded by the strict decoder of
    ``consumers.fast_decode`` first; one it rejects is validated by the models' own rules,
    which accept it after all (lax input) or name what is wrong.

    Raises:
        PoisonMessage: as :func:`event_to_row`, and when ``payload`` is not a JSON object.
    """
    try:
        event = _FAST_DECODER.decode(payload)
    except msgspec.MsgspecError:
        try:
            fields: dict[str, Any] = _VALIDATOR.validate_json(payload)[0]
        except ValidationError as exc:
            raise PoisonMessage(_reason(exc)) from None
        return _fields_to_row(fields, topic, partition, offset)
    table, has_failures = _FAST_LAYOUT[type(event)]
    values = msgspec.structs.astuple(event)
    ts = _utc_in_range(values[1])
    if not has_failures:
        return table, (values[0], ts, *values[2:], topic, partition, offset)
    failures = values[-1]
    return table, (
        *(values[0], ts, *values[2:-1]),
        *([item.path for item in failures], [item.rule for item in failures]),
        [item.detail for item in failures],
        *(topic, partition, offset),
    )


def event_to_row(
    event: Mapping[str, object], topic: str, partition: int, offset: int
) -> tuple[str, dict[str, object]]:
    """Validate one decoded event message and turn it into a row of its table.

    The event is validated as its pydantic model from ``schemas.events.EVENT_TYPES`` (the
    contract) would validate it, plus the limits of its columns, then mapped column by
    column: enums become plain strings, ``ts`` becomes an aware UTC datetime, validation
    failures become the three parallel ``failures.*`` arrays.

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
    try:
        fields: dict[str, Any] = _VALIDATOR.validate_python(event)[0]
    except ValidationError as exc:
        raise PoisonMessage(_reason(exc)) from None
    table, row = _fields_to_row(fields, topic, partition, offset)
    return table, dict(zip(COLUMNS[table], row, strict=True))
