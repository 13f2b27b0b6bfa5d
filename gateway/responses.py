"""JSON response helpers shared by the public API, ops endpoints and error handlers."""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from quart import Response

JSON = "application/json"


def json_response(
    body: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(body), status=status, headers=dict(headers or {}), content_type=JSON
    )


def raw_json_response(
    body: bytes, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """Send bytes that are already JSON (cached upstream answers) without re-encoding."""
    return Response(body, status=status, headers=dict(headers or {}), content_type=JSON)
