"""The event-emitter seam: the engine calls ``emit`` and never waits on the pipeline."""

from __future__ import annotations

from collections import deque
from typing import Protocol, TypeVar

from schemas.events import EventEnvelope

EventT = TypeVar("EventT", bound=EventEnvelope)


class EventEmitter(Protocol):
    """Accepts events without blocking; implementations buffer and ship them elsewhere."""

    def emit(self, event: EventEnvelope) -> None: ...


class NullEmitter:
    """Discards events; for benchmarks of the bare request path."""

    def emit(self, event: EventEnvelope) -> None:
        return None


class MemoryEmitter:
    """Keeps the most recent events in memory (embedded mode until the pipeline lands; tests).

    Not safe to share between threads; fine within one event loop.
    """

    def __init__(self, max_events: int = 100_000) -> None:
        self._events: deque[EventEnvelope] = deque(maxlen=max_events)
        self.emitted_total = 0

    def emit(self, event: EventEnvelope) -> None:
        self._events.append(event)
        self.emitted_total += 1

    @property
    def events(self) -> list[EventEnvelope]:
        return list(self._events)

    def of_type(self, event_type: type[EventT]) -> list[EventT]:
        return [event for event in self._events if isinstance(event, event_type)]

    def clear(self) -> None:
        self._events.clear()
