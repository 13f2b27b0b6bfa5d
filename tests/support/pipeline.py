"""Test harness for the Kafka event pipeline: stores, consumers, Kafka probes, bounded waits.

Every wait here is a poll of an observable condition with a deadline; nothing sleeps blindly.
Every Kafka client opened here is closed before the helper returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.coordinator.protocol import ConsumerProtocol
from aiokafka.errors import TopicAlreadyExistsError

from consumers.kafka_consumer import EventConsumer
from consumers.migrate import migrate
from consumers.store import ChdbStore, EventStore
from gateway.emitter import BufferedEmitter
from gateway.kafka_transport import KafkaTransport
from schemas.events import EventEnvelope, RequestEvent, UpstreamAttemptEvent

WAIT_S = 30.0
"""Upper bound of every wait on the broker or the store."""


def unique_prefix() -> str:
    """A fresh topic prefix (``t<hex>.events.``): tests never see each other's events."""
    return f"t{uuid.uuid4().hex[:10]}.events."


def unique_group() -> str:
    return f"apicat-test-{uuid.uuid4().hex[:12]}"


@contextlib.asynccontextmanager
async def migrated_store(path: Path) -> AsyncIterator[ChdbStore]:
    """A migrated chDB store in ``path``, always closed (one chDB data path per process)."""
    store = ChdbStore(path)
    try:
        await migrate(store)
        yield store
    finally:
        await store.aclose()


async def scalar(store: EventStore, sql: str) -> int:
    """The single integer ``sql`` returns."""
    return int((await store.query(sql, "TabSeparated")).decode().strip() or 0)


async def table_count(store: EventStore, table: str, *, final: bool = True) -> int:
    return await scalar(store, f"SELECT count() FROM apicat.{table}{' FINAL' if final else ''}")


async def wait_for(
    condition: Callable[[], Awaitable[bool]], what: str, timeout_s: float = WAIT_S
) -> None:
    """Poll ``condition`` every 50 ms until it holds; fail naming ``what`` after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")
        await asyncio.sleep(0.05)


async def wait_for_rows(store: EventStore, table: str, expected: int) -> None:
    """Until ``table`` holds at least ``expected`` distinct events (FINAL)."""

    async def enough() -> bool:
        return await table_count(store, table) >= expected

    await wait_for(enough, f"{expected} rows in {table}")


@dataclass
class RunningConsumer:
    consumer: EventConsumer
    task: asyncio.Task[None]
    stop: asyncio.Event = field(default_factory=asyncio.Event)


@contextlib.asynccontextmanager
async def running_consumer(consumer: EventConsumer) -> AsyncIterator[RunningConsumer]:
    """``consumer.run`` in a task; on exit stop it (bounded) and re-raise what it died of."""
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop), name="event-consumer")
    running = RunningConsumer(consumer, task, stop)
    try:
        yield running
    finally:
        stop.set()
        try:
            async with asyncio.timeout(WAIT_S):
                await asyncio.shield(task)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            raise


def request_event(i: int, category: str = "anime", **fields: Any) -> RequestEvent:
    """A valid request event; ``category`` is its partition key."""
    return RequestEvent(
        request_id=f"req-{i}",
        instance="test",
        category=category,
        endpoint="/api/v1/home",
        path=f"/api/v1/home?category={category}&n={i}",
        status=200,
        cache_status="MISS",
        source_name="alpha",
        fallback_depth=0,
        latency_ms=1.5,
        **fields,
    )


def attempt_event(i: int, source: str) -> UpstreamAttemptEvent:
    """A valid upstream attempt event; ``source`` is its partition key."""
    return UpstreamAttemptEvent(
        request_id=f"req-{i}",
        instance="test",
        category="anime",
        endpoint="/api/v1/home",
        source_name=source,
        role="primary",
        depth=0,
        url=f"http://127.0.0.1:1/{source}/v1/home?n={i}",
        status_code=200,
        latency_ms=2.0,
        outcome="ok",
    )


async def produce_events(
    bootstrap: str, prefix: str, events: Sequence[EventEnvelope], journal_dir: Path
) -> None:
    """Send ``events`` through the gateway's own Kafka emitter and wait until all are acked."""
    emitter = BufferedEmitter(KafkaTransport(bootstrap, "apicat-test", prefix), journal_dir)
    try:
        for event in events:
            emitter.emit(event)
        async with asyncio.timeout(WAIT_S):
            await emitter.flush()
        stats = emitter.stats()
        assert (stats.sent_total, stats.journal_pending, stats.dropped_total) == (len(events), 0, 0)
    finally:
        await emitter.aclose()


@contextlib.asynccontextmanager
async def admin_client(bootstrap: str) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def plain_consumer(bootstrap: str, *topics: str) -> AsyncIterator[AIOKafkaConsumer]:
    """A group-less consumer (reads from the beginning, commits nothing)."""
    consumer = AIOKafkaConsumer(
        *topics, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    async with admin_client(bootstrap) as admin:
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics([NewTopic(topic, partitions, replication_factor=1)])


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """Partition → end offset (next offset to be written) of ``topic``."""
    async with plain_consumer(bootstrap, topic) as consumer:
        # Subscribed to the topic, so its metadata is fetched in the background.

        async def known() -> bool:
            return bool(consumer.partitions_for_topic(topic))

        await wait_for(known, f"the partitions of {topic}")
        partitions = consumer.partitions_for_topic(topic)
        async with asyncio.timeout(WAIT_S):
            ends = await consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
    return {tp.partition: offset for tp, offset in ends.items()}


async def committed_offsets(admin: AIOKafkaAdminClient, group: str) -> dict[tuple[str, int], int]:
    """(topic, partition) → the group's committed offset; absent when nothing is committed."""
    offsets = await admin.list_consumer_group_offsets(group)
    return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()}


async def group_assignment(
    admin: AIOKafkaAdminClient, group: str
) -> tuple[str, list[set[tuple[str, int]]]]:
    """A consumer group's state and, per member, the (topic, partition)s assigned to it."""
    (response,) = await admin.describe_consumer_groups([group])
    (description,) = response.groups
    # (error_code, group_id, state, protocol_type, protocol, members, ...); the assignment
    # is the last field of a member in every DescribeGroups version.
    members = [
        set(ConsumerProtocol.ASSIGNMENT.decode(member[-1]).partitions()) if member[-1] else set()
        for member in description[5]
    ]
    return str(description[2]), members


async def read_records(bootstrap: str, topic: str, count: int) -> list[Any]:
    """The first ``count`` records of ``topic`` (all partitions), within ``WAIT_S``."""
    records: list[Any] = []
    async with plain_consumer(bootstrap, topic) as consumer:
        async with asyncio.timeout(WAIT_S):
            while len(records) < count:
                batches = await consumer.getmany(timeout_ms=200)
                for batch in batches.values():
                    records.extend(batch)
    return records


def header(record: Any, name: str) -> str:
    """One header of a consumed record, decoded; ``""`` when absent."""
    values: Sequence[tuple[str, bytes]] = record.headers or ()
    return next((value.decode() for key, value in values if key == name), "")
