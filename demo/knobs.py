"""Failure knobs of one fake upstream and the pure per-request decision of what it answers."""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from statistics import NormalDist
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas.config import NAME_PATTERN

MAX_LATENCY_MS = 60_000.0
LOW_CONFIDENCE_SCORE = 0.1
_Z_99 = NormalDist().inv_cdf(0.99)
_MASK64 = (1 << 64) - 1


class LatencyKind(enum.StrEnum):
    """How response delays are distributed."""

    FIXED = "fixed"
    UNIFORM = "uniform"
    LOGNORMAL = "lognormal"


class Outcome(enum.StrEnum):
    """What one request gets, in the order :func:`decide` checks for it."""

    STATUS_OVERRIDE = "status_override"
    TIMEOUT = "timeout"
    ERROR = "error"
    NON_JSON = "non_json"
    INVALID_SCHEMA = "invalid_schema"
    PLACEHOLDER = "placeholder"
    LOW_CONFIDENCE = "low_confidence"
    OK = "ok"


class Latency(BaseModel):
    """Delay before answering: ``fixed`` (median_ms), ``uniform`` (min_ms..max_ms) or
    ``lognormal`` (median_ms and p99_ms, the shape real scraping upstreams have)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: LatencyKind = LatencyKind.FIXED
    median_ms: float = Field(default=0.0, ge=0, le=MAX_LATENCY_MS)
    p99_ms: float | None = Field(default=None, ge=0, le=MAX_LATENCY_MS)
    min_ms: float | None = Field(default=None, ge=0, le=MAX_LATENCY_MS)
    max_ms: float | None = Field(default=None, ge=0, le=MAX_LATENCY_MS)

    @model_validator(mode="after")
    def _fields_fit_kind(self) -> Self:
        # Rejecting fields the kind ignores catches "I set p99 but it did nothing" mistakes.
        if self.kind is LatencyKind.UNIFORM:
            if self.min_ms is None or self.max_ms is None:
                raise ValueError("uniform latency needs both min_ms and max_ms")
            if self.min_ms > self.max_ms:
                raise ValueError(f"min_ms ({self.min_ms}) must not exceed max_ms ({self.max_ms})")
            if self.p99_ms is not None:
                raise ValueError("p99_ms applies to lognormal latency only; use min_ms/max_ms")
            return self
        if self.min_ms is not None or self.max_ms is not None:
            raise ValueError(f"min_ms/max_ms apply to uniform latency only, not {self.kind}")
        if self.kind is LatencyKind.LOGNORMAL:
            if self.p99_ms is None:
                raise ValueError("lognormal latency needs p99_ms")
            if self.median_ms <= 0:
                raise ValueError("lognormal latency needs median_ms > 0")
            if self.p99_ms < self.median_ms:
                raise ValueError(
                    f"p99_ms ({self.p99_ms}) must be at least median_ms ({self.median_ms})"
                )
        elif self.p99_ms is not None:
            raise ValueError("p99_ms applies to lognormal latency only")
        return self

    def sample_ms(self, unit: float) -> float:
        """Map a uniform draw in [0, 1) to a delay in milliseconds (inverse CDF)."""
        if self.kind is LatencyKind.UNIFORM:
            assert self.min_ms is not None and self.max_ms is not None  # checked by validator
            return self.min_ms + (self.max_ms - self.min_ms) * unit
        if self.kind is LatencyKind.LOGNORMAL:
            assert self.p99_ms is not None  # checked by validator
            sigma = math.log(self.p99_ms / self.median_ms) / _Z_99
            z = NormalDist().inv_cdf(min(max(unit, 1e-12), 1 - 1e-12))
            return min(self.median_ms * math.exp(sigma * z), MAX_LATENCY_MS)
        return self.median_ms


class Knobs(BaseModel):
    """How one fake upstream misbehaves; every rate is a share of its requests (0..1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    latency: Latency = Latency()
    error_rate: float = Field(default=0.0, ge=0, le=1)
    error_status: int = Field(default=503, ge=400, le=599)
    timeout_rate: float = Field(default=0.0, ge=0, le=1)
    hang_seconds: float = Field(default=30.0, gt=0, le=600)
    """How long a timed-out request hangs; longer than any sane client timeout."""
    invalid_schema_rate: float = Field(default=0.0, ge=0, le=1)
    low_confidence_rate: float = Field(default=0.0, ge=0, le=1)
    placeholder_rate: float = Field(default=0.0, ge=0, le=1)
    non_json_rate: float = Field(default=0.0, ge=0, le=1)
    status_override: int | None = Field(default=None, ge=400, le=599)
    """Answer every request with this error status; ``None`` turns it off."""
    seed: int = Field(default=0, ge=0, le=2**63 - 1)


@dataclass(frozen=True, slots=True)
class Behaviour:
    """What one request gets: an outcome, how long to wait first and which status to send."""

    outcome: Outcome
    delay_s: float
    status: int


class KnobsError(ValueError):
    """Knob input was rejected; ``lines`` holds one ``path: reason`` per problem."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("; ".join(lines))
        self.lines = lines


KNOB_FIELDS: tuple[str, ...] = tuple(Knobs.model_fields)
_LATENCY_FIELDS: tuple[str, ...] = tuple(Latency.model_fields)


def describe_knob_errors(error: ValidationError, prefix: str = "") -> list[str]:
    """Turn a knobs validation error into ``path: reason`` lines.

    Args:
        error: the error pydantic raised.
        prefix: prepended to every path, e.g. the source name.

    Returns:
        Lines such as ``samehadaku.error_rate: Input should be less than or equal to 1``.
    """
    lines = []
    for item in error.errors(include_url=False):
        parts = [prefix] if prefix else []
        parts += [str(part) for part in item["loc"]]
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            known = _LATENCY_FIELDS if "latency" in item["loc"][:-1] else KNOB_FIELDS
            message = f"unknown knob; expected one of: {', '.join(known)}"
        lines.append(f"{'.'.join(parts) or '<knobs>'}: {message}")
    return lines


def merge_knobs(current: Knobs, update: Mapping[str, object], prefix: str = "") -> Knobs:
    """Apply a partial update: each given field replaces the current one wholesale.

    ``latency`` is replaced as a whole object, so switching its kind never leaves stale
    fields of the previous kind behind.

    Args:
        current: the knobs in force.
        update: field → new value, as decoded from JSON.
        prefix: path prefix for error messages.

    Returns:
        The new, validated knobs.

    Raises:
        KnobsError: when a field is unknown or out of bounds.
    """
    try:
        return Knobs.model_validate({**current.model_dump(), **update})
    except ValidationError as error:
        raise KnobsError(describe_knob_errors(error, prefix)) from None


def _unit(seed: int, request_number: int, stream: int) -> float:
    """A uniform draw in [0, 1) from (seed, request, stream) via splitmix64: pure and cheap."""
    z = (seed * 0x9E3779B97F4A7C15 + request_number * 0xBF58476D1CE4E5B9 + stream) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    z ^= z >> 31
    return (z >> 11) / float(1 << 53)


_RATED: tuple[tuple[Outcome, str], ...] = (
    (Outcome.TIMEOUT, "timeout_rate"),
    (Outcome.ERROR, "error_rate"),
    (Outcome.NON_JSON, "non_json_rate"),
    (Outcome.INVALID_SCHEMA, "invalid_schema_rate"),
    (Outcome.PLACEHOLDER, "placeholder_rate"),
    (Outcome.LOW_CONFIDENCE, "low_confidence_rate"),
)


def decide(knobs: Knobs, request_number: int) -> Behaviour:
    """Pick what request ``request_number`` of a source gets, deterministically.

    Order: ``status_override`` wins outright. Otherwise one draw in [0, 1) is laid against
    the rates as consecutive shares of traffic, in the order timeout, error, non_json,
    invalid_schema, placeholder, low_confidence; what is left is ``ok``. When the rates add
    up past 1 the later ones are cut short, so ``error_rate=1`` means every request errors
    whatever the other rates say. Every outcome first waits a latency sample; a timeout waits
    ``hang_seconds`` instead.

    Args:
        knobs: the source's knobs (their ``seed`` feeds the draws).
        request_number: 0-based count of requests the source received before this one.

    Returns:
        The behaviour for this request; same inputs always give the same behaviour.
    """
    delay_s = knobs.latency.sample_ms(_unit(knobs.seed, request_number, 1)) / 1000.0
    if knobs.status_override is not None:
        return Behaviour(Outcome.STATUS_OVERRIDE, delay_s, knobs.status_override)
    draw = _unit(knobs.seed, request_number, 2)
    threshold = 0.0
    for outcome, field in _RATED:
        rate: float = getattr(knobs, field)
        threshold += rate
        if draw < threshold:
            if outcome is Outcome.TIMEOUT:
                return Behaviour(outcome, knobs.hang_seconds, 200)
            status = knobs.error_status if outcome is Outcome.ERROR else 200
            return Behaviour(outcome, delay_s, status)
    return Behaviour(Outcome.OK, delay_s, 200)


def merge_sources(
    base: Mapping[str, Knobs], document: object, name_pattern: str = NAME_PATTERN
) -> dict[str, Knobs]:
    """Overlay a ``{source: {knob: value}}`` document on ``base``.

    A source already in ``base`` gets the given fields merged over its knobs (as
    :func:`merge_knobs`); a new name adds a source with default knobs plus the given fields.

    Args:
        base: the knobs to start from, e.g. the demo defaults (or empty).
        document: decoded JSON.
        name_pattern: regular expression a source name must match (it becomes a path segment).

    Returns:
        The merged source → knobs mapping.

    Raises:
        KnobsError: listing every problem as ``path: reason``.
    """
    if not isinstance(document, dict):
        raise KnobsError(["<document>: must be a JSON object mapping source name to knobs"])
    merged = dict(base)
    lines: list[str] = []
    for name, update in document.items():
        if not re.fullmatch(name_pattern, name):
            lines.append(f"{name}: source name must match {name_pattern}")
        elif not isinstance(update, dict):
            lines.append(f"{name}: must be a JSON object of knob fields, got {json_kind(update)}")
        else:
            try:
                merged[name] = merge_knobs(base.get(name, Knobs()), update, prefix=name)
            except KnobsError as error:
                lines += error.lines
    if lines:
        raise KnobsError(lines)
    return merged


def json_kind(value: object) -> str:
    """JSON's name for the type of a decoded value (``array``, ``string``, ``null``...)."""
    names = {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)
