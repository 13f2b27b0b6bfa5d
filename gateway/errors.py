"""Errors the gateway answers with; one handler turns each into JSON ``{"code", "message", ...}``.

Tree::

    GatewayError                      (500, internal_error)
    ├── BadRequest                    (400, bad_request)
    │   ├── MissingCategory           (400, missing_category)
    │   ├── InvalidParameter          (400, invalid_parameter)
    │   └── InvalidDay                (400, invalid_day)
    ├── NotFound                      (404, not_found)
    │   ├── UnknownEndpoint           (404, unknown_endpoint)
    │   ├── UnknownCategory           (404, unknown_category)
    │   └── EndpointNotConfigured     (404, endpoint_not_configured)
    ├── MethodNotAllowed              (405, method_not_allowed)
    ├── RateLimited                   (429, rate_limited)
    └── AllSourcesFailed              (503, all_sources_failed, retriable)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar


class GatewayError(Exception):
    """Root of every error the API answers with.

    Attributes:
        status: the HTTP status of the answer.
        code: a stable machine-readable string clients can switch on.
        retriable: whether the same request may succeed later.
        extra: more JSON fields for the body (choices, attempts, ...).
    """

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    retriable: ClassVar[bool] = False

    def __init__(self, message: str, **extra: object) -> None:
        super().__init__(message)
        self.message = message
        self.extra: dict[str, object] = extra
        self.headers: dict[str, str] = {}

    def body(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, **self.extra}


class BadRequest(GatewayError):
    status = 400
    code = "bad_request"


class MissingCategory(BadRequest):
    code = "missing_category"


class InvalidParameter(BadRequest):
    code = "invalid_parameter"


class InvalidDay(BadRequest):
    code = "invalid_day"


class NotFound(GatewayError):
    status = 404
    code = "not_found"


class UnknownEndpoint(NotFound):
    code = "unknown_endpoint"


class UnknownCategory(NotFound):
    code = "unknown_category"


class EndpointNotConfigured(NotFound):
    code = "endpoint_not_configured"


class MethodNotAllowed(GatewayError):
    status = 405
    code = "method_not_allowed"

    def __init__(self, message: str, *, allowed: str) -> None:
        super().__init__(message)
        self.headers = {"Allow": allowed}


class RateLimited(GatewayError):
    status = 429
    code = "rate_limited"
    retriable = True

    def __init__(self, message: str, *, retry_after_s: int, headers: Mapping[str, str]) -> None:
        super().__init__(message, retry_after_seconds=retry_after_s)
        self.headers = {**headers, "Retry-After": str(retry_after_s)}


class AllSourcesFailed(GatewayError):
    status = 503
    code = "all_sources_failed"
    retriable = True

    def __init__(self, message: str, attempts: Sequence[Mapping[str, object]]) -> None:
        super().__init__(message, attempts=list(attempts))
