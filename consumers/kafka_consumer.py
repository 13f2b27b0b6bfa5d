"""``apicat consumer``: a Kafka consumer-group member that writes events into ClickHouse.

Per poll cycle: collect up to ``batch_rows`` messages or ``batch_s`` seconds, convert them
(``consumers.batch``), insert one block per table with a deterministic deduplication token,
send unconvertible messages to the dead-letter topic with the reason, and only then commit the
offsets. Delivery overlaps the next poll: while one batch is inserted (in the store's worker
thread) the next messages are polled and converted, and what is converted meanwhile joins one
pending batch (up to ``max_insert_rows``) delivered right after, so commits stay in order and
a store slower than Kafka gets fewer, larger inserts. If the store is down the same batch is
retried with backoff (same token, so a retry whose first try did land is deduplicated) and
nothing is committed. On partition assignment the consumer seeks past the highest offset
already stored for that partition, so a crash between insert and commit does not insert the
batch again. SIGTERM finishes the batches in hand, commits, and leaves the group. Several
processes with the same ``group_id`` share the partitions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Iterable, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError

from consumers.batch import Batch, Consumed, RecentIds, build_batch, merge_batches
from consumers.rows import TABLE_OF_TYPE
from consumers.store import EventStore, StoreError
from schemas.wire import DEAD_LETTER_SUFFIX, TOPIC_PREFIX, dead_letter_topic

log = logging.getLogger("apicat.consumer")


def topic_pattern(prefix: str) -> str:
    """Every event topic under ``prefix`` except the dead-letter topic."""
    return "^" + re.escape(prefix) + f"(?!{DEAD_LETTER_SUFFIX}$)[a-z_]+$"


def table_of_topic(topic: str, prefix: str) -> str | None:
    if not topic.startswith(prefix):
        return None
    return TABLE_OF_TYPE.get(topic.removeprefix(prefix))


class _StoredFloors(ConsumerRebalanceListener):  # type: ignore[misc]
    """Per partition, the highest offset already in the store (rows carry ``_offset``).

    A previous owner may have stored a batch and died before committing it. Messages at or
    below the floor are skipped (and committed) instead of inserted again. Floors are read
    lazily on the first batch after an assignment rather than by seeking in the rebalance
    callback, because the fetcher may already have returned records by the time that
    callback could seek.
    """

    def __init__(self, store: EventStore, prefix: str) -> None:
        self._store = store
        self._prefix = prefix
        self._floors: dict[tuple[str, int], int] = {}

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        for tp in revoked:
            self._floors.pop((tp.topic, tp.partition), None)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        for tp in assigned:
            self._floors.pop((tp.topic, tp.partition), None)

    async def fresh_only(self, runs: Sequence[Sequence[Consumed]]) -> list[Consumed]:
        """The messages above their partition's floor, from ``runs`` (see ``_poll``)."""
        unknown = {run[0].topic for run in runs if _partition_of(run) not in self._floors}
        for topic in unknown:
            table = table_of_topic(topic, self._prefix)
            stored = await self._store.max_offsets(table, topic) if table else {}
            for run in runs:
                if run[0].topic == topic:
                    self._floors.setdefault(_partition_of(run), stored.get(run[0].partition, -1))
        fresh: list[Consumed] = []
        for run in runs:
            key = _partition_of(run)
            floor = self._floors[key]
            # Offsets rise within a run, so one comparison settles the common case.
            if run[0].offset > floor:
                fresh.extend(run)
            else:
                fresh.extend(m for m in run if m.offset > floor)
            self._floors[key] = max(floor, run[-1].offset)
        return fresh


def _partition_of(run: Sequence[Consumed]) -> tuple[str, int]:
    return run[0].topic, run[0].partition


def _hold(held: set[str], batch: Batch) -> None:
    for insert in batch.inserts:
        held.update(insert.event_ids)


def _release(held: set[str], batch: Batch) -> None:
    for insert in batch.inserts:
        held.difference_update(insert.event_ids)


