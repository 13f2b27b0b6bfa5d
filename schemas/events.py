"""Versioned event models: the single source of truth for statistics, logs and audit (SPEC §6)."""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar, cast

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


def _new_event_id() -> str:
    return str(uuid.uuid4())


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

    @classmethod
    def build(cls: type[_EventT], **fields: Any) -> _EventT:
        """Construct without validation, for hot paths whose fields are typed by construction.

        Fills the generated fields itself: pydantic's ``model_construct`` would otherwise
        inspect the default factories' signatures on every call, which dominated the
        cost of an event on the cache-hit path.
        """
        fields.setdefault("event_id", str(uuid.uuid4()))
        fields.setdefault("ts", datetime.now(UTC))
        # The pydantic mypy plugin types model_construct as the declaring class, not cls.
        return cast(_EventT, cls.model_construct(**fields))


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
