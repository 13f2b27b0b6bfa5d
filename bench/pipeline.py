"""Event-pipeline benchmark helpers: synthetic events, a Kafka producer and worker processes.

``bench.run`` imports the event generator and the producer, and runs the workers here as
subprocesses (``python -m bench.pipeline <command>``), one chDB data path per process:

* ``consume``: an ``EventConsumer`` drains a topic prefix into a store (``ChdbStore`` on a
  fresh directory, or ``ClickHouseStore`` on a URL) until a ``FINAL`` count sees every row;
* ``store-only``: the same events, converted and inserted straight into a fresh store in
  fixed-size batches, timing the conversion and the inserts apart;
* ``chdb-http``: a migrated ``ChdbStore`` served over the ClickHouse HTTP interface
  (``consumers.chdb_http``) until SIGTERM.

Every worker prints one ``result: {json}`` line (``chdb-http``: a ``listening on`` line) and is
bounded in time by its ``--time-limit``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.partitioner import DefaultPartitioner

from consumers.batch import Message, build_batch
from consumers.gc_policy import tune_for_batches
from consumers.store import EventStore
from schemas.endpoints import ENDPOINTS
from schemas.events import (
    AttemptOutcome,
    CacheStatus,
    EventEnvelope,
    FieldFailure,
    RequestEvent,
    SourceRole,
    UpstreamAttemptEvent,
    ValidationFailureEvent,
)
from schemas.wire import partition_key, topic_for

LISTENING_PREFIX = "chdb-http listening on "
RESULT_PREFIX = "result: "
STALL_S = 20.0
PARTITIONS = 3
EVENT_TYPES = ("request", "upstream_attempt", "validation_failure")
TABLES = ("requests", "upstream_attempts", "validation_failures")
MIX = {"upstream_attempt": 0.55, "request": 0.40, "validation_failure": 0.05}
"""Share of each type in the synthetic stream: per miss one request and one or more attempts;
per hit only a request; now and then a rejected answer."""

# --------------------------------------------------------------------------- synthetic events

_CATEGORIES: dict[str, tuple[str, ...]] = {
    "anime": ("samehadaku", "samehadaku-mirror", "otakudesu", "otakudesu-mirror", "kuramanime"),
    "drakor": ("drakorid", "drakorid-mirror", "drakorindo"),
    "donghua": ("anichin", "anichin-mirror"),
}
_PATHS = tuple(spec.path for spec in ENDPOINTS)
_WORDS = ("one", "piece", "naruto", "bleach", "spy", "family", "jujutsu", "kaisen", "frieren")
_FAILED_RULES = (
    ("data.items[{n}].title", "missing", "field required"),
    ("data.items[{n}].poster", "placeholder", "placeholder image URL"),
    ("data.items[{n}].episode", "type", "expected an integer, got 'TBA'"),
    ("data.total", "range", "negative total"),
)
_OUTCOMES = (
    (AttemptOutcome.OK, 200, 0.86),
    (AttemptOutcome.TIMEOUT, None, 0.03),
    (AttemptOutcome.HTTP_5XX, 503, 0.05),
    (AttemptOutcome.CONNECTION_ERROR, None, 0.01),
    (AttemptOutcome.INVALID_SCHEMA, 200, 0.03),
    (AttemptOutcome.CANCELLED, None, 0.02),
)


@dataclass(frozen=True, slots=True)
class Record:
    """One event as the gateway ships it: its type, partition key and JSON."""

    event_type: str
    key: bytes
    payload: bytes


TEMPLATES = 2_000


def synthetic_records(count: int, seed: int, base: dt.datetime) -> list[Record]:
    """``count`` valid, varied events of the ``MIX`` types; the same arguments, the same bytes.

    ``TEMPLATES`` events are built with the event models (``build``, as the gateway does on its
    hot paths) and encoded with their own serializer, so the JSON is what the gateway emits;
    each record is one of them with a new ``event_id``, ``ts``, ``request_id`` and
    ``trace_id`` spliced into the envelope (a few µs a record instead of 40 for a model each).
    """
    rng = random.Random(seed)
    templates = [_template(rng, base) for _ in range(TEMPLATES)]
    base_us = int(base.timestamp() * 1_000_000)
    second, second_text = -1, ""
    records: list[Record] = []
    for i in range(count):
        event_type, key, tail = templates[rng.randrange(TEMPLATES)]
        bits = f"{rng.getrandbits(128):032x}"
        ts_us = base_us + 500 * i + rng.randrange(500)
        if ts_us // 1_000_000 != second:
            second = ts_us // 1_000_000
            second_text = dt.datetime.fromtimestamp(second, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
        head = (
            f'{{"event_id":"{bits[:8]}-{bits[8:12]}-4{bits[13:16]}-a{bits[17:20]}-{bits[20:]}",'
            f'"ts":"{second_text}.{ts_us % 1_000_000:06d}Z","schema_version":1,'
            f'"request_id":"{rng.getrandbits(128):032x}","trace_id":"{rng.getrandbits(128):032x}"'
        )
        records.append(Record(event_type, key, head.encode() + tail))
    return records


def _template(rng: random.Random, base: dt.datetime) -> tuple[str, bytes, bytes]:
    """One random, valid event: its type, partition key and its JSON after ``trace_id``."""
    categories = tuple(_CATEGORIES)
    outcome_weights = [weight for _, _, weight in _OUTCOMES]
    category = categories[rng.randrange(len(categories))]
    sources = _CATEGORIES[category]
    source = sources[rng.randrange(len(sources))]
    path = _PATHS[rng.randrange(len(_PATHS))]
    rest = path.removeprefix("/api/v1/").replace("{day}", "senin")
    query = f"q={rng.choice(_WORDS)}+{rng.choice(_WORDS)}" if rest == "search" else ""
    depth = 0 if rng.random() < 0.85 else rng.randint(1, 2)
    envelope: dict[str, Any] = {
        "event_id": "",
        "ts": base,
        "request_id": "",
        "trace_id": "",
        "instance": f"gw-{rng.randrange(4)}",
    }
    draw = rng.random()
    event: EventEnvelope
    if draw < MIX["upstream_attempt"]:
        outcome, status_code, _ = rng.choices(_OUTCOMES, outcome_weights)[0]
        ok = outcome is AttemptOutcome.OK
        event = UpstreamAttemptEvent.build(
            **envelope,
            category=category,
            endpoint=path,
            source_name=source,
            role=SourceRole.PRIMARY if depth == 0 else SourceRole.FALLBACK,
            depth=depth,
            retry=1 if rng.random() < 0.04 else 0,
            url=f"http://scrape-{source}.internal:8090/{source}/v1/{rest}?{query}",
            status_code=status_code,
            latency_ms=round(rng.lognormvariate(3.6, 0.7), 3),
            outcome=outcome,
            confidence=round(rng.uniform(0.7, 1.0), 3) if ok else None,
            bytes=rng.randrange(2_000, 40_000) if status_code else 0,
            detail="" if ok else f"{outcome.value} after retry budget",
        )
    elif draw < MIX["upstream_attempt"] + MIX["request"]:
        cache = rng.choices(
            (CacheStatus.HIT, CacheStatus.MISS, CacheStatus.STALE), (0.75, 0.22, 0.03)
        )[0]
        failed = rng.random() < 0.02
        event = RequestEvent.build(
            **envelope,
            category=category,
            endpoint=path,
            path=path.replace("{day}", "senin"),
            status=503 if failed else 200,
            cache_status=cache,
            source_name=None if failed else source,
            fallback_depth=None if failed else depth,
            latency_ms=round(
                rng.uniform(0.3, 2.0) if cache is CacheStatus.HIT else rng.lognormvariate(4, 1),
                3,
            ),
            client_ip=f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}",
            error_code="all_sources_failed" if failed else None,
        )
    else:
        failures = [
            FieldFailure(path=field_path.format(n=rng.randrange(30)), rule=rule, detail=detail)
            for field_path, rule, detail in rng.sample(_FAILED_RULES, rng.randint(1, 3))
        ]
        event = ValidationFailureEvent.build(
            **envelope,
            category=category,
            endpoint=path,
            source_name=source,
            role=SourceRole.PRIMARY if depth == 0 else SourceRole.FALLBACK,
            depth=depth,
            url=f"http://scrape-{source}.internal:8090/{source}/v1/{rest}?{query}",
            failures=failures,
        )
    encoded = event.__pydantic_serializer__.to_json(event)
    tail = encoded[encoded.index(b',"instance":') :]
    return getattr(event, "type", "unknown"), partition_key(event).encode(), tail


def to_messages(records: Sequence[Record], prefix: str) -> list[Message]:
    """The records as a consumer would see them (same partitioning as :func:`produce`)."""
    partitioner = DefaultPartitioner()
    partitions = list(range(PARTITIONS))
    offsets: dict[tuple[str, int], int] = {}
    messages: list[Message] = []
    for record in records:
        topic = topic_for(record.event_type, prefix)
        partition: int = partitioner(record.key, partitions, partitions)
        offset = offsets.get((topic, partition), 0)
        offsets[(topic, partition)] = offset + 1
        messages.append(Message(topic, partition, offset, record.payload))
    return messages


# --------------------------------------------------------------------------- Kafka


@dataclass(frozen=True)
class Produced:
    records: int
    payload_bytes: int
    seconds: float
    per_topic: dict[str, int]


@contextlib.asynccontextmanager
async def _admin(bootstrap: str) -> Any:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    async with asyncio.timeout(15):
        await admin.start()
    try:
        yield admin
    finally:
        with contextlib.suppress(KafkaError, OSError, TimeoutError):
            async with asyncio.timeout(10):
                await admin.close()


async def kafka_reachable(bootstrap: str, timeout_s: float = 5.0) -> str | None:
    """``None`` when a Kafka client can talk to ``bootstrap``, else why not."""
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    try:
        async with asyncio.timeout(timeout_s):
            _, writer = await asyncio.open_connection(host or "127.0.0.1", int(port))
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        async with _admin(bootstrap) as admin, asyncio.timeout(timeout_s):
            await admin.list_topics()
    except (OSError, ValueError, KafkaError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}".strip().rstrip(":")
    return None


async def produce(
    bootstrap: str, prefix: str, records: Sequence[Record], time_limit_s: float = 90.0
) -> Produced:
    """Create the topics (``PARTITIONS`` each) and send every record, acknowledged by the broker.

    The producer is configured like the gateway's (``gateway.kafka_transport``: acks=all,
    idempotent, lz4), so the consumer reads the same kind of batches; records go out through
    the batch API to keep the (untimed) set-up short.
    """
    topics = [topic_for(event_type, prefix) for event_type in EVENT_TYPES]
    async with _admin(bootstrap) as admin:
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics(
                [NewTopic(t, PARTITIONS, replication_factor=1) for t in topics]
            )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id="apicat-bench",
        acks="all",
        enable_idempotence=True,
        compression_type="lz4",
        max_batch_size=256 * 1024,
        linger_ms=20,
        request_timeout_ms=30_000,
    )
    started = time.perf_counter()
    async with asyncio.timeout(15):
        await producer.start()
    try:
        async with asyncio.timeout(time_limit_s):
            for topic in topics:  # metadata for every topic before the first batch
                for _ in range(100):
                    if producer.client.cluster.partitions_for_topic(topic):
                        break
                    await producer.client.force_metadata_update()
                    await asyncio.sleep(0.1)
            partitioner = DefaultPartitioner()
            partitions = list(range(PARTITIONS))
            open_batches: dict[tuple[str, int], Any] = {}
            pending: list[asyncio.Future[Any]] = []
            for record in records:
                topic = topic_for(record.event_type, prefix)
                partition: int = partitioner(record.key, partitions, partitions)
                batch = open_batches.get((topic, partition))
                if batch is None:
                    batch = open_batches[(topic, partition)] = producer.create_batch()
                if batch.append(key=record.key, value=record.payload, timestamp=None) is None:
                    pending.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = open_batches[(topic, partition)] = producer.create_batch()
                    batch.append(key=record.key, value=record.payload, timestamp=None)
            for (topic, partition), batch in open_batches.items():
                if batch.record_count():
                    pending.append(await producer.send_batch(batch, topic, partition=partition))
            await asyncio.gather(*pending)
    finally:
        with contextlib.suppress(KafkaError, OSError, TimeoutError):
            async with asyncio.timeout(15):
                await producer.stop()
    per_topic: dict[str, int] = {}
    for record in records:
        per_topic[record.event_type] = per_topic.get(record.event_type, 0) + 1
    return Produced(
        records=len(records),
        payload_bytes=sum(len(record.payload) for record in records),
        seconds=time.perf_counter() - started,
        per_topic=per_topic,
    )


async def delete_topics(bootstrap: str, prefix: str) -> None:
    """Remove the benchmark's topics again (best effort, bounded)."""
    topics = [topic_for(t, prefix) for t in (*EVENT_TYPES, "dlq")]
    with contextlib.suppress(KafkaError, OSError, TimeoutError):
        async with _admin(bootstrap) as admin, asyncio.timeout(15):
            existing = set(await admin.list_topics())
            doomed = [topic for topic in topics if topic in existing]
            if doomed:
                await admin.delete_topics(doomed)


