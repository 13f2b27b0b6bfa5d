"""Serving: run an ASGI app under uvicorn (httptools parser, the process's running loop).

uvicorn rather than the design card's hypercorn: on this 2-core target hypercorn's pure-Python
HTTP/1.1 handling (h11) was most of the gateway's CPU per request. A bare ASGI answer ran at
3,200 req/s on hypercorn and 22,900 on uvicorn + httptools; the gateway's cache hits went from
about 1,960 to 6,100 req/s and a cache miss's CPU from 1.7 to 1.35 ms (docs/BENCHMARKS.md).
Quart runs on any ASGI server, so nothing else changed. The demo upstreams and the store
process's ClickHouse HTTP endpoint are served the same way (one server, one set of settings).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Awaitable, Callable, Iterator

import uvicorn
from quart import Quart

from gateway.asgi import ASGIApp

GRACEFUL_TIMEOUT_S = 5


class ServerStartupError(RuntimeError):
    """The app's startup (ASGI lifespan) failed, so the server never served."""


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling and exiting to the process (``serve_app``)."""

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().serve(sockets)
        except SystemExit:
            # uvicorn exits the process when startup fails. Raised in a task, SystemExit would
            # also stop the event loop under every other part of the process (the gateway, or
            # the demo upstreams' host), so it becomes an ordinary error here.
            raise ServerStartupError(
                "the app's startup failed (its reason is logged above)"
            ) from None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The CLI installs its own handlers (install_shutdown_signals) that stop every part
        # of the process, not only this server; uvicorn's would replace them while serving.
        yield


def listen(host: str, port: int) -> socket.socket:
    """Bind the listening socket now (port 0 = any free port), so a taken address is an
    ``OSError`` the caller can report before anything else starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=1024)


def server_config(
    app: Quart | ASGIApp, graceful_timeout_s: int = GRACEFUL_TIMEOUT_S
) -> uvicorn.Config:
    """The uvicorn settings every server here runs with.

    Args:
        app: the ASGI app; it must speak the ASGI lifespan protocol (Quart does, and so do
            the demo upstreams and chdb_http), whose startup runs before serving.
        graceful_timeout_s: how long in-flight requests may run on after shutdown starts.
    """
    return uvicorn.Config(
        app,
        loop="none",  # serve on the running loop (uvloop under `apicat serve`)
        http="httptools",
        lifespan="on",
        access_log=False,  # the request event is the access log
        log_config=None,  # leave logging to gateway.logs
        server_header=False,
        timeout_graceful_shutdown=graceful_timeout_s,
    )


def install_shutdown_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def serve_app(
    app: Quart | ASGIApp,
    listener: socket.socket,
    shutdown_trigger: Callable[[], Awaitable[object]],
    graceful_timeout_s: int = GRACEFUL_TIMEOUT_S,
) -> None:
    """Serve ``app`` on ``listener`` until ``shutdown_trigger`` returns, then drain gracefully.

    Signals are left to the caller (see ``install_shutdown_signals``). The socket is closed
    afterwards, whether or not serving ever started.

    Args:
        app: the ASGI app (see ``server_config``); its lifespan startup runs first.
        listener: a listening socket (see ``listen``); connections queue on it until then.
        shutdown_trigger: awaited; its return starts the graceful shutdown.
        graceful_timeout_s: how long in-flight requests may run on after that.

    Raises:
        ServerStartupError: the app's startup failed (the reason is logged by the app).
    """
    server = _EmbeddedServer(server_config(app, graceful_timeout_s))

    async def stop_requested() -> None:
        await shutdown_trigger()

    serving = asyncio.create_task(server.serve(sockets=[listener]), name="http-server")
    stopping = asyncio.create_task(stop_requested(), name="http-server-stop")
    try:
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        server.should_exit = True
        await serving
    finally:
        stopping.cancel()
        serving.cancel()
        await asyncio.gather(stopping, serving, return_exceptions=True)
        listener.close()
