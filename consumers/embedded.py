"""Embedded pipeline: the emitter's transport writes batches straight into the local store.

Same conversion and deduplication as the Kafka consumer (``consumers.batch``), without Kafka:
``apicat serve`` with no ``APICAT_KAFKA_BOOTSTRAP_SERVERS`` uses this, with chDB in the data
dir as the store. A store failure raises ``TransportError``, so the emitter journals the batch
and replays it later — the same no-loss path as a Kafka outage.
"""

from __future__ import annotations

from collections.abc import Sequence

from consumers.batch import Message, RecentIds, build_batch
from consumers.store import EventStore, StoreError
from gateway.emitter import TransportError
from schemas.wire import MalformedRecord, decode_record, topic_for

EMBEDDED_PARTITION = 0


class EmbeddedTransport:
    """``EventTransport`` into an ``EventStore`` in the same process."""

    name = "embedded"

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self._recent = RecentIds(capacity=200_000)
        self._offset = 0
        self.rows_written = 0
        self.dead_letters = 0

    async def send(self, batch: Sequence[bytes]) -> None:
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

    async def aclose(self) -> None:
        return None