# --------------------------------------------------------------------------- worker: consume


@dataclass
class Timed:
    """What a ``TimedStore`` saw: insert calls and their time, and when partitions came."""

    inserts: int = 0
    insert_rows: int = 0
    insert_s: float = 0.0
    first_assigned: float | None = None
    insert_spans: list[tuple[float, float, int]] = field(default_factory=list)


class TimedStore:
    """An ``EventStore`` that forwards every call and times ``insert``.

    The consumer's rebalance listener asks ``max_offsets`` as soon as partitions are
    assigned, which marks the end of joining the group.
    """

    def __init__(self, store: EventStore) -> None:
        self.inner = store
        self.seen = Timed()

    async def insert(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[object]], dedup_token: str
    ) -> None:
        started = time.perf_counter()
        await self.inner.insert(table, columns, rows, dedup_token)
        ended = time.perf_counter()
        self.seen.inserts += 1
        self.seen.insert_rows += len(rows)
        self.seen.insert_s += ended - started
        self.seen.insert_spans.append((started, ended, len(rows)))

    async def query(self, sql: str, fmt: str = "JSONEachRow") -> bytes:
        return await self.inner.query(sql, fmt)

    async def command(self, sql: str) -> None:
        await self.inner.command(sql)

    async def max_offsets(self, table: str, topic: str) -> dict[int, int]:
        if self.seen.first_assigned is None:
            self.seen.first_assigned = time.perf_counter()
        return await self.inner.max_offsets(table, topic)

    async def ping(self) -> None:
        await self.inner.ping()

    async def aclose(self) -> None:
        await self.inner.aclose()


