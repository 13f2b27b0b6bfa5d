"""Pure: one probe's upstream response → OK, Timeout, Error or Invalid, as the gateway judges it."""

from __future__ import annotations

import orjson

from gateway.upstream import UpstreamResponse
from schemas.endpoints import EndpointKey
from schemas.events import AttemptOutcome, ProbeStatus
from schemas.validation import validate_payload

# Outcomes that mean "it answered, but not something we could serve"; the fetcher itself only
# returns OK bodies, these arrive when a caller hands in an already-judged response.
_INVALID = frozenset(
    {AttemptOutcome.INVALID_JSON, AttemptOutcome.LOW_CONFIDENCE, AttemptOutcome.INVALID_SCHEMA}
)
_TIMEOUT = frozenset({AttemptOutcome.TIMEOUT, AttemptOutcome.DEADLINE_EXCEEDED})
_MAX_DETAIL = 300


def classify(
    response: UpstreamResponse, endpoint_key: EndpointKey, min_confidence: float
) -> tuple[ProbeStatus, str]:
    """Judge a probe answer with the same parse-and-validate rules the gateway serves by.

    * ``OK``: a 2xx JSON body that passes :func:`~schemas.validation.validate_payload`;
    * ``Timeout``: no complete answer within the probe timeout;
    * ``Error``: connection failure, non-2xx status, body over the size cap, other transport
      faults;
    * ``Invalid``: a 2xx answer that is not JSON, has a low confidence score or breaks the
      endpoint's schema.

    Args:
        response: what the fetcher returned.
        endpoint_key: the probed endpoint, whose payload model applies.
        min_confidence: the probed endpoint's confidence threshold.

    Returns:
        The verdict and a short detail (empty for OK); for Invalid the first issue as
        ``path: rule``.
    """
    outcome = response.outcome
    if outcome in _TIMEOUT:
        return ProbeStatus.TIMEOUT, response.detail or "timed out"
    if outcome in _INVALID:
        return ProbeStatus.INVALID, response.detail or outcome.value
    if outcome is not AttemptOutcome.OK:
        return ProbeStatus.ERROR, response.detail or outcome.value
    if response.body is None:
        return ProbeStatus.INVALID, "2xx answer without a body"
    try:
        payload = orjson.loads(response.body)
    except orjson.JSONDecodeError as exc:
        return ProbeStatus.INVALID, f"invalid JSON: {exc}"[:_MAX_DETAIL]
    result = validate_payload(endpoint_key, payload, min_confidence)
    if not result.ok:
        first = result.issues[0]
        return ProbeStatus.INVALID, f"{first.path}: {first.rule}"[:_MAX_DETAIL]
    return ProbeStatus.OK, ""
