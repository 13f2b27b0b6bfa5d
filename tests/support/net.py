"""Loopback helpers for tests that start real servers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import httpx
from quart import Quart

from gateway.asgi import ASGIApp
from gateway.server import listen, serve_app


def free_port() -> int:
    """A loopback TCP port nobody listens on right now (for a server the test starts next)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def served(app: Quart | ASGIApp) -> AsyncIterator[httpx.AsyncClient]:
    """``app`` on the real server (``gateway.server``) at a free loopback port; yields a client
    for it. Requests sent before its lifespan startup finished wait in the listen backlog."""
    listener = listen("127.0.0.1", 0)
    port = listener.getsockname()[1]
    stop = asyncio.Event()

    async def stopped() -> None:
        await stop.wait()

    server = asyncio.create_task(serve_app(app, listener, stopped), name="test-server")
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=10
        ) as client:
            yield client
    finally:
        stop.set()
        await server