async def final_count(store: EventStore) -> int:
    """Distinct events stored in the three tables (``FINAL`` collapses re-deliveries)."""
    sql = " UNION ALL ".join(f"SELECT count() AS n FROM apicat.{t} FINAL" for t in TABLES)
    raw = await store.query(f"SELECT sum(n) FROM ({sql})", "TabSeparated")
    return int(raw.decode().strip() or 0)


def _open_store(args: argparse.Namespace) -> EventStore:
    if args.url:
        from consumers.store import ClickHouseStore

        return ClickHouseStore(args.url, compress=args.compress)
    from consumers.store import ChdbStore

    return ChdbStore(Path(args.path))


def _cpu_s() -> float:
    times = os.times()
    return times.user + times.system


async def _consume(args: argparse.Namespace) -> dict[str, object]:
    from consumers.kafka_consumer import EventConsumer
    from consumers.migrate import migrate

    store = TimedStore(_open_store(args))
    try:
        await migrate(store.inner)
        consumer = EventConsumer(
            args.bootstrap,
            store,
            group_id=args.group,
            topic_prefix=args.prefix,
            batch_rows=args.batch_rows,
            batch_s=1.0,
        )
        stop = asyncio.Event()
        cpu_before = _cpu_s()
        started = time.perf_counter()
        deadline = started + args.time_limit
        task = asyncio.create_task(consumer.run(stop), name="bench-consumer")
        stored = counts = 0
        try:
            # Cheap in-process counter first (no query competes with the inserts), then FINAL.
            # Bounded by the time limit, and by STALL_S without a new row (broker gone).
            progress, progressed_at = 0, time.perf_counter()
            while consumer.rows_written < args.expect and not task.done():
                now = time.perf_counter()
                if consumer.rows_written != progress:
                    progress, progressed_at = consumer.rows_written, now
                if now > deadline or now - progressed_at > STALL_S:
                    break
                await asyncio.sleep(0.01)
            for _ in range(10_000):
                counts += 1
                stored = await final_count(store.inner)
                stalled = consumer.rows_written < args.expect
                if stored >= args.expect or stalled or time.perf_counter() > deadline:
                    break
                await asyncio.sleep(0.1)
            done = time.perf_counter()
        finally:
            stop.set()
            try:
                async with asyncio.timeout(30):
                    await asyncio.shield(task)
            except TimeoutError:
                task.cancel()
        cpu = _cpu_s() - cpu_before
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise RuntimeError(f"consumer failed: {task.exception()!r}")
    finally:
        await store.aclose()
    assigned = store.seen.first_assigned or started
    return {
        "rows": stored,
        "expected": args.expect,
        "batch_rows": args.batch_rows,
        "wall_s": done - started,
        "join_s": assigned - started,
        "drain_s": done - assigned,
        "insert_s": store.seen.insert_s,
        "inserts": store.seen.inserts,
        "batches": consumer.batches,
        "rows_written": consumer.rows_written,
        "dead_lettered": consumer.dead_lettered,
        "final_counts": counts,
        "cpu_s": cpu,
        "timed_out": stored < args.expect,
    }


