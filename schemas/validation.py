"""Validation of every upstream answer: confidence threshold plus the endpoint's payload model.

:func:`validate_payload` is what the gateway calls on each upstream body (SPEC §5.3). It never
raises on JSON-shaped input; every problem becomes a :class:`ValidationIssue` with a field path
(``top10[3].cover``, ``jadwal_rilis.Senin[0].title``, ``details["Total Episode"]``), a stable rule
code from :class:`~schemas.payloads.base.Rule` and a short sentence. Issues about
``confidence_score`` come first; at most :data:`MAX_LISTED_ISSUES` are listed, then one
``truncated`` issue counts the rest, so a broken 10,000-item list stays a small event.

Rules, in short (per-endpoint required fields: :mod:`schemas.payloads.models`):

- the body is a JSON object (``not_object``);
- ``confidence_score`` is present (``missing``), a number and not a bool (``type``), in [0, 1]
  (``out_of_range``) and at least ``min_confidence`` (``confidence_below_threshold``);
- required fields are present and non-null (``missing``), of the Appendix A type (``type``), not
  blank (``empty``), not a placeholder or error-page text (``placeholder``); required URLs are
  absolute http(s) URLs (``url_format``), required images are no placeholder image
  (``placeholder_image``); required lists hold at least one item (``empty``);
- optional fields are only type-checked (``type``).

Pure and stateless: safe to call from any thread or event loop.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from schemas.endpoints import EndpointKey
from schemas.payloads import PAYLOAD_MODELS
from schemas.payloads.base import Rule

__all__ = [
    "MAX_LISTED_ISSUES",
    "ROOT_PATH",
    "Rule",
    "ValidationIssue",
    "ValidationResult",
    "format_path",
    "validate_payload",
]

MAX_LISTED_ISSUES: Final = 50
ROOT_PATH: Final = "<root>"
CONFIDENCE_FIELD: Final = "confidence_score"
_CONFIDENCE_LOC: Final = (CONFIDENCE_FIELD,)

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_|-]*")

_OUT_OF_RANGE_TYPES = frozenset({"greater_than_equal", "less_than_equal"})
_EMPTY_TYPES = frozenset({"too_short", "string_too_short"})
_CUSTOM_RULES = frozenset(rule.value for rule in Rule)


@dataclass(frozen=True, slots=True)
class ValidationIssue:
    """One broken rule at one place in the payload."""

    path: str
    """Where: ``top10[3].cover``, ``confidence_score``, or ``<root>`` for the whole body."""
    rule: str
    """Stable short code, one of :class:`~schemas.payloads.base.Rule`."""
    detail: str = ""
    """A short human sentence."""


@dataclass(frozen=True, slots=True)
class ValidationResult:
    """The verdict on one upstream answer."""

    confidence: float | None
    """The answer's ``confidence_score`` when it is a finite number (even out of range)."""
    issues: tuple[ValidationIssue, ...]

    @property
    def ok(self) -> bool:
        """True when the answer may be served and cached."""
        return not self.issues

    @property
    def low_confidence(self) -> bool:
        """True when the confidence score is missing or below the threshold.

        The gateway records such attempts as ``low_confidence`` rather than ``invalid_schema``.
        """
        return any(
            issue.path == CONFIDENCE_FIELD
            and issue.rule in (Rule.MISSING, Rule.CONFIDENCE_BELOW_THRESHOLD)
            for issue in self.issues
        )


def validate_payload(
    endpoint: EndpointKey, payload: object, min_confidence: float
) -> ValidationResult:
    """Check one parsed upstream answer against its endpoint's rules.

    Args:
        endpoint: Which public endpoint the answer is for.
        payload: The parsed JSON body (any JSON value).
        min_confidence: The endpoint's threshold; a score below it is an issue.

    Returns:
        The confidence score found and every issue (capped, see :data:`MAX_LISTED_ISSUES`);
        ``ok`` is true when there are none.
    """
    if not isinstance(payload, dict):
        detail = f"expected a JSON object, got {_json_type(payload)}"
        return ValidationResult(None, (ValidationIssue(ROOT_PATH, Rule.NOT_OBJECT, detail),))
    confidence = _finite_number(payload.get(CONFIDENCE_FIELD))
    issues: list[ValidationIssue] = []
    # Out-of-range scores are reported by the model; only judge the threshold for valid ones.
    if confidence is not None and 0.0 <= confidence < min_confidence:
        detail = f"{confidence:g} is below the minimum {min_confidence:g}"
        issues.append(ValidationIssue(CONFIDENCE_FIELD, Rule.CONFIDENCE_BELOW_THRESHOLD, detail))
    errors: list[ErrorDetails] = []
    try:
        PAYLOAD_MODELS[endpoint].model_validate(payload)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False)
    return ValidationResult(confidence, _listed(issues, errors))


def _finite_number(value: object) -> float | None:
    # bool is an int subclass, but true/false is not a score.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _issue_from(error: ErrorDetails) -> ValidationIssue:
    kind = error["type"]
    message = error["msg"]
    value = error["input"]
    path = format_path(error["loc"])
    if kind == "missing":
        return ValidationIssue(
            path, Rule.MISSING, "is required" if message == "Field required" else message
        )
    if kind in _CUSTOM_RULES:
        return ValidationIssue(path, Rule(kind), message)
    if kind in _EMPTY_TYPES:
        return ValidationIssue(path, Rule.EMPTY, "must not be empty")
    if kind in _OUT_OF_RANGE_TYPES:
        return ValidationIssue(path, Rule.OUT_OF_RANGE, message)
    if value is None and kind.endswith("_type"):
        return ValidationIssue(path, Rule.MISSING, "is null")
    if kind == "float_type" and isinstance(value, int) and not isinstance(value, bool):
        return ValidationIssue(path, Rule.OUT_OF_RANGE, "is too large to be a number")
    if kind.endswith("_type") or kind == "finite_number":
        return ValidationIssue(path, Rule.TYPE, f"{message}, got {_json_type(value)}")
    return ValidationIssue(path, Rule.INVALID, message)


def format_path(loc: Sequence[int | str]) -> str:
    """Render a pydantic error location as a JSON-path-like string.

    Args:
        loc: Location parts: field names, mapping keys and list indexes.

    Returns:
        ``top10[3].cover``-style text; keys that are not identifiers are quoted
        (``details["Total Episode"]``); ``<root>`` for an empty location.
    """
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif _IDENTIFIER.fullmatch(part):
            parts.append(f".{part}" if parts else part)
        else:
            parts.append(f"[{json.dumps(part, ensure_ascii=False)}]")
    return "".join(parts) or ROOT_PATH


def _listed(
    issues: list[ValidationIssue], errors: list[ErrorDetails]
) -> tuple[ValidationIssue, ...]:
    # Confidence first, so the verdict's headline (and low_confidence) survives truncation;
    # otherwise the models' field order. Only listed errors are converted: a broken 10,000-item
    # list yields 40,000 errors, and formatting all of them would cost more than validating.
    confidence_errors = [error for error in errors if error["loc"] == _CONFIDENCE_LOC]
    issues.extend(_issue_from(error) for error in confidence_errors)
    room = max(0, MAX_LISTED_ISSUES - len(issues))
    others = (error for error in errors if error["loc"] != _CONFIDENCE_LOC)
    issues.extend(_issue_from(error) for error in itertools.islice(others, room))
    hidden = len(errors) - len(confidence_errors) - room
    if hidden > 0:
        more = ValidationIssue(ROOT_PATH, Rule.TRUNCATED, f"\u2026and {hidden} more issues")
        issues.append(more)
    return tuple(issues)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