def _next_offsets(runs: Iterable[Sequence[Consumed]]) -> dict[tuple[str, int], int]:
    """Commit points covering every polled message, including skipped already-stored ones."""
    offsets: dict[tuple[str, int], int] = {}
    for run in runs:
        key = _partition_of(run)
        offsets[key] = max(offsets.get(key, 0), run[-1].offset + 1)
    return offsets


class _StoppedMidBatch(Exception):
    """Stop was requested while the store was down; the batch stays uncommitted."""


class EventConsumer:
    """One member of the consumer group; call :meth:`run` until ``stop`` is set."""

    def __init__(
        self,
        bootstrap_servers: str,
        store: EventStore,
        *,
        group_id: str = "apicat-clickhouse",
        topic_prefix: str = TOPIC_PREFIX,
        batch_rows: int = 1_000,
        batch_s: float = 1.0,
        retry_max_s: float = 30.0,
        max_insert_rows: int = 50_000,
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._store = store
        self._group_id = group_id
        self._prefix = topic_prefix
        self._batch_rows = batch_rows
        self._batch_s = batch_s
        self._retry_max_s = retry_max_s
        self._recent = RecentIds()
        self._max_insert_rows = max(max_insert_rows, batch_rows)
        self._held: set[str] = set()
        """Ids of converted events not yet stored (being delivered or pending): skipped as
        re-sends by batches converted meanwhile, which are delivered only after them."""
        self.rows_written = 0
        self.dead_lettered = 0
        self.batches = 0

    @property
    def held_events(self) -> int:
        """Converted events not stored yet: the batch being inserted and any pending behind it."""
        return len(self._held)

    async def run(self, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=self._group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            metadata_max_age_ms=5_000,
            max_poll_records=self._batch_rows,
        )
        dlq = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap, acks="all", enable_idempotence=True
        )
        await consumer.start()
        await dlq.start()
        floors = _StoredFloors(self._store, self._prefix)
        consumer.subscribe(pattern=topic_pattern(self._prefix), listener=floors)
        # One batch is delivered (inserted, dead-lettered, then committed) in a task while the
        # next ones are polled and converted; what is converted while the store is busy waits
        # in ``pending`` (up to max_insert_rows) and is merged into one batch, delivered once
        # that task is done, so deliveries and commits stay in order and a slow store gets
        # fewer, larger inserts.
        delivering: asyncio.Task[None] | None = None
        pending: list[Batch] = []
        pending_rows = 0
        try:
            while not stop.is_set():
                polled = await self._poll(consumer, stop)
                if polled:
                    try:
                        fresh = await floors.fresh_only(polled)
                    except StoreError as exc:
                        log.warning("cannot read stored offsets (%s); will read again", exc)
                        await self._rewind(consumer, polled)
                        continue
                    converted = build_batch(fresh, self._recent, in_flight=self._held)
                    converted.commit_offsets.update(_next_offsets(polled))
                    _hold(self._held, converted)
                    pending.append(converted)
                    pending_rows += converted.rows
                if not pending:
                    if delivering is not None and delivering.done():
                        await delivering  # surfaces a failed delivery now, not at the next batch
                        delivering = None
                    continue
                busy = delivering is not None and not delivering.done()
                if busy and pending_rows < self._max_insert_rows and not stop.is_set():
                    continue
                if delivering is not None:
                    await delivering
                delivering = asyncio.create_task(
                    self._deliver_and_commit(consumer, merge_batches(*pending), dlq, stop),
                    name="consumer-deliver",
                )
                pending, pending_rows = [], 0
            # SIGTERM: finish the batches in hand and commit them.
            if delivering is not None:
                await delivering
            delivering = None
            if pending:
                await self._deliver_and_commit(consumer, merge_batches(*pending), dlq, stop)
        except _StoppedMidBatch:
            delivering = None
        finally:
            if delivering is not None and not delivering.done():
                delivering.cancel()
                with contextlib.suppress(asyncio.CancelledError, _StoppedMidBatch):
                    await delivering
            with contextlib.suppress(KafkaError, OSError):
                await consumer.stop()
            with contextlib.suppress(KafkaError, OSError):
                await dlq.stop()

    async def _deliver_and_commit(
        self, consumer: AIOKafkaConsumer, batch: Batch, dlq: AIOKafkaProducer, stop: asyncio.Event
    ) -> None:
        """Deliver ``batch``, then commit its offsets; the next batch waits for this task."""
        await self._deliver(batch, dlq, stop)
        # Stored: its ids are in the recent window now. (Not stored: nothing after it is
        # delivered either, so nothing needs to skip them.)
        _release(self._held, batch)
        await self._commit(consumer, batch)

    async def _commit(self, consumer: AIOKafkaConsumer, batch: Batch) -> None:
        offsets = {TopicPartition(t, p): o for (t, p), o in batch.commit_offsets.items()}
        try:
            await consumer.commit(offsets)
        except (KafkaError, IllegalStateError) as exc:
            # A rebalance took partitions away mid-batch. The rows are stored; the new owner
            # skips them by their stored offsets, so nothing is lost or inserted twice.
            log.warning("commit after rebalance failed (%s); new owner resumes", exc)

    async def _rewind(self, consumer: AIOKafkaConsumer, runs: list[Sequence[Consumed]]) -> None:
        """Seek back to the first polled offset per partition so nothing is skipped."""
        first: dict[tuple[str, int], int] = {}
        for run in runs:
            key = _partition_of(run)
            first[key] = min(first.get(key, run[0].offset), run[0].offset)
        for (topic, partition), offset in first.items():
            with contextlib.suppress(IllegalStateError):
                consumer.seek(TopicPartition(topic, partition), offset)
        await asyncio.sleep(1.0)  # the store is down: do not spin

    async def _poll(
        self, consumer: AIOKafkaConsumer, stop: asyncio.Event
    ) -> list[Sequence[Consumed]]:
        """Up to ``batch_rows`` records as runs: each run is non-empty, from one partition, in
        offset order (aiokafka's records as they come, not copied)."""
        runs: list[Sequence[Consumed]] = []
        count = 0
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self._batch_s
        while count < self._batch_rows and not stop.is_set():
            remaining_ms = int((give_up_at - loop.time()) * 1000)
            if remaining_ms <= 0:
                break
            polled = await consumer.getmany(
                timeout_ms=min(remaining_ms, 200), max_records=self._batch_rows - count
            )
            for records in polled.values():
                if records:
                    runs.append(records)
                    count += len(records)
        return runs

    async def _deliver(self, batch: Batch, dlq: AIOKafkaProducer, stop: asyncio.Event) -> None:
        """Insert every block and dead-letter every poison message; retry until both succeed."""
        delay = 0.5
        pending = list(batch.inserts)
        while pending:
            insert = pending[0]
            try:
                await self._store.insert(
                    insert.table, insert.columns, insert.rows, insert.dedup_token
                )
            except StoreError as exc:
                if stop.is_set():
                    # Leave uncommitted: whoever owns the partition next reads it again.
                    raise _StoppedMidBatch from exc
                # A rejected insert (not retriable) is a schema bug, not bad data: keep the
                # batch, shout, and retry, rather than lose events or crash the process.
                level = logging.WARNING if exc.retriable else logging.ERROR
                log.log(
                    level, "insert into %s failed (%s); retrying in %.1fs", insert.table, exc, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max_s)
                continue
            self._recent.add_many(insert.event_ids)
            self.rows_written += len(insert.rows)
            pending.pop(0)
        for dead in batch.dead_letters:
            headers = [
                ("reason", dead.reason.encode()[:1000]),
                ("source", f"{dead.message.topic}/{dead.message.partition}/"
                           f"{dead.message.offset}".encode()),
            ]  # fmt: skip
            await dlq.send_and_wait(
                dead_letter_topic(self._prefix), dead.message.value, headers=headers
            )
            self.dead_lettered += 1
        self.batches += 1
