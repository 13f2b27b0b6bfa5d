"""The ``/_demo/`` JSON control API of the fake upstreams: knobs, reset, stats and health."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping

import orjson

from demo.knobs import Knobs, KnobsError, json_kind, merge_knobs
from gateway.asgi import BodyTooLarge, Receive, read_body
from schemas.config import NAME_PATTERN

_MAX_CONTROL_BODY = 64 * 1024


class ControlError(Exception):
    """A control or routing request was refused; becomes a JSON error answer."""

    def __init__(
        self, status: int, code: str, message: str, allow: str = "", **extra: object
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.allow, self.extra = status, code, allow, extra


class DemoState:
    """Knobs and counters of every fake source. Owned by one event loop; not thread-safe."""

    def __init__(self, sources: Mapping[str, Knobs]) -> None:
        self.startup_knobs = dict(sources)
        self.knobs = dict(sources)
        self.request_numbers = dict.fromkeys(sources, 0)
        self.path_counts: dict[str, Counter[str]] = {name: Counter() for name in sources}
        self.not_found = 0

    def put(self, source: str, knobs: Knobs) -> None:
        """Set a source's knobs, adding the source (with zeroed counters) if it is new."""
        if source not in self.knobs:
            self.request_numbers[source] = 0
            self.path_counts[source] = Counter()
        self.knobs[source] = knobs

    def reset(self) -> None:
        """Back to the startup sources and knobs (added sources go away), counters zeroed."""
        self.knobs = dict(self.startup_knobs)
        self.request_numbers = dict.fromkeys(self.startup_knobs, 0)
        self.path_counts = {name: Counter() for name in self.startup_knobs}
        self.not_found = 0

    def next_request_number(self, source: str, rest: str) -> int:
        """Count one request to ``source``/``rest`` and return its 0-based number."""
        number = self.request_numbers[source]
        self.request_numbers[source] = number + 1
        self.path_counts[source][rest] += 1
        return number

    def stats(self) -> dict[str, object]:
        """Requests received: overall, unroutable, and per source per rest path."""
        sources = {
            name: {"total": self.request_numbers[name], "paths": dict(counts)}
            for name, counts in self.path_counts.items()
        }
        total = sum(self.request_numbers.values()) + self.not_found
        return {"total": total, "not_found": self.not_found, "sources": sources}


async def handle_control(
    state: DemoState, method: str, path: str, receive: Receive
) -> tuple[int, object]:
    """Answer one ``/_demo/`` control request: ``(status, JSON-ready payload)``.

    Raises:
        ControlError: for unknown routes, wrong methods and bad bodies or knobs.
    """
    route = path.removeprefix("/_demo/").rstrip("/")
    if route == "healthz":
        _require(method, "GET")
        return 200, {"status": "ok", "sources": len(state.knobs)}
    if route == "stats":
        _require(method, "GET")
        return 200, state.stats()
    if route == "reset":
        _require(method, "POST")
        state.reset()
        return 200, {"status": "reset", "sources": sorted(state.knobs)}
    if route == "knobs":
        _require(method, "GET")
        return 200, {name: k.model_dump(mode="json") for name, k in state.knobs.items()}
    if route.startswith("knobs/"):
        source = route.removeprefix("knobs/")
        _require(method, "GET", "PUT")
        if method == "PUT":
            # PUT on a new name adds a source, so tests can make up the sources they need.
            if not re.fullmatch(NAME_PATTERN, source):
                message = f"source name {source!r} must match {NAME_PATTERN}"
                raise ControlError(400, "invalid_source_name", message)
            update = _json_object(await _read_body(receive))
            current = state.knobs.get(source, Knobs())
            try:
                state.put(source, merge_knobs(current, update))
            except KnobsError as error:
                message = "; ".join(error.lines)
                raise ControlError(400, "invalid_knobs", message, errors=error.lines) from None
        elif source not in state.knobs:
            sources = ", ".join(sorted(state.knobs))
            raise ControlError(404, "unknown_source", f"no source {source!r}; have: {sources}")
        return 200, state.knobs[source].model_dump(mode="json")
    raise ControlError(
        404,
        "not_found",
        f"no control route {path}; have /_demo/healthz, /_demo/knobs, "
        "/_demo/knobs/<source>, /_demo/reset, /_demo/stats",
    )


def _require(method: str, *allowed: str) -> None:
    if method not in allowed:
        verbs = ", ".join(allowed)
        raise ControlError(405, "method_not_allowed", f"use {verbs}", allow=verbs)


async def _read_body(receive: Receive) -> bytes:
    try:
        return await read_body(receive, _MAX_CONTROL_BODY)
    except BodyTooLarge:
        message = f"body over {_MAX_CONTROL_BODY} bytes"
        raise ControlError(413, "body_too_large", message) from None


def _json_object(body: bytes) -> dict[str, object]:
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise ControlError(400, "invalid_json", f"body is not valid JSON: {error}") from None
    if not isinstance(decoded, dict):
        kind = json_kind(decoded)
        raise ControlError(
            400, "invalid_knobs", f"body must be a JSON object of knob fields, got {kind}"
        )
    return decoded
