"""The test Kafka broker is real and usable the way the event pipeline uses it.

Idempotent producer (``acks="all"``), consumer groups with manual commits, and a second group
member resuming exactly after the committed offset. Every test uses fresh topic and group names
(the broker is shared), and every wait is bounded by ``asyncio.timeout``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

pytestmark = pytest.mark.kafka

WAIT_S = 30.0


def _unique(prefix: str) -> str:
    return f"apicat-test-{prefix}-{uuid.uuid4().hex[:12]}"


@asynccontextmanager
async def _producer(bootstrap: str) -> AsyncIterator[Any]:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        request_timeout_ms=10_000,
    )
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


@asynccontextmanager
async def _consumer(bootstrap: str, topic: str, group: str) -> AsyncIterator[Any]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


async def _consume(consumer: Any, count: int) -> list[Any]:
    """Exactly ``count`` records, one poll at a time, within ``WAIT_S``."""
    records: list[Any] = []
    async with asyncio.timeout(WAIT_S):
        while len(records) < count:
            batches = await consumer.getmany(timeout_ms=500, max_records=count - len(records))
            for batch in batches.values():
                records.extend(batch)
    return records


async def test_idempotent_produce_then_consume_back_with_a_group(kafka_bootstrap: str) -> None:
    topic, group = _unique("roundtrip"), _unique("group")
    keys = [f"key-{i % 4}".encode() for i in range(12)]
    values = [f"event-{i}".encode() for i in range(12)]

    # The topic does not exist yet: the broker auto-creates it on first produce.
    async with _producer(kafka_bootstrap) as producer:
        async with asyncio.timeout(WAIT_S):
            sent = [
                await producer.send_and_wait(topic, value, key=key)
                for key, value in zip(keys, values, strict=True)
            ]
    # acks=all + idempotence: every send was acknowledged; offsets are dense per partition.
    end_offsets: dict[int, int] = {}
    for m in sent:
        assert m.offset == end_offsets.get(m.partition, 0)
        end_offsets[m.partition] = m.offset + 1

    async with _consumer(kafka_bootstrap, topic, group) as consumer:
        records = await _consume(consumer, len(values))
        await consumer.commit()
        assert sorted(r.value for r in records) == sorted(values)
        # One key, one partition, in send order.
        for key in set(keys):
            assert [r.value for r in records if r.key == key] == [
                v for k, v in zip(keys, values, strict=True) if k == key
            ]
        for partition, end in end_offsets.items():
            assert await consumer.committed(TopicPartition(topic, partition)) == end


async def test_second_group_member_resumes_after_the_committed_offset(
    kafka_bootstrap: str,
) -> None:
    topic, group = _unique("resume"), _unique("group")
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        async with asyncio.timeout(WAIT_S):
            await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    tp = TopicPartition(topic, 0)
    values = [f"event-{i}".encode() for i in range(10)]
    async with _producer(kafka_bootstrap) as producer:
        async with asyncio.timeout(WAIT_S):
            sent = [await producer.send_and_wait(topic, value) for value in values]
    assert [m.offset for m in sent] == list(range(10))

    # First member processes 4 records, commits exactly those, and leaves the group.
    async with _consumer(kafka_bootstrap, topic, group) as first:
        processed = await _consume(first, 4)
        assert [r.offset for r in processed] == [0, 1, 2, 3]
        await first.commit({tp: processed[-1].offset + 1})
        assert await first.committed(tp) == 4

    # A new member of the same group resumes at offset 4: nothing re-delivered, nothing skipped.
    async with _consumer(kafka_bootstrap, topic, group) as second:
        rest = await _consume(second, 6)
        assert [r.offset for r in rest] == list(range(4, 10))
        assert [r.value for r in rest] == values[4:]
        assert await second.getmany(timeout_ms=300) == {}
        await second.commit()
        assert await second.committed(tp) == 10
