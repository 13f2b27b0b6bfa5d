"""Bare Quart hello-world ASGI app: the framework baseline for the gateway's cache hits.

``python -m bench.hello --port N`` serves it exactly as ``apicat serve`` serves the gateway
(``gateway.server.listen`` + ``serve_app`` on a uvloop loop), so the two share every server
setting.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys

import uvloop
from quart import Quart, Response

from gateway.server import install_shutdown_signals, listen, serve_app

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


async def _serve(host: str, port: int) -> None:
    stop = asyncio.Event()
    install_shutdown_signals(stop)

    async def stopped() -> None:
        await stop.wait()

    await serve_app(app, listen(host, port), stopped)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hello", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    uvloop.run(_serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
