"""Embedded pipeline: the emitter's transport writes batches straight into the local store.

Same conversion and deduplication as the Kafka consumer (``consumers.batch``), without Kafka:
the embedded store process (``consumers.store_server``) runs this for every batch the
gateway's emitter posts to it, with chDB in the data dir as the store. A store failure raises
``TransportError``, so the emitter journals the batch and replays it later — the same no-loss
path as a Kafka outage.
"""

from __future__ import annotations

from collections.abc import Sequence

from consumers.batch import Batch, Message, RecentIds, build_batch
from consumers.store import EventStore, StoreError, qualified_table, quote_literal
from gateway.emitter import TransportError
from schemas.wire import MalformedRecord, decode_record, topic_for

EMBEDDED_PARTITION = 0


class EmbeddedTransport:
    """``EventTransport`` into an ``EventStore`` in the same process.

    Not safe for concurrent ``send`` calls (the window of recent ids and the offsets are
    updated around the inserts): callers serialize them.
    """

    name = "embedded"

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self._recent = RecentIds(capacity=200_000)
        self._offset = 0
        self.rows_written = 0
        self.dead_letters = 0

    async def send(self, batch: Sequence[bytes], *, check_stored: bool = False) -> None:
        """Convert and insert ``batch``; events already stored are skipped.

        Args:
            batch: wire records (``schemas.wire.encode_record``).
            check_stored: also ask the store which of these events it already holds. The
                window of recent ids only knows what this transport stored; a sender whose
                previous store process died after an insert but before answering re-sends
                those events first, so its first batch to a new transport is checked.
        """
        messages = []
        for record in batch:
            try:
                event_type, _key, payload = decode_record(record)
            except MalformedRecord:
                self.dead_letters += 1
                continue
            self._offset += 1
            messages.append(
                Message(topic_for(event_type), EMBEDDED_PARTITION, self._offset, payload)
            )
        converted = build_batch(messages, self._recent)
        if check_stored and converted.inserts:
            await self._remember_stored(converted)
            converted = build_batch(messages, self._recent)
        # Events we produced ourselves cannot be malformed unless there is a bug; count them.
        self.dead_letters += len(converted.dead_letters)
        for insert in converted.inserts:
            try:
                await self._store.insert(
                    insert.table, insert.columns, insert.rows, insert.dedup_token
                )
            except StoreError as exc:
                raise TransportError(f"event store write failed: {exc}") from exc
            # Stored: a replay of this batch after a later table's failure must skip them.
            self._recent.add_many(insert.event_ids)
            self.rows_written += len(insert.rows)

    async def _remember_stored(self, converted: Batch) -> None:
        for insert in converted.inserts:
            ids = ", ".join(quote_literal(event_id) for event_id in insert.event_ids)
            sql = f"SELECT event_id FROM {qualified_table(insert.table)} WHERE event_id IN ({ids})"
            try:
                stored = await self._store.query(sql, "TabSeparated")
            except StoreError as exc:
                raise TransportError(f"event store read failed: {exc}") from exc
            self._recent.add_many(line.decode() for line in stored.splitlines())

    async def aclose(self) -> None:
        return None