# --------------------------------------------------------------------------- worker: store-only


def _chunks(items: Sequence[Message], size: int) -> Iterator[Sequence[Message]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def _store_only(args: argparse.Namespace) -> dict[str, object]:
    from consumers.migrate import migrate

    base = dt.datetime.fromisoformat(args.base)
    messages = to_messages(synthetic_records(args.expect, args.seed, base), args.prefix)
    store = _open_store(args)
    convert_s = insert_s = 0.0
    inserts = rows = 0
    cpu_before = _cpu_s()
    deadline = time.perf_counter() + args.time_limit
    try:
        await migrate(store)
        for chunk in _chunks(messages, args.batch_rows):
            if time.perf_counter() > deadline:
                break
            started = time.perf_counter()
            batch = build_batch(chunk)
            converted = time.perf_counter()
            for insert in batch.inserts:
                await store.insert(insert.table, insert.columns, insert.rows, insert.dedup_token)
                inserts += 1
                rows += len(insert.rows)
            convert_s += converted - started
            insert_s += time.perf_counter() - converted
        cpu = _cpu_s() - cpu_before
        stored = await final_count(store)
    finally:
        await store.aclose()
    return {
        "rows": stored,
        "expected": args.expect,
        "inserted_rows": rows,
        "batch_rows": args.batch_rows,
        "convert_s": convert_s,
        "insert_s": insert_s,
        "inserts": inserts,
        "cpu_s": cpu,
    }


# --------------------------------------------------------------------------- worker: chdb-http


async def _chdb_http(args: argparse.Namespace) -> None:
    from consumers.chdb_http import serve_chdb_http
    from consumers.migrate import migrate
    from consumers.store import ChdbStore

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    store = ChdbStore(Path(args.path))
    try:
        await migrate(store)

        def ready(port: int) -> None:
            print(f"{LISTENING_PREFIX}http://127.0.0.1:{port}", flush=True)

        async def stopped() -> None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), args.time_limit)

        await serve_chdb_http(store, "127.0.0.1", 0, stopped, ready=ready)
    finally:
        await store.aclose()


