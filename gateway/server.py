"""Serving: run the gateway app (and optionally the demo upstreams) under hypercorn."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

from hypercorn.asyncio import serve
from hypercorn.config import Config as HypercornConfig
from quart import Quart

log = logging.getLogger("apicat.server")


def hypercorn_config(host: str, port: int) -> HypercornConfig:
    config = HypercornConfig()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None  # the request event is the access log
    config.errorlog = log
    config.graceful_timeout = 5.0
    return config


def install_shutdown_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def serve_app(
    app: Quart, host: str, port: int, shutdown_trigger: Callable[[], Awaitable[None]]
) -> None:
    """Serve ``app`` until ``shutdown_trigger`` returns, then drain gracefully."""
    await serve(app, hypercorn_config(host, port), shutdown_trigger=shutdown_trigger)
