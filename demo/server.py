"""Lean raw-ASGI server of the fake upstreams (control API: demo.control), and how to run it."""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import parse_qsl

import orjson

from demo.control import ControlError, DemoState, handle_control
from demo.data import day_index, used_params
from demo.faults import PayloadVariant, render_body
from demo.knobs import Knobs, Outcome, decide
from gateway.asgi import Receive, Scope, Send
from gateway.server import listen, serve_app
from schemas.config import NAME_PATTERN
from schemas.endpoints import DAY_NAMES, EndpointKey

REST_PATHS: dict[str, EndpointKey] = {
    "home": EndpointKey.HOME,
    "jadwal-rilis": EndpointKey.JADWAL_RILIS,
    "anime-terbaru": EndpointKey.ANIME_TERBARU,
    "movie": EndpointKey.MOVIE,
    "anime-detail": EndpointKey.ANIME_DETAIL,
    "episode-detail": EndpointKey.EPISODE_DETAIL,
    "search": EndpointKey.SEARCH,
}
_DAY_PREFIX = "jadwal-rilis/"
# Long waits watch the closing event so shutdown is not held up; short ones just sleep (cheaper).
_SHORT_PAUSE_S = 1.0
_GRACEFUL_TIMEOUT_S = 2
_JSON = [(b"content-type", b"application/json")]
_HTML = [(b"content-type", b"text/html; charset=utf-8")]
_NON_JSON_BODY = (
    b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>"
    b"<h1>Bad Gateway</h1><p>The origin web server is unreachable.</p>"
    b"<hr><center>cloudflare</center></body></html>"
)
_PAYLOAD_VARIANTS = {
    Outcome.OK: PayloadVariant.VALID,
    Outcome.TIMEOUT: PayloadVariant.VALID,
    Outcome.INVALID_SCHEMA: PayloadVariant.INVALID_SCHEMA,
    Outcome.LOW_CONFIDENCE: PayloadVariant.LOW_CONFIDENCE,
    Outcome.PLACEHOLDER: PayloadVariant.PLACEHOLDER,
}


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    extra: Mapping[str, str] | None = None,
    content_type: list[tuple[bytes, bytes]] = _JSON,
) -> None:
    headers = [*content_type, (b"content-length", str(len(body)).encode())]
    if extra:
        headers += [(name.encode(), value.encode()) for name, value in extra.items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _json_error(error: ControlError) -> bytes:
    return orjson.dumps({"code": error.code, "message": str(error), **error.extra})


def _resolve_rest(rest: str) -> tuple[EndpointKey, int | None] | None:
    if rest.startswith(_DAY_PREFIX):
        try:
            return EndpointKey.JADWAL_RILIS_DAY, day_index(rest[len(_DAY_PREFIX) :])
        except ValueError:
            return None
    endpoint = REST_PATHS.get(rest)
    return (endpoint, None) if endpoint is not None else None


class DemoUpstreamApp:
    """ASGI app serving every fake source under ``/<source>/v1/...`` and ``/_demo/`` control.

    Request ``n`` of a source gets :func:`demo.knobs.decide`'s behaviour for ``n``; a
    timed-out request hangs ``hang_seconds`` and then answers normally (a very slow
    upstream). ``PUT /_demo/knobs/<new name>`` adds a source until the next reset. Bodies
    are pre-encoded and cached, so the hot path is a dict lookup. One event loop only.
    """

    def __init__(
        self, sources: Mapping[str, Knobs], on_startup: Callable[[], None] | None = None
    ) -> None:
        bad = [name for name in sources if not re.fullmatch(NAME_PATTERN, name)]
        if bad:
            raise ValueError(f"invalid source name(s) {bad}: must match {NAME_PATTERN}")
        self.state = DemoState(sources)
        self._on_startup = on_startup
        self._closing = asyncio.Event()

    def close(self) -> None:
        """Release requests that are hanging or waiting out a long latency."""
        self._closing.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            try:
                await self._http(scope, receive, send)
            except ControlError as error:
                extra = {"allow": error.allow} if error.allow else {}
                await _respond(send, error.status, _json_error(error), extra)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    if self._on_startup is not None:
                        self._on_startup()
                except Exception as error:
                    await send({"type": "lifespan.startup.failed", "message": repr(error)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if path.startswith("/_demo/"):
            status, payload = await handle_control(self.state, scope["method"], path, receive)
            await _respond(send, status, orjson.dumps(payload))
            return
        source, _, tail = path.lstrip("/").partition("/")
        version, _, rest = tail.partition("/")
        rest = rest.rstrip("/")
        resolved = _resolve_rest(rest) if version == "v1" else None
        if source not in self.state.knobs or resolved is None:
            self.state.not_found += 1
            raise self._not_found(source, path)
        if scope["method"] != "GET":
            raise ControlError(405, "method_not_allowed", "use GET", allow="GET")
        await self._upstream(source, rest, resolved, scope["query_string"], send)

    def _not_found(self, source: str, path: str) -> ControlError:
        if source not in self.state.knobs:
            sources = ", ".join(sorted(self.state.knobs))
            return ControlError(404, "unknown_source", f"no source {source!r}; have: {sources}")
        paths = ", ".join([*REST_PATHS, "jadwal-rilis/<day>"])
        days = ", ".join(sorted(DAY_NAMES))
        return ControlError(
            404, "not_found", f"no route {path}; under /{source}/v1/ serve {paths} (days: {days})"
        )

    async def _pause(self, seconds: float) -> bool:
        """Wait ``seconds``; False when shutdown cut the wait short."""
        if seconds <= 0:
            return not self._closing.is_set()
        if seconds <= _SHORT_PAUSE_S:
            await asyncio.sleep(seconds)
            return True
        try:
            await asyncio.wait_for(self._closing.wait(), seconds)
        except TimeoutError:
            return True
        return False

    async def _upstream(
        self,
        source: str,
        rest: str,
        resolved: tuple[EndpointKey, int | None],
        query_string: bytes,
        send: Send,
    ) -> None:
        knobs = self.state.knobs[source]
        number = self.state.next_request_number(source, rest)
        behaviour = decide(knobs, number)
        tags = {"x-demo-outcome": behaviour.outcome.value, "x-demo-request": str(number)}
        if not await self._pause(behaviour.delay_s):
            body = orjson.dumps({"code": "shutting_down", "message": f"{source} is stopping"})
            await _respond(send, 503, body, tags)
            return
        outcome = behaviour.outcome
        if outcome in (Outcome.STATUS_OVERRIDE, Outcome.ERROR):
            message = f"{source}: injected HTTP {behaviour.status} ({outcome.value} knob)"
            body = orjson.dumps({"code": "demo_fault", "message": message, "source": source})
            await _respond(send, behaviour.status, body, tags)
            return
        if outcome is Outcome.NON_JSON:
            await _respond(send, 200, _NON_JSON_BODY, tags, _HTML)
            return
        endpoint, day_number = resolved
        params = dict(parse_qsl(query_string.decode("utf-8", "replace"), keep_blank_values=True))
        try:
            key = used_params(endpoint, params)
        except ValueError as error:
            body = orjson.dumps({"code": "bad_request", "message": str(error)})
            await _respond(send, 400, body, tags)
            return
        variant = _PAYLOAD_VARIANTS[outcome]
        body = render_body(endpoint, source, key, day_number, knobs.seed, variant)
        await _respond(send, 200, body, tags)


async def serve_demo_upstreams(
    host: str,
    port: int,
    sources: Mapping[str, Knobs],
    shutdown_trigger: Callable[[], Awaitable[object]] | None = None,
    ready: Callable[[int], None] | None = None,
) -> None:
    """Serve the fake upstreams until ``shutdown_trigger`` returns (or SIGINT/SIGTERM).

    Args:
        host: interface to bind, e.g. ``127.0.0.1``.
        port: TCP port; 0 picks a free one (reported through ``ready``).
        sources: source name → its startup knobs (``POST /_demo/reset`` returns to these).
        shutdown_trigger: awaited; its return starts a graceful shutdown. ``None`` installs
            SIGINT/SIGTERM handlers on the running loop instead.
        ready: called with the bound port once the server accepts connections.

    Raises:
        OSError: when the address cannot be bound.
        ValueError: when a source name is not usable as a path segment.
        ServerStartupError: ``ready`` raised (the socket is closed all the same).
    """
    bound_port = port

    def report_ready() -> None:
        if ready is not None:
            ready(bound_port)

    # Built before binding so that bad source names cannot leave a socket behind.
    app = DemoUpstreamApp(sources, on_startup=report_ready)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    handled: list[signal.Signals] = []

    async def trigger() -> None:
        try:
            await (shutdown_trigger() if shutdown_trigger is not None else stop.wait())
        finally:
            app.close()

    try:
        if shutdown_trigger is None:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
                handled.append(signum)
        listener = listen(host, port)
        bound_port = listener.getsockname()[1]
        await serve_app(app, listener, trigger, _GRACEFUL_TIMEOUT_S)
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
