"""Pure batch processing: consumed messages → one insert per table, dead letters, commit points.

Nothing here does I/O (Snuba's processor/writer split): the consumer loop polls, calls
``build_batch``, hands ``TableInsert``s to the writer and commits ``commit_offsets`` only after
every insert is acknowledged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import orjson

from consumers.rows import COLUMNS, PoisonMessage, event_to_row


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    partition: int
    offset: int
    value: bytes


@dataclass(frozen=True, slots=True)
class DeadLetter:
    message: Message
    reason: str


@dataclass(frozen=True, slots=True)
class TableInsert:
    table: str
    columns: tuple[str, ...]
    rows: list[tuple[object, ...]]
    dedup_token: str
    event_ids: tuple[str, ...]
    """Remember these as stored once this insert is acknowledged (not before)."""


@dataclass(slots=True)
class Batch:
    inserts: list[TableInsert] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    commit_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    """(topic, partition) → the next offset to read, i.e. last consumed + 1."""
    duplicates: int = 0

    @property
    def rows(self) -> int:
        return sum(len(insert.rows) for insert in self.inserts)


class RecentIds:
    """The last ``capacity`` event ids seen, to drop producer re-sends of the same event.

    A batch re-sent after an ambiguous timeout lands at new offsets; because keys pin an
    event to one partition, its duplicate arrives soon after the original on the same
    consumer, so a bounded window of recent ids catches it. The tables'
    ReplacingMergeTree on ``event_id`` is the backstop.
    """

    def __init__(self, capacity: int = 1_000_000) -> None:
        self._capacity = capacity
        self._ids: dict[str, None] = {}

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def add_many(self, event_ids: Iterable[str]) -> None:
        """Remember ids once their rows are stored (never before: a failed insert is re-read)."""
        for event_id in event_ids:
            self._ids[event_id] = None
        while len(self._ids) > self._capacity:
            del self._ids[next(iter(self._ids))]


def _token(table: str, event_ids: Iterable[str]) -> str:
    """Same events → same token, so a retried insert is deduplicated by ClickHouse.

    Built from event ids rather than offsets so that it also works where there are no offsets
    (the embedded in-process path).
    """
    digest = hashlib.blake2b(digest_size=16)
    for event_id in event_ids:
        digest.update(event_id.encode())
    return f"{table}:{digest.hexdigest()}"


def build_batch(messages: Sequence[Message], recent: RecentIds | None = None) -> Batch:
    """Convert polled messages; a message that cannot become a row becomes a dead letter.

    Args:
        messages: consumed messages, in partition order.
        recent: the window of recently stored event ids, to skip re-sent duplicates.
    """
    batch = Batch()
    in_batch: set[str] = set()
    per_table: dict[str, tuple[list[tuple[object, ...]], list[str]]] = {}
    for message in messages:
        key = (message.topic, message.partition)
        batch.commit_offsets[key] = max(batch.commit_offsets.get(key, 0), message.offset + 1)
        try:
            event = orjson.loads(message.value)
            if not isinstance(event, dict):
                raise PoisonMessage("message is not a JSON object")
            table, row = event_to_row(event, message.topic, message.partition, message.offset)
        except orjson.JSONDecodeError as exc:
            batch.dead_letters.append(DeadLetter(message, f"not JSON: {exc}"))
            continue
        except PoisonMessage as exc:
            batch.dead_letters.append(DeadLetter(message, str(exc)))
            continue
        event_id = str(row["event_id"])
        if event_id in in_batch or (recent is not None and event_id in recent):
            batch.duplicates += 1
            continue
        in_batch.add(event_id)
        rows, ids = per_table.setdefault(table, ([], []))
        rows.append(tuple(row[column] for column in COLUMNS[table]))
        ids.append(event_id)
    for table, (rows, ids) in per_table.items():
        batch.inserts.append(
            TableInsert(table, COLUMNS[table], rows, _token(table, ids), tuple(ids))
        )
    return batch
