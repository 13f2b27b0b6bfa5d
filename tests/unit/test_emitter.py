"""The emitter and its journal: nothing lost, order kept, across outages and restarts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.emitter import BufferedEmitter, EmitterPolicy, TransportError
from gateway.journal import Journal
from schemas.events import CircuitChangeEvent
from schemas.wire import decode_record


class FlakyTransport:
    """Records delivered events; ``up`` switches it between accepting and failing."""

    name = "fake"

    def __init__(self) -> None:
        self.up = True
        self.delivered: list[int] = []
        self.calls = 0
        self.called = asyncio.Event()

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Wait (at most 5 s) until ``condition`` holds, re-checking after each send attempt."""
        async with asyncio.timeout(5):
            while not condition():
                await self.called.wait()
                self.called.clear()

    async def send(self, batch: Sequence[bytes]) -> None:
        self.calls += 1
        self.called.set()
        if not self.up:
            raise TransportError("down")
        self.delivered.extend(
            orjson.loads(decode_record(record)[2])["consecutive_failures"] for record in batch
        )

    async def aclose(self) -> None:
        return None


def event(number: int) -> CircuitChangeEvent:
    return CircuitChangeEvent(
        upstream_url="http://u", from_state="closed", to_state="open", consecutive_failures=number
    )


def emitter(tmp_path: Path, transport: FlakyTransport, **policy: Any) -> BufferedEmitter:
    return BufferedEmitter(transport, tmp_path / "journal", EmitterPolicy(**policy))


async def test_events_are_delivered_in_order_in_batches(tmp_path: Path) -> None:
    transport = FlakyTransport()
    events = emitter(tmp_path, transport, batch_size=3)
    for number in range(7):
        events.emit(event(number))
    await events.flush()
    await events.aclose()
    assert transport.delivered == list(range(7))
    assert transport.calls == 3
    assert events.stats().sent_total == 7


async def test_outage_journals_everything_and_replays_it_in_order(tmp_path: Path) -> None:
    transport = FlakyTransport()
    events = emitter(tmp_path, transport, batch_size=2)
    transport.up = False
    for number in range(5):
        events.emit(event(number))
    with pytest.raises(TransportError):
        await events.flush()
    stats = events.stats()
    assert (stats.buffered, stats.journal_pending, stats.spilled_total) == (0, 5, 5)
    events.emit(event(5))
    transport.up = True
    await events.flush()
    await events.aclose()
    assert transport.delivered == list(range(6))
    final = events.stats()
    assert (final.replayed_total, final.dropped_total, final.journal_pending) == (5, 0, 0)


async def test_a_full_buffer_moves_its_oldest_events_to_the_journal(tmp_path: Path) -> None:
    transport = FlakyTransport()
    events = emitter(tmp_path, transport, max_buffered=4, batch_size=2)
    for number in range(9):
        events.emit(event(number))
    assert events.stats().buffered <= 4
    assert events.stats().spilled_total >= 5
    await events.flush()
    await events.aclose()
    assert transport.delivered == list(range(9))


async def test_events_journaled_at_shutdown_are_sent_by_the_next_process(tmp_path: Path) -> None:
    down = FlakyTransport()
    down.up = False
    first = emitter(tmp_path, down, close_timeout_s=0.5)
    for number in range(3):
        first.emit(event(number))
    await first.aclose()
    assert first.stats().journal_pending == 3

    later = FlakyTransport()
    second = emitter(tmp_path, later)
    assert second.stats().journal_pending == 3
    await second.flush()
    await second.aclose()
    assert later.delivered == [0, 1, 2]


async def test_background_flusher_recovers_after_the_transport_returns(tmp_path: Path) -> None:
    transport = FlakyTransport()
    transport.up = False
    events = emitter(tmp_path, transport, linger_s=0.01, retry_initial_s=0.01, retry_max_s=0.02)
    events.start()
    for number in range(10):
        events.emit(event(number))
    await transport.wait_until(lambda: events.stats().journal_pending == 10)
    transport.up = True
    await transport.wait_until(lambda: len(transport.delivered) == 10)
    await events.aclose()
    assert transport.delivered == list(range(10))
    assert events.stats().dropped_total == 0


async def test_full_batches_leave_at_once_and_the_rest_waits_for_the_linger(
    tmp_path: Path,
) -> None:
    transport = FlakyTransport()
    events = emitter(tmp_path, transport, batch_size=4, linger_s=3600)
    events.start()
    for number in range(10):
        events.emit(event(number))
    await transport.wait_until(lambda: len(transport.delivered) == 8)
    for _ in range(20):  # let the flusher run on; nothing else is due for an hour
        await asyncio.sleep(0)
    assert transport.calls == 2, "two full batches of 4, not one send per wake-up"
    assert events.stats().buffered == 2
    await events.aclose()
    assert transport.delivered == list(range(10))


async def test_a_partial_batch_is_sent_once_its_oldest_event_lingered(tmp_path: Path) -> None:
    transport = FlakyTransport()
    events = emitter(tmp_path, transport, batch_size=1000, linger_s=0.05)
    events.start()
    for number in range(3):
        events.emit(event(number))
    await transport.wait_until(lambda: len(transport.delivered) == 3)
    assert transport.calls == 1
    assert events.stats().buffered == 0
    await events.aclose()


def test_journal_ignores_a_torn_final_record(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.append([b"one", b"two"])
    journal.close()
    segment = next(tmp_path.glob("*.seg"))
    with segment.open("ab") as handle:
        handle.write(b"\x00\x00\x00\x09par")  # a crash after writing part of a record
    reopened = Journal(tmp_path)
    records, _ = reopened.read(10)
    assert records == [b"one", b"two"]
    reopened.close()


def test_journal_commit_survives_reopen_and_drops_sent_segments(tmp_path: Path) -> None:
    journal = Journal(tmp_path, segment_bytes=10)
    for number in range(5):
        journal.append([f"record-{number}".encode()])
    records, position = journal.read(3)
    journal.commit(position, len(records))
    journal.close()
    reopened = Journal(tmp_path, segment_bytes=10)
    rest, _ = reopened.read(10)
    assert rest == [b"record-3", b"record-4"]
    assert reopened.pending_records == 2
    assert len(list(tmp_path.glob("*.seg"))) <= 3
    reopened.close()
