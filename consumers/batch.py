"""Pure batch processing: consumed messages → one insert per table, dead letters, commit points.

Nothing here does I/O (Snuba's processor/writer split): the consumer loop polls, calls
``build_batch``, hands ``TableInsert``s to the writer and commits ``commit_offsets`` only after
every insert is acknowledged.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, cast

from consumers.rows import COLUMNS, PoisonMessage, message_to_row


class Consumed(Protocol):
    """One consumed message: a ``Message``, or aiokafka's ``ConsumerRecord`` as polled (not
    copied: a copy per message was a tenth of the consumer's CPU)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def value(self) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    partition: int
    offset: int
    value: bytes


@dataclass(frozen=True, slots=True)
class DeadLetter:
    message: Consumed
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


class RecentIds(dict[str, None]):
    """The last ``capacity`` event ids seen, to drop producer re-sends of the same event.

    A batch re-sent after an ambiguous timeout lands at new offsets; because keys pin an
    event to one partition, its duplicate arrives soon after the original on the same
    consumer, so a bounded window of recent ids catches it. The tables'
    ReplacingMergeTree on ``event_id`` is the backstop. A dict (oldest first) so that the
    membership test of every consumed event is the dict's own.
    """

    def __init__(self, capacity: int = 1_000_000) -> None:
        super().__init__()
        self._capacity = capacity

    def add_many(self, event_ids: Iterable[str]) -> None:
        """Remember ids once their rows are stored (never before: a failed insert is re-read)."""
        self.update(dict.fromkeys(event_ids))
        excess = len(self) - self._capacity
        if excess > 0:
            for event_id in list(itertools.islice(self, excess)):
                del self[event_id]


def _token(table: str, event_ids: Iterable[str]) -> str:
    """Same events → same token, so a retried insert is deduplicated by ClickHouse.

    Built from event ids rather than offsets so that it also works where there are no offsets
    (the embedded in-process path).
    """
    # One update of the concatenation: the same digest as one update per id, at C speed.
    digest = hashlib.blake2b("".join(event_ids).encode(), digest_size=16)
    return f"{table}:{digest.hexdigest()}"


def build_batch(
    messages: Sequence[Consumed],
    recent: RecentIds | None = None,
    *,
    in_flight: Container[str] = frozenset(),
) -> Batch:
    """Convert polled messages; a message that cannot become a row becomes a dead letter.

    Args:
        messages: consumed messages, in partition order.
        recent: the window of recently stored event ids, to skip re-sent duplicates.
        in_flight: ids of a batch being inserted right now, skipped like ``recent`` ones.
            Only for a batch that is delivered after that one is acknowledged (if that
            insert never succeeds, this batch is never delivered either).
    """
    batch = Batch()
    commit = batch.commit_offsets
    in_batch: set[str] = set()
    per_table: dict[str, tuple[list[tuple[object, ...]], list[str]]] = {}
    for message in messages:
        key = (message.topic, message.partition)
        if commit.get(key, 0) <= message.offset:
            commit[key] = message.offset + 1
        try:
            table, row = message_to_row(
                message.value or b"", message.topic, message.partition, message.offset
            )
        except PoisonMessage as exc:
            batch.dead_letters.append(DeadLetter(message, exc.reason))
            continue
        event_id = cast(str, row[0])  # event_id is the first column of every table
        if (
            event_id in in_batch
            or event_id in in_flight
            or (recent is not None and event_id in recent)
        ):
            batch.duplicates += 1
            continue
        in_batch.add(event_id)
        if table not in per_table:
            per_table[table] = ([], [])
        rows, ids = per_table[table]
        rows.append(row)
        ids.append(event_id)
    for table, (rows, ids) in per_table.items():
        batch.inserts.append(
            TableInsert(table, COLUMNS[table], rows, _token(table, ids), tuple(ids))
        )
    return batch


def merge_batches(*batches: Batch) -> Batch:
    """One batch holding them all, in order: one insert per table, tokens of the merged ids.

    Each batch must have been built with the ids of the ones before it as ``in_flight`` (or
    in ``recent``), so that no event is in two of them. Merging all at once, not pairwise as
    they arrive, keeps the cost linear: a token hashes every id of its insert.
    """
    if len(batches) == 1:
        return batches[0]
    merged = Batch(
        dead_letters=[dead for batch in batches for dead in batch.dead_letters],
        duplicates=sum(batch.duplicates for batch in batches),
    )
    for batch in batches:
        for key, offset in batch.commit_offsets.items():
            merged.commit_offsets[key] = max(merged.commit_offsets.get(key, 0), offset)
    per_table: dict[str, tuple[list[tuple[object, ...]], list[str]]] = {}
    for insert in (insert for batch in batches for insert in batch.inserts):
        rows, ids = per_table.setdefault(insert.table, ([], []))
        rows.extend(insert.rows)
        ids.extend(insert.event_ids)
    for table, (rows, ids) in per_table.items():
        merged.inserts.append(
            TableInsert(table, COLUMNS[table], rows, _token(table, ids), tuple(ids))
        )
    return merged
