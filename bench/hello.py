"""Bare Quart hello-world ASGI app: the framework baseline for the gateway's cache hits."""

from __future__ import annotations

import functools

from quart import Quart, Response

MAX_BODY_BYTES = 1024 * 1024

app = Quart(__name__)


@app.get("/")
async def hello() -> dict[str, str]:
    return {"message": "hello, world"}


@app.get("/bytes/<int:size>")
async def sized(size: int) -> Response:
    """A JSON body of exactly ``size`` bytes, to compare at the gateway's body size."""
    return Response(_body(size), content_type="application/json")


@functools.lru_cache(maxsize=8)
def _body(size: int) -> bytes:
    size = min(max(size, 12), MAX_BODY_BYTES)
    return b'{"pad":"' + b"x" * (size - 10) + b'"}'
