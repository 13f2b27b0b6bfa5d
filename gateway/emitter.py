"""The event emitter: ``emit`` never waits; a background task batches events to a transport.

Delivery is at-least-once and in order per emitter:

* ``emit`` appends to a bounded in-memory buffer (no I/O, no awaiting) and wakes the flusher
  once a batch is full. A batch leaves when it is full or when its oldest event has waited
  ``linger_s``, so a busy emitter sends few large batches (each costs the store a fixed
  price) and a quiet one still delivers within ``linger_s``.
* While the transport accepts batches, the flusher sends from the buffer.
* When a send fails (Kafka or the store is down), that batch and everything after it goes to
  the durable journal instead, and the transport is retried with capped exponential backoff;
  once it is back, the journal is replayed oldest first before the buffer is used again, so
  order holds across an outage.
* When the buffer is full (a burst while the flusher is behind), ``emit`` moves the oldest
  batch to the journal; events are dropped only if the journal itself cannot be written (disk
  failure), and ``dropped`` counts them.
* ``aclose`` flushes the buffer (or journals it) before returning: a clean stop loses nothing.

Not safe to share between event loops; one per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from gateway.journal import Journal
from schemas.events import EventEnvelope
from schemas.wire import encode_record as encode

log = logging.getLogger("apicat.events")


class TransportError(Exception):
    """The transport could not take a batch now; the emitter keeps it and retries later."""


class EventTransport(Protocol):
    """Where batches of encoded events go: Kafka, or the embedded consumer."""

    name: str

    async def send(self, batch: Sequence[bytes]) -> None:
        """Deliver every event of ``batch`` durably, or raise ``TransportError``."""
        ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class EmitterPolicy:
    max_buffered: int = 100_000
    batch_size: int = 1_000
    linger_s: float = 0.2
    retry_initial_s: float = 0.5
    retry_max_s: float = 30.0
    close_timeout_s: float = 10.0


@dataclass(frozen=True, slots=True)
class EmitterStats:
    transport: str
    buffered: int
    journal_pending: int
    emitted_total: int
    sent_total: int
    spilled_total: int
    replayed_total: int
    dropped_total: int
    transport_up: bool


class BufferedEmitter:
    """The ``EventEmitter`` the gateway, prober and admin use; see the module docstring."""

    def __init__(
        self, transport: EventTransport, journal_dir: Path, policy: EmitterPolicy | None = None
    ) -> None:
        self._transport = transport
        self._policy = policy or EmitterPolicy()
        self._journal = Journal(journal_dir)
        self._buffer: deque[EventEnvelope] = deque()
        # When the oldest buffered event arrived (monotonic); None while the buffer is empty.
        self._oldest_at: float | None = None
        self._wake = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._transport_up = True
        self.emitted_total = 0
        self.sent_total = 0
        self.spilled_total = 0
        self.replayed_total = 0
        self.dropped_total = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="event-flusher")

    def emit(self, event: EventEnvelope) -> None:
        self.emitted_total += 1
        if len(self._buffer) >= self._policy.max_buffered:
            # Move the oldest batch out, so the journal only ever holds events older than the
            # buffer and replay order stays intact. No fsync here: this is the request path.
            self._spill(self._take_batch(), sync=False)
        if not self._buffer:
            self._oldest_at = time.monotonic()
        self._buffer.append(event)
        if len(self._buffer) >= self._policy.batch_size:
            self._wake.set()

    def stats(self) -> EmitterStats:
        return EmitterStats(
            transport=self._transport.name,
            buffered=len(self._buffer),
            journal_pending=self._journal.pending_records,
            emitted_total=self.emitted_total,
            sent_total=self.sent_total,
            spilled_total=self.spilled_total,
            replayed_total=self.replayed_total,
            dropped_total=self.dropped_total,
            transport_up=self._transport_up,
        )

    async def flush(self) -> None:
        """Send everything buffered or journaled now (tests, shutdown); raises if it cannot."""
        # One flush at a time: two would read the same journal position and send it twice.
        async with self._flush_lock:
            while self._journal.pending_records:
                await self._replay_once()
            while self._buffer:
                await self._send_from_buffer()

    def _spill(self, events: Sequence[EventEnvelope], *, sync: bool = True) -> None:
        if not events:
            return
        try:
            self._journal.append([encode(event) for event in events], sync=sync)
        except OSError:
            self.dropped_total += len(events)
            log.exception("event journal write failed; %d events dropped", len(events))
            return
        self.spilled_total += len(events)

    def _take_batch(self) -> list[EventEnvelope]:
        count = min(self._policy.batch_size, len(self._buffer))
        batch = [self._buffer.popleft() for _ in range(count)]
        if not self._buffer:
            self._oldest_at = None
        # Otherwise the rest keeps the taken batch's start time: it is no older than that, so
        # the linger deadline can only come early, never late.
        return batch

    async def _send_from_buffer(self) -> None:
        batch = self._take_batch()
        try:
            await self._transport.send([encode(event) for event in batch])
        except TransportError:
            # Keep order: this batch and everything behind it go to the journal.
            self._spill(batch)
            self._spill(self._take_all())
            raise
        self.sent_total += len(batch)

    def _take_all(self) -> list[EventEnvelope]:
        events = list(self._buffer)
        self._buffer.clear()
        self._oldest_at = None
        return events

    def _lingered(self) -> bool:
        return (
            self._oldest_at is not None
            and time.monotonic() - self._oldest_at >= self._policy.linger_s
        )

    def _wait_s(self, retry_delay: float) -> float:
        """How long the flusher may sleep before something is due."""
        if not self._transport_up:
            return retry_delay
        if self._oldest_at is None:
            return self._policy.linger_s  # nothing buffered: a periodic look at the journal
        return max(0.0, self._oldest_at + self._policy.linger_s - time.monotonic())

    async def _deliver_due(self) -> None:
        """The background flush: the journal first, then full batches and lingered events."""
        async with self._flush_lock:
            while self._journal.pending_records:
                await self._replay_once()
            while len(self._buffer) >= self._policy.batch_size or self._lingered():
                await self._send_from_buffer()

    async def _replay_once(self) -> None:
        records, position = self._journal.read(self._policy.batch_size)
        if not records:
            return
        await self._transport.send(records)
        self._journal.commit(position, len(records))
        self.sent_total += len(records)
        self.replayed_total += len(records)

    async def _run(self) -> None:
        delay = self._policy.retry_initial_s
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._wait_s(delay)):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self._deliver_due()
            except TransportError as exc:
                if self._transport_up:
                    log.warning("event transport %s down: %s", self._transport.name, exc)
                self._transport_up = False
                # While the transport is down nothing waits in memory: journal it.
                self._spill(self._take_all())
                delay = min(delay * 2, self._policy.retry_max_s)
                continue
            except Exception:
                log.exception("event flusher failed; retrying")
                continue
            if not self._transport_up:
                log.warning("event transport %s is back", self._transport.name)
            self._transport_up = True
            delay = self._policy.retry_initial_s

    async def aclose(self) -> None:
        """Stop the flusher, send what is left (bounded), journal the rest, close the transport."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            async with asyncio.timeout(self._policy.close_timeout_s):
                await self.flush()
        except (TransportError, TimeoutError):
            self._spill(self._take_all())
        finally:
            self._journal.close()
            await self._transport.aclose()
