"""The Kafka event pipeline end to end: gateway → Kafka emitter → real broker → consumer → chDB.

Each test uses its own topic prefix and consumer group on the shared broker, and its own chDB
data path (opened and closed by the ``store`` fixture: one chDB path per process at a time).
Every wait polls an observable condition (store counts, consumer counters, broker offsets,
emitter stats) with a deadline.

``test_kafka_outage_*`` stops and restarts the broker with ``scripts/kafka.sh`` (it skips when
the broker is not managed by that script). It runs by default; deselect it with
``-k "not kafka_outage"`` when other runs share the broker.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from consumers.kafka_consumer import EventConsumer
from consumers.store import ChdbStore, StoreError
from gateway import kafka_transport
from gateway.app import create_app
from gateway.container import Container
from gateway.emitter import BufferedEmitter, EmitterPolicy
from gateway.kafka_transport import KafkaTransport
from schemas.events import RequestEvent
from schemas.wire import dead_letter_topic, topic_for
from tests.support.gateway import Source, build_config, gateway_settings
from tests.support.pipeline import (
    WAIT_S,
    admin_client,
    attempt_event,
    committed_offsets,
    create_topic,
    end_offsets,
    group_assignment,
    header,
    migrated_store,
    produce_events,
    read_records,
    request_event,
    running_consumer,
    scalar,
    table_count,
    unique_group,
    unique_prefix,
    wait_for,
    wait_for_rows,
)
from tests.support.upstreams import REPO_ROOT, DemoUpstreams

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse]

KAFKA_SH = REPO_ROOT / "scripts" / "kafka.sh"
EVENT_TABLES = ("requests", "upstream_attempts", "validation_failures", "circuit_changes")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[ChdbStore]:
    async with migrated_store(tmp_path / "chdb") as opened:
        yield opened


async def assert_stored_exactly_once(store: ChdbStore, table: str, expected: int) -> None:
    """``expected`` rows, no duplicate row at all (not merely collapsed by FINAL)."""
    final = await table_count(store, table)
    raw = await table_count(store, table, final=False)
    distinct = await scalar(store, f"SELECT count(DISTINCT event_id) FROM apicat.{table}")
    assert (final, raw, distinct) == (expected, expected, expected)


# 1. Gateway → Kafka → consumer: what the dashboards count is what happened.


async def test_every_request_and_upstream_call_is_stored_once(
    upstreams: DemoUpstreams, tmp_path: Path, store: ChdbStore, kafka_bootstrap: str
) -> None:
    prefix, requests = unique_prefix(), 30
    upstreams.set_knobs("alpha", error_rate=0.25, invalid_schema_rate=0.25)
    upstreams.set_knobs("alpha-mirror")
    upstreams.set_knobs("beta", low_confidence_rate=0.3, placeholder_rate=0.2)
    upstreams.set_knobs("beta-mirror", error_rate=0.3)
    # One chain per category: no racing chains, so no cancelled calls to account for.
    config = build_config(
        upstreams,
        {
            "anime": [Source("alpha", 1, fallbacks=["alpha-mirror"])],
            "donghua": [Source("beta", 1, fallbacks=["beta-mirror"])],
        },
        paths=["/api/v1/search"],
    )
    emitter = BufferedEmitter(
        KafkaTransport(kafka_bootstrap, "apicat-test-gateway", prefix),
        tmp_path / "journal",
        EmitterPolicy(linger_s=0.05),
    )
    container = Container(gateway_settings(tmp_path / "gateway"), config, emitter=emitter)
    app = create_app(container)
    statuses: list[int] = []
    async with app.test_app():
        client = app.test_client()
        for i in range(requests):
            category = ("anime", "donghua")[i % 2]
            response = await client.get(
                f"/api/v1/search?category={category}&q=title{i}",
                scope_base={"client": ("127.0.0.1", 50000)},
            )
            statuses.append(response.status_code)
        async with asyncio.timeout(WAIT_S):
            await emitter.flush()
    stats = emitter.stats()
    assert (stats.journal_pending, stats.dropped_total) == (0, 0)
    assert stats.sent_total == stats.emitted_total
    demo = upstreams.stats()
    assert demo["not_found"] == 0

    consumer = EventConsumer(
        kafka_bootstrap, store, group_id=unique_group(), topic_prefix=prefix, batch_s=0.2
    )

    async def all_stored() -> bool:
        counts = [await table_count(store, table) for table in EVENT_TABLES]
        return sum(counts) >= stats.emitted_total

    async with running_consumer(consumer):
        await wait_for(all_stored, f"all {stats.emitted_total} emitted events in the store")
    assert consumer.dead_lettered == 0

    assert await table_count(store, "requests") == requests
    for status in set(statuses):
        stored = await scalar(
            store, f"SELECT count() FROM apicat.requests FINAL WHERE status = {status}"
        )
        assert stored == statuses.count(status), status
    # Every HTTP call an upstream received is one attempt row, per upstream.
    for source in ("alpha", "alpha-mirror", "beta", "beta-mirror"):
        stored = await scalar(
            store,
            "SELECT count() FROM apicat.upstream_attempts FINAL "
            f"WHERE startsWith(url, '{upstreams.source_url(source)}/') "
            "AND outcome NOT IN ('cancelled', 'circuit_open')",
        )
        assert stored == demo["sources"][source]["total"] > 0, source
    invalid = await scalar(
        store,
        "SELECT count() FROM apicat.upstream_attempts FINAL "
        "WHERE outcome IN ('invalid_schema', 'low_confidence')",
    )
    assert await table_count(store, "validation_failures") == invalid > 0
    # The knobs did what they were set for: fallbacks happened.
    fallbacks = await scalar(
        store, "SELECT count() FROM apicat.requests FINAL WHERE fallback_depth > 0"
    )
    assert fallbacks > 0


# 2. Crash between insert and commit.


class StoreWrapper:
    """An ``EventStore`` delegating to a real store; subclasses change one behaviour."""

    def __init__(self, inner: ChdbStore) -> None:
        self._inner = inner

    async def insert(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[object]], token: str
    ) -> None:
        await self._inner.insert(table, columns, rows, token)

    async def query(self, sql: str, fmt: str = "JSONEachRow") -> bytes:
        return await self._inner.query(sql, fmt)

    async def command(self, sql: str) -> None:
        await self._inner.command(sql)

    async def max_offsets(self, table: str, topic: str) -> dict[int, int]:
        return await self._inner.max_offsets(table, topic)

    async def ping(self) -> None:
        await self._inner.ping()

    async def aclose(self) -> None:
        return None  # the fixture closes the real store


class SimulatedCrash(BaseException):
    """The process died: not an ``Exception``, so nothing in the consumer handles it."""


class CrashAfterFirstInsert(StoreWrapper):
    """The first insert lands, then the process "dies" before the consumer commits."""

    inserted = 0

    async def insert(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[object]], token: str
    ) -> None:
        await self._inner.insert(table, columns, rows, token)
        self.inserted += len(rows)
        raise SimulatedCrash


class SlowOffsets(StoreWrapper):
    """``max_offsets`` answers after ``delay_s``, as a remote ClickHouse under load may."""

    def __init__(self, inner: ChdbStore, delay_s: float) -> None:
        super().__init__(inner)
        self._delay_s = delay_s

    async def max_offsets(self, table: str, topic: str) -> dict[int, int]:
        offsets = await self._inner.max_offsets(table, topic)
        await asyncio.sleep(self._delay_s)
        return offsets


async def stored_event_ids(store: ChdbStore, table: str, *, final: bool = True) -> list[str]:
    sql = f"SELECT groupArray(event_id) AS ids FROM apicat.{table}{' FINAL' if final else ''}"
    ids: list[str] = orjson.loads(await store.query(sql, "JSON"))["data"][0]["ids"]
    return sorted(ids)


CRASH_TOTAL, CRASH_FIRST_BATCH = 30, 10


async def crash_then_restart(
    tmp_path: Path, store: ChdbStore, bootstrap: str, restart_store: StoreWrapper | ChdbStore
) -> tuple[list[RequestEvent], EventConsumer]:
    """A consumer stores its first batch and dies before committing; a new member of the same
    group then runs (on ``restart_store``) until every event is stored and committed."""
    prefix, group = unique_prefix(), unique_group()
    topic = topic_for("request", prefix)
    # One partition key: offsets 0..29 of one partition, so the first batch is offsets 0..9.
    events = [request_event(i) for i in range(CRASH_TOTAL)]
    await produce_events(bootstrap, prefix, events, tmp_path / "journal")

    crashing = CrashAfterFirstInsert(store)
    first = EventConsumer(
        bootstrap,
        crashing,
        group_id=group,
        topic_prefix=prefix,
        batch_rows=CRASH_FIRST_BATCH,
        batch_s=0.5,
    )
    with pytest.raises(SimulatedCrash):
        async with asyncio.timeout(WAIT_S):
            await first.run(asyncio.Event())
    assert crashing.inserted == CRASH_FIRST_BATCH
    assert await table_count(store, "requests", final=False) == CRASH_FIRST_BATCH
    async with admin_client(bootstrap) as admin:
        assert await committed_offsets(admin, group) == {}  # died before committing

        # The default batch size this time, so re-reading offsets 0..9 would insert them again
        # as part of a different block (a new deduplication token): only seeking past the
        # offsets already stored avoids duplicate rows.
        second = EventConsumer(
            bootstrap, restart_store, group_id=group, topic_prefix=prefix, batch_s=0.2
        )
        async with running_consumer(second):
            await wait_for_rows(store, "requests", CRASH_TOTAL)
            ends = await end_offsets(bootstrap, topic)

            async def committed_to_end() -> bool:
                committed = await committed_offsets(admin, group)
                return all(committed.get((topic, p), 0) == end for p, end in ends.items())

            await wait_for(committed_to_end, "the restarted consumer to commit to the end")
    return events, second


async def test_crash_between_insert_and_commit_loses_nothing(
    tmp_path: Path, store: ChdbStore, kafka_bootstrap: str
) -> None:
    events, _ = await crash_then_restart(tmp_path, store, kafka_bootstrap, store)
    assert await table_count(store, "requests") == CRASH_TOTAL
    assert await stored_event_ids(store, "requests") == sorted(e.event_id for e in events)


async def test_restart_after_crash_does_not_insert_stored_events_again(
    tmp_path: Path, store: ChdbStore, kafka_bootstrap: str
) -> None:
    slow = SlowOffsets(store, delay_s=1.0)
    events, second = await crash_then_restart(tmp_path, store, kafka_bootstrap, slow)
    # No duplicate row at all, not merely duplicates collapsed by FINAL.
    assert await stored_event_ids(store, "requests", final=False) == sorted(
        e.event_id for e in events
    )
    assert second.rows_written == CRASH_TOTAL - CRASH_FIRST_BATCH


# 3. Store down: nothing lost, nothing committed until it is back.


class FailingWhileArmed(StoreWrapper):
    """Fails ``failures_left`` inserts once armed, recording the group's committed offsets at
    each failure."""

    def __init__(self, inner: ChdbStore, admin: AIOKafkaAdminClient, group: str) -> None:
        super().__init__(inner)
        self._admin = admin
        self._group = group
        self.failures_left = 0
        self.failed = 0
        self.committed_while_failing: list[dict[tuple[str, int], int]] = []

    async def insert(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[object]], token: str
    ) -> None:
        if self.failures_left > 0:
            self.failures_left -= 1
            self.failed += 1
            self.committed_while_failing.append(await committed_offsets(self._admin, self._group))
            raise StoreError("down", retriable=True)
        await self._inner.insert(table, columns, rows, token)


async def test_store_down_loses_nothing_and_commits_nothing_until_it_is_back(
    tmp_path: Path, store: ChdbStore, kafka_bootstrap: str
) -> None:
    prefix, group, failures = unique_prefix(), unique_group(), 3
    topic = topic_for("request", prefix)
    before_outage = [request_event(i) for i in range(10)]
    during_outage = [request_event(i) for i in range(10, 30)]
    async with admin_client(kafka_bootstrap) as admin:
        failing = FailingWhileArmed(store, admin, group)
        consumer = EventConsumer(
            kafka_bootstrap,
            failing,
            group_id=group,
            topic_prefix=prefix,
            batch_s=0.2,
            retry_max_s=0.1,
        )

        async def committed_to_end() -> bool:
            ends = await end_offsets(kafka_bootstrap, topic)
            committed = await committed_offsets(admin, group)
            return all(committed.get((topic, p), 0) == end for p, end in ends.items())

        # Produced first, so the topic exists when the consumer subscribes to its pattern.
        await produce_events(kafka_bootstrap, prefix, before_outage, tmp_path / "j1")
        async with running_consumer(consumer):
            await wait_for_rows(store, "requests", len(before_outage))
            await wait_for(committed_to_end, "the first events' offsets to be committed")
            committed_before = await committed_offsets(admin, group)
            assert committed_before

            failing.failures_left = failures
            await produce_events(kafka_bootstrap, prefix, during_outage, tmp_path / "j2")

            async def retried_through() -> bool:
                return failing.failed == failures and (
                    await table_count(store, "requests") == len(before_outage + during_outage)
                )

            await wait_for(retried_through, f"{failures} failed inserts, then all stored")
            await wait_for(committed_to_end, "the offsets to be committed once the store is back")

    # While the store failed, the group's offsets stayed where the first batch left them.
    assert failing.committed_while_failing == [committed_before] * failures
    await assert_stored_exactly_once(store, "requests", len(before_outage + during_outage))


# 4. Poison messages go to the dead-letter topic; the partition keeps flowing.


async def test_poison_messages_are_dead_lettered_and_the_partition_keeps_flowing(
    store: ChdbStore, kafka_bootstrap: str
) -> None:
    prefix, group = unique_prefix(), unique_group()
    topic = topic_for("request", prefix)
    garbage = b"\x00\xff not json at all"
    wrong_type = orjson.dumps(
        {**request_event(99).model_dump(mode="json"), "status": "two hundred"}
    )
    key = b"anime"  # one partition: the good events after the poison queue behind it
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        async with asyncio.timeout(WAIT_S):
            for value in (
                request_event(0).model_dump_json().encode(),
                garbage,
                wrong_type,
                request_event(1).model_dump_json().encode(),
            ):
                await producer.send_and_wait(topic, value, key=key)
        consumer = EventConsumer(
            kafka_bootstrap, store, group_id=group, topic_prefix=prefix, batch_s=0.2
        )
        async with running_consumer(consumer):
            await wait_for_rows(store, "requests", 2)

            async def dead_lettered() -> bool:
                return consumer.dead_lettered == 2

            await wait_for(dead_lettered, "both poison messages to be dead-lettered")
            # A later event on the same partition is not held up by the poison before it.
            async with asyncio.timeout(WAIT_S):
                await producer.send_and_wait(
                    topic, request_event(2).model_dump_json().encode(), key=key
                )
            await wait_for_rows(store, "requests", 3)
    finally:
        await producer.stop()

    await assert_stored_exactly_once(store, "requests", 3)
    assert consumer.dead_lettered == 2
    dead = await read_records(kafka_bootstrap, dead_letter_topic(prefix), 2)
    by_value = {record.value: record for record in dead}
    assert set(by_value) == {garbage, wrong_type}
    assert header(by_value[garbage], "reason").startswith("not JSON")
    reason = header(by_value[wrong_type], "reason")
    assert reason.startswith("invalid request event") and "status" in reason
    sources = {header(record, "source").rsplit("/", 2)[0] for record in dead}
    assert sources == {topic}


# 5. Two members of one group share the partitions.


async def test_two_consumers_in_one_group_share_the_partitions(
    tmp_path: Path, store: ChdbStore, kafka_bootstrap: str
) -> None:
    prefix, group, total = unique_prefix(), unique_group(), 60
    topic = topic_for("upstream_attempt", prefix)
    await create_topic(kafka_bootstrap, topic, partitions=3)
    first, second = (
        EventConsumer(kafka_bootstrap, store, group_id=group, topic_prefix=prefix, batch_s=0.2)
        for _ in range(2)
    )
    async with running_consumer(first), running_consumer(second):
        async with admin_client(kafka_bootstrap) as admin:

            async def both_assigned() -> bool:
                state, members = await group_assignment(admin, group)
                return state == "Stable" and len(members) == 2 and all(members)

            await wait_for(both_assigned, "a stable group of two members, each with partitions")
            _, members = await group_assignment(admin, group)
            assert set.union(*members) == {(topic, p) for p in range(3)}
        sources = [f"source{n}" for n in range(9)]
        events = [attempt_event(i, sources[i % len(sources)]) for i in range(total)]
        await produce_events(kafka_bootstrap, prefix, events, tmp_path / "journal")
        ends = await end_offsets(kafka_bootstrap, topic)
        assert sorted(ends) == [0, 1, 2] and all(ends.values()), ends  # every partition used
        await wait_for_rows(store, "upstream_attempts", total)

    assert first.rows_written > 0 and second.rows_written > 0
    assert first.rows_written + second.rows_written == total
    await assert_stored_exactly_once(store, "upstream_attempts", total)


# 6. The broker goes away mid-traffic: the emitter journals, replays, and nothing is lost.


def _kafka_sh(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KAFKA_SH), command], capture_output=True, text=True, timeout=150, check=False
    )


async def _kafka_up() -> bool:
    return (await asyncio.to_thread(_kafka_sh, "status")).returncode == 0


async def test_kafka_outage_mid_traffic_loses_no_event(
    tmp_path: Path, store: ChdbStore, kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not await _kafka_up():
        pytest.skip("the broker is not managed by scripts/kafka.sh; cannot stop and restart it")
    # Find the outage after 2 s instead of 10 (the per-batch send timeout): a shorter test.
    monkeypatch.setattr(kafka_transport, "_SEND_TIMEOUT_S", 2.0)
    prefix, group = unique_prefix(), unique_group()
    emitter = BufferedEmitter(
        KafkaTransport(kafka_bootstrap, "apicat-test-outage", prefix),
        tmp_path / "journal",
        EmitterPolicy(linger_s=0.05, retry_initial_s=0.1, retry_max_s=0.5),
    )
    emitted: list[RequestEvent] = []

    def emit(count: int) -> float:
        """Emit ``count`` events; return how long the calls took (they must not wait)."""
        started = time.perf_counter()
        for _ in range(count):
            event = request_event(len(emitted), category=f"c{len(emitted) % 5}")
            emitter.emit(event)
            emitted.append(event)
        return time.perf_counter() - started

    def stats_are(**expected: object) -> Callable[[], Awaitable[bool]]:
        async def holds() -> bool:
            stats = emitter.stats()
            return all(getattr(stats, name) == value for name, value in expected.items())

        return holds

    emitter.start()
    try:
        emit(10)
        await wait_for(stats_are(sent_total=10, buffered=0), "the first events to be sent")

        stopped = await asyncio.to_thread(_kafka_sh, "stop")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert emit(10) < 0.5  # emit() neither raises nor waits while Kafka is down

        async def journaled() -> bool:
            stats = emitter.stats()
            return not stats.transport_up and stats.journal_pending > 0

        try:
            await wait_for(journaled, "the flusher to find Kafka down and journal the events")
        except AssertionError:
            if await _kafka_up():  # the broker is shared: someone may have restarted it
                pytest.fail("the broker came back (restarted by another process?) mid-outage")
            raise
        assert emit(10) < 0.5
        assert emitter.stats().emitted_total == len(emitted)

        started = await asyncio.to_thread(_kafka_sh, "start")
        assert started.returncode == 0, started.stdout + started.stderr
        await wait_for(
            stats_are(transport_up=True, journal_pending=0, buffered=0, sent_total=len(emitted)),
            "the journal to be replayed once Kafka is back",
        )
    finally:
        if not await _kafka_up():
            await asyncio.to_thread(_kafka_sh, "start")
        await emitter.aclose()
    stats = emitter.stats()
    assert stats.dropped_total == 0
    assert stats.replayed_total > 0

    consumer = EventConsumer(
        kafka_bootstrap, store, group_id=group, topic_prefix=prefix, batch_s=0.2
    )
    async with running_consumer(consumer):
        await wait_for_rows(store, "requests", len(emitted))
    await assert_stored_exactly_once(store, "requests", len(emitted))
    assert await stored_event_ids(store, "requests") == sorted(e.event_id for e in emitted)
