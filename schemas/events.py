"""Versioned event models: the single source of truth for statistics, logs and audit (SPEC §6)."""

from __future__ import annotations

import enum
import random
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1


class AttemptOutcome(enum.StrEnum):
    """How one upstream attempt ended; every value but ``ok`` moves the chain on."""

    OK = "ok"
    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"
    HTTP_5XX = "http_5xx"
    HTTP_4XX = "http_4xx"
    HTTP_OTHER = "http_other"
    BODY_TOO_LARGE = "body_too_large"
    INVALID_JSON = "invalid_json"
    LOW_CONFIDENCE = "low_confidence"
    INVALID_SCHEMA = "invalid_schema"
    CIRCUIT_OPEN = "circuit_open"
    CANCELLED = "cancelled"
    DEADLINE_EXCEEDED = "deadline_exceeded"


class SourceRole(enum.StrEnum):
    PRIMARY = "primary"
    FALLBACK = "fallback"


class CacheStatus(enum.StrEnum):
    HIT = "HIT"
    MISS = "MISS"
    STALE = "STALE"
    BYPASS = "BYPASS"


# Version 4 and the RFC 4122 variant, set into 128 random bits.
_UUID4_CLEAR = ~((0xF << 76) | (0x3 << 62)) & (2**128 - 1)
_UUID4_SET = (0x4 << 76) | (0x2 << 62)


def _new_event_id() -> str:
    """A random (version 4) UUID string.

    Not ``uuid.uuid4()``: its ``os.urandom`` call is a syscall per event, a third of an event's
    cost on the cache-hit path. Event ids must be unique, not secret, so the bits come from the
    stdlib's generator (seeded from ``os.urandom``, reseeded in forked children).
    """
    value = f"{random.getrandbits(128) & _UUID4_CLEAR | _UUID4_SET:032x}"
    return f"{value[:8]}-{value[8:12]}-{value[12:16]}-{value[16:20]}-{value[20:]}"


def _utc_now() -> datetime:
    return datetime.now(UTC)


_EventT = TypeVar("_EventT", bound="EventEnvelope")


class EventEnvelope(BaseModel):
    """Fields every event carries."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str = Field(default_factory=_new_event_id)
    ts: datetime = Field(default_factory=_utc_now)
    schema_version: int = SCHEMA_VERSION
    request_id: str = ""
    trace_id: str = ""
    instance: str = ""

    # Defaults that are plain values (not factories), per event class; see ``build``.
    plain_defaults: ClassVar[dict[str, Any]] = {}

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls.plain_defaults = {
            name: info.default
            for name, info in cls.model_fields.items()
            if not info.is_required() and info.default_factory is None
        }

    @classmethod
    def build(cls: type[_EventT], **fields: Any) -> _EventT:
        """Construct without validation, for hot paths whose fields are typed by construction.

        What ``model_construct`` does, minus its per-field loop over defaults and factories,
        which cost more than the rest of an event on the cache-hit path. A test keeps the
        result equal to a validated instance.
        """
        # Envelope first, so a record in the journal or on Kafka reads in a useful order.
        values = {
            "event_id": fields.pop("event_id", None) or _new_event_id(),
            "ts": fields.pop("ts", None) or datetime.now(UTC),
            **cls.plain_defaults,
            **fields,
        }
        event = cls.__new__(cls)
        object.__setattr__(event, "__dict__", values)
        object.__setattr__(event, "__pydantic_fields_set__", {"event_id", "ts", *fields})
        object.__setattr__(event, "__pydantic_extra__", None)
        object.__setattr__(event, "__pydantic_private__", None)
        return event


class RequestEvent(EventEnvelope):
    """One per client request of the public API."""

    type: Literal["request"] = "request"
    category: str
    # The endpoint template, as attempts name it ("/api/v1/jadwal-rilis/{day}"); the request
    # path itself when it matched no endpoint (a 404).
    endpoint: str
    path: str
    status: int
    cache_status: CacheStatus
    source_name: str | None = None
    fallback_depth: int | None = None
    latency_ms: float
    client_ip: str = ""
    error_code: str | None = None


class UpstreamAttemptEvent(EventEnvelope):
    """One per HTTP call that left the gateway (plus links skipped with an open circuit)."""

    type: Literal["upstream_attempt"] = "upstream_attempt"
    category: str
    endpoint: str
    source_name: str
    role: SourceRole
    depth: int
    retry: int = 0
    url: str
    status_code: int | None = None
    latency_ms: float
    outcome: AttemptOutcome
    confidence: float | None = None
    bytes: int = 0
    detail: str = ""


class FieldFailure(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    rule: str
    detail: str = ""


class ValidationFailureEvent(EventEnvelope):
    """One per upstream answer that was rejected by validation, listing every failed rule."""

    type: Literal["validation_failure"] = "validation_failure"
    category: str
    endpoint: str
    source_name: str
    role: SourceRole
    depth: int
    url: str
    failures: list[FieldFailure]


class CircuitChangeEvent(EventEnvelope):
    """A circuit breaker of one upstream base URL changed state."""

    type: Literal["circuit_change"] = "circuit_change"
    upstream_url: str
    from_state: str
    to_state: str
    consecutive_failures: int


class ProbeStatus(enum.StrEnum):
    OK = "OK"
    TIMEOUT = "Timeout"
    ERROR = "Error"
    INVALID = "Invalid"


class HealthProbeEvent(EventEnvelope):
    """One per health probe of one upstream URL."""

    type: Literal["health_probe"] = "health_probe"
    upstream_url: str
    category: str
    endpoint: str
    source_name: str
    status: ProbeStatus
    status_code: int | None = None
    latency_ms: float
    detail: str = ""


class ConfigChangeEvent(EventEnvelope):
    """An admin (or an import) changed the routing config; ``before``/``after`` are JSON."""

    type: Literal["config_change"] = "config_change"
    actor: str
    action: str
    target: str
    before: str = ""
    after: str = ""


AnyEvent = Annotated[
    RequestEvent
    | UpstreamAttemptEvent
    | ValidationFailureEvent
    | CircuitChangeEvent
    | HealthProbeEvent
    | ConfigChangeEvent,
    Field(discriminator="type"),
]

EVENT_TYPES: dict[str, type[EventEnvelope]] = {
    "request": RequestEvent,
    "upstream_attempt": UpstreamAttemptEvent,
    "validation_failure": ValidationFailureEvent,
    "circuit_change": CircuitChangeEvent,
    "health_probe": HealthProbeEvent,
    "config_change": ConfigChangeEvent,
}