# --------------------------------------------------------------------------- entry


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("consume", "store-only"):
        sub = commands.add_parser(name)
        where = sub.add_mutually_exclusive_group(required=True)
        where.add_argument("--path", help="fresh chDB data directory (ChdbStore)")
        where.add_argument("--url", help="ClickHouse HTTP URL (ClickHouseStore)")
        sub.add_argument("--compress", action="store_true", help="ClickHouseStore compression")
        sub.add_argument("--prefix", required=True, help="topic prefix")
        sub.add_argument("--expect", type=int, required=True, help="events to wait for")
        sub.add_argument("--batch-rows", type=int, required=True)
        sub.add_argument("--time-limit", type=float, default=60.0)
        if name == "consume":
            sub.add_argument("--bootstrap", required=True)
            sub.add_argument("--group", required=True)
        else:
            sub.add_argument("--seed", type=int, required=True)
            sub.add_argument("--base", required=True, help="ISO timestamp of the first event")
    http = commands.add_parser("chdb-http")
    http.add_argument("--path", required=True)
    http.add_argument("--time-limit", type=float, default=600.0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        runner = asyncio.Runner()
    with runner:
        if args.command == "chdb-http":
            runner.run(_chdb_http(args))
            return 0
        tune_for_batches()  # as `apicat consumer` and the embedded store process do
        work = _consume(args) if args.command == "consume" else _store_only(args)
        result = runner.run(work)
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


def parse_result(stdout: str) -> dict[str, Any]:
    """The ``result:`` line a worker printed."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            parsed: dict[str, Any] = json.loads(line.removeprefix(RESULT_PREFIX))
            return parsed
    raise RuntimeError(f"worker printed no result line; stdout:\n{stdout[-2000:]}")


if __name__ == "__main__":
    sys.exit(main())
