"""Sections (d), (e), (f) of ``make bench``: the event pipeline's ingest rate, cost and lag.

* (d) ``bench_ingest``: synthetic events pre-produced to Kafka, drained by ``EventConsumer``
  worker processes into ``ChdbStore`` (d1) and into ``ClickHouseStore`` over a ``chdb_http``
  endpoint in its own process (d2); plus store-only inserts of the same events.
* (e) ``bench_events_cost``: cache-hit throughput of the gateway with its real embedded
  pipeline vs the same launcher with ``NullEmitter`` (``bench/gateway_launcher.py``).
* (f) ``bench_lag``: mixed traffic through a gateway with events on while the chDB endpoint
  is polled; per event, the time from its ``ts`` to the first poll that sees it.

Results are dataclasses; ``render_*`` return Markdown lines for ``bench.run.render``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka.errors import KafkaError

from bench.gateway_launcher import READY_PREFIX
from bench.load import (
    LOOPBACK,
    ServerProcess,
    Throughput,
    WrkError,
    closed_loop,
    cpu_share,
    cpu_snapshot,
    free_port,
    parse_wrk,
    percentile,
    run_wrk,
    wrk_path,
)
from bench.pipeline import (
    LISTENING_PREFIX,
    MIX,
    PARTITIONS,
    Produced,
    delete_topics,
    kafka_reachable,
    parse_result,
    produce,
    synthetic_records,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_KAFKA = "127.0.0.1:19092"
SERVICES_ENV = REPO_ROOT / ".cache" / "services.env"
KAFKA_ENV_VARS = ("APICAT_BENCH_KAFKA_BOOTSTRAP_SERVERS", "APICAT_TEST_KAFKA_BOOTSTRAP_SERVERS")

TARGET_INGEST_ROWS_S = 50_000.0
TARGET_EVENTS_RATIO = 0.9
TARGET_LAG_P99_S = 5.0

SEED = 20_260_101
MIX_SOURCE = "bench-mix"
MIX_CATEGORIES = ("mix-a", "mix-b")
LAG_CONNECTIONS = 64
LAG_DELAY_MS = 60
"""wrk's per-connection pause after each answer: 64 connections x (60 ms + answer time) caps the
offered load at about 1,000 req/s while answers are fast; a slower gateway gets less."""
LAG_TARGET_RATE = 1_000
LAG_MISS_EVERY = 5
LAG_POLL_S = 0.1
LAG_DRAIN_S = 10.0
KAFKA_WAIT_S = 10.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class EventPlan:
    """Sizes and durations of (d), (e), (f); shorter under ``--quick``."""

    ingest_events: int
    ingest_batches: tuple[int, ...]
    store_only_batch: int
    worker_limit_s: float
    warmup_s: int
    throughput_s: int
    lag_s: int


FULL_EVENTS = EventPlan(
    ingest_events=500_000,
    ingest_batches=(1_000, 10_000),
    store_only_batch=10_000,
    worker_limit_s=90.0,
    warmup_s=2,
    throughput_s=10,
    lag_s=15,
)
QUICK_EVENTS = EventPlan(
    ingest_events=20_000,
    ingest_batches=(1_000, 10_000),
    store_only_batch=10_000,
    worker_limit_s=60.0,
    warmup_s=1,
    throughput_s=2,
    lag_s=4,
)


# --------------------------------------------------------------------------- plumbing


class Servers:
    """The subprocesses of a run: each stopped when its block ends and, at the latest, at exit."""

    def __init__(self, running: list[ServerProcess]) -> None:
        self.running = running

    def pgids(self) -> frozenset[int]:
        return frozenset(server.process.pid for server in self.running)

    @contextlib.contextmanager
    def started(self, server: ServerProcess) -> Iterator[ServerProcess]:
        self.running.append(server)
        try:
            yield server
        finally:
            server.stop()
            self.running.remove(server)


def kafka_bootstrap(explicit: str | None) -> tuple[str, str]:
    """The broker to use and where that came from: flag, environment, services.env, default."""
    if explicit:
        return explicit, "--kafka"
    for name in KAFKA_ENV_VARS:
        if os.environ.get(name):
            return os.environ[name], f"${name}"
    with contextlib.suppress(OSError):
        for line in SERVICES_ENV.read_text().splitlines():
            name, _, value = line.removeprefix("export ").partition("=")
            if name == "APICAT_TEST_KAFKA_BOOTSTRAP_SERVERS" and value.strip():
                return value.strip(), ".cache/services.env"
    return DEFAULT_KAFKA, "default"


def _get(url: str, timeout_s: float = 10.0) -> tuple[int, Mapping[str, str], bytes]:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        headers = {name.lower(): value for name, value in response.headers.items()}
        return response.status, headers, response.read()


def _sql(url: str, sql: str, timeout_s: float = 10.0) -> bytes:
    """One statement through the ClickHouse HTTP interface (TabSeparated unless it says)."""
    request = urllib.request.Request(url + "/", data=sql.encode(), method="POST")
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        body: bytes = response.read()
        return body


def _events_check(gateway: str) -> dict[str, Any]:
    """The gateway's ``/health`` events check (emitter counters)."""
    _, _, body = _get(f"{gateway}/health")
    checks: dict[str, Any] = json.loads(body).get("checks", {})
    events: dict[str, Any] = checks.get("events", {})
    return events


@dataclass(frozen=True)
class WorkerOutput:
    result: dict[str, Any]
    stderr: str

    @property
    def broker_trouble(self) -> str | None:
        """The first line where the worker's Kafka client lost the broker, if any."""
        for line in self.stderr.splitlines():
            if any(marker in line for marker in _BROKER_TROUBLE):
                return line.strip()[:200]
        return None


_BROKER_TROUBLE = ("Unable connect", "KafkaConnectionError", "NodeNotReady", "Connection refused")


def _worker(args: Sequence[str], env: Mapping[str, str], timeout_s: float) -> WorkerOutput:
    """Run ``python -m bench.pipeline ARGS`` and return its result (killed if it overruns)."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bench.pipeline", *args],
            cwd=REPO_ROOT,
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"bench.pipeline {args[0]} overran {timeout_s:g}s") from exc
    if done.returncode != 0:
        raise RuntimeError(
            f"bench.pipeline {args[0]} exited {done.returncode}:\n{done.stderr[-3000:]}"
        )
    return WorkerOutput(parse_result(done.stdout), done.stderr)


# --------------------------------------------------------------------------- (d) ingest


@dataclass(frozen=True)
class IngestRun:
    """One ``EventConsumer`` draining every produced event into one fresh store."""

    store: str
    batch_rows: int
    rows: int
    expected: int
    wall_s: float
    join_s: float
    drain_s: float
    insert_s: float
    inserts: int
    batches: int
    dead_lettered: int
    cpu_s: float
    timed_out: bool

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.drain_s if self.drain_s > 0 else math.nan

    @property
    def passed(self) -> bool:
        return (
            not self.timed_out
            and self.rows == self.expected
            and (self.rows_per_s >= TARGET_INGEST_ROWS_S)
        )


@dataclass(frozen=True)
class StoreOnlyRun:
    """The same events converted (``build_batch``) and inserted without Kafka."""

    store: str
    batch_rows: int
    rows: int
    expected: int
    inserted_rows: int
    convert_s: float
    insert_s: float
    inserts: int
    cpu_s: float

    @property
    def insert_rows_per_s(self) -> float:
        return self.inserted_rows / self.insert_s if self.insert_s > 0 else math.nan

    @property
    def convert_rows_per_s(self) -> float:
        return self.inserted_rows / self.convert_s if self.convert_s > 0 else math.nan


@dataclass
class IngestResult:
    bootstrap: str
    bootstrap_from: str
    skipped: str | None = None
    produced: Produced | None = None
    prefix: str = ""
    consume: list[IngestRun] = field(default_factory=list)
    store_only: list[StoreOnlyRun] = field(default_factory=list)
    interrupted: str | None = None
    notes: list[str] = field(default_factory=list)


CHDB = "ChdbStore (chDB in the worker)"
HTTP = "ClickHouseStore → chdb_http (own process)"


def _ingest_run(store: str, result: Mapping[str, Any]) -> IngestRun:
    fields = IngestRun.__dataclass_fields__
    return IngestRun(store=store, **{k: result[k] for k in fields if k != "store"})


def _store_only_run(store: str, result: Mapping[str, Any]) -> StoreOnlyRun:
    fields = StoreOnlyRun.__dataclass_fields__
    return StoreOnlyRun(store=store, **{k: result[k] for k in fields if k != "store"})


def bench_ingest(
    plan: EventPlan,
    runner: asyncio.Runner,
    work: Path,
    servers: Servers,
    env: Mapping[str, str],
    bootstrap: str,
    bootstrap_from: str,
    result: IngestResult,
) -> None:
    """(d) Fill ``result`` as runs finish, so a failure late on keeps the earlier figures.

    Kafka not reachable (after a few tries over ``KAFKA_WAIT_S``): ``result.skipped``. Kafka
    gone in the middle (a worker fails and the broker no longer answers):
    ``result.interrupted``, the remaining consumer runs are left out, store-only runs still
    happen. Any other failure raises.
    """
    reason = _wait_for_kafka(runner, bootstrap)
    if reason is not None:
        result.skipped = f"Kafka at {bootstrap} ({bootstrap_from}) is not reachable: {reason}"
        print(f"  (d) skipped: {result.skipped}", flush=True)
        return
    base = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=10)
    records = synthetic_records(plan.ingest_events, SEED, base)
    work.mkdir(parents=True, exist_ok=True)
    result.prefix = f"apicat-bench-{os.getpid()}-{uuid.uuid4().hex[:6]}.events."
    common = [
        "--prefix", result.prefix, "--expect", str(plan.ingest_events),
        "--time-limit", str(plan.worker_limit_s),
    ]  # fmt: skip
    limit = plan.worker_limit_s + 60

    def kafka_gone(during: str) -> bool:
        reason = runner.run(kafka_reachable(bootstrap))
        if reason is None:
            return False
        result.interrupted = (
            f"Kafka at {bootstrap} stopped answering during {during} ({reason}); another job "
            "on the machine may have stopped the broker. The runs shown finished before that."
        )
        print(f"  (d) interrupted: {result.interrupted}", flush=True)
        return True

    def consume(store: str, where: Callable[[int], list[str]], batch: int) -> None:
        """One consumer run; once more (fresh store and group) if the broker went away."""
        name = "d1" if store == CHDB else "d2"
        for attempt in (1, 2):
            if result.interrupted:
                return
            group = f"apicat-bench-{uuid.uuid4().hex[:10]}"
            args = ["consume", *where(attempt), "--batch-rows", str(batch), *common,
                    "--bootstrap", bootstrap, "--group", group]  # fmt: skip
            during = f"the {name} consumer run with batch {batch:,}"
            try:
                output = _worker(args, env, limit)
            except RuntimeError:
                if kafka_gone(during):
                    return
                raise
            run = _ingest_run(store, output.result)
            trouble = output.broker_trouble
            if not run.timed_out and trouble is None:
                break
            if kafka_gone(during):
                return
            why = trouble or f"it stalled at {run.rows:,} of {run.expected:,} rows"
            if attempt == 1:
                result.notes.append(
                    f"({name}) batch {batch:,}, first attempt: the consumer lost the broker "
                    f"({why}); another "
                    "job on the machine probably restarted it. Run again with a new group "
                    "and store; the figures shown are the second attempt's."
                )
                print(f"  ({name}) broker trouble, repeating: {why}", flush=True)
            else:
                result.notes.append(
                    f"({name}) batch {batch:,}, second attempt: broker trouble again ({why})."
                )
        result.consume.append(run)
        _print_run(name, run)

    def store_only(store: str, where: list[str]) -> None:
        args = ["store-only", *where, "--seed", str(SEED), "--base", base.isoformat(),
                "--batch-rows", str(plan.store_only_batch), *common]  # fmt: skip
        only = _store_only_run(store, _worker(args, env, limit).result)
        result.store_only.append(only)
        _print_store_only("d1" if store == CHDB else "d2", only)

    try:
        try:
            result.produced = runner.run(produce(bootstrap, result.prefix, records))
        except (KafkaError, OSError, TimeoutError):
            if not kafka_gone("producing"):
                raise
        del records
        if result.produced is not None:
            print(
                f"  (d) produced {result.produced.records:,} events to {result.prefix}* in "
                f"{result.produced.seconds:.1f} s",
                flush=True,
            )
        for batch in plan.ingest_batches:

            def chdb(attempt: int, batch: int = batch) -> list[str]:
                return ["--path", str(work / f"chdb-consume-{batch}-{attempt}")]

            consume(CHDB, chdb, batch)
        store_only(CHDB, ["--path", str(work / "chdb-store-only")])
        for batch in plan.ingest_batches:
            if result.interrupted:
                break
            with contextlib.ExitStack() as endpoints:
                # Each attempt gets its own endpoint and store (a retry must start empty).
                def http(attempt: int, batch: int = batch) -> list[str]:
                    path = work / f"http-consume-{batch}-{attempt}"
                    return ["--url", endpoints.enter_context(_chdb_http(servers, path, env))]

                consume(HTTP, http, batch)
        with _chdb_http(servers, work / "http-store-only", env) as url:
            store_only(HTTP, ["--url", url])
    finally:
        runner.run(delete_topics(bootstrap, result.prefix))


def _wait_for_kafka(runner: asyncio.Runner, bootstrap: str) -> str | None:
    """``None`` once Kafka answers; why not after ``KAFKA_WAIT_S`` (bounded tries)."""
    deadline = time.monotonic() + KAFKA_WAIT_S
    reason: str | None = None
    for _ in range(10):
        reason = runner.run(kafka_reachable(bootstrap))
        if reason is None or time.monotonic() > deadline:
            break
        time.sleep(2.0)
    return reason


@contextlib.contextmanager
def _chdb_http(servers: Servers, path: Path, env: Mapping[str, str]) -> Iterator[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    server = ServerProcess(
        f"chdb-http-{path.name}",
        [sys.executable, "-m", "bench.pipeline", "chdb-http", "--path", str(path)],
        cwd=REPO_ROOT, env=env, log_dir=path.parent, stdout_pipe=True,
    )  # fmt: skip
    with servers.started(server):
        yield server.wait_for_line(LISTENING_PREFIX, timeout_s=60)


def _print_run(name: str, run: IngestRun) -> None:
    print(
        f"  ({name}) consumer, batch {run.batch_rows:,}: {run.rows:,}/{run.expected:,} rows, "
        f"{run.rows_per_s:,.0f} rows/s (drain {run.drain_s:.1f} s, inserts {run.insert_s:.1f} s)",
        flush=True,
    )


def _print_store_only(name: str, run: StoreOnlyRun) -> None:
    print(
        f"  ({name}) store-only, batch {run.batch_rows:,}: insert "
        f"{run.insert_rows_per_s:,.0f} rows/s, convert {run.convert_rows_per_s:,.0f} rows/s",
        flush=True,
    )


# --------------------------------------------------------------------------- (e) + (f) gateways


def mixed_config(base: Mapping[str, Any], upstream: str) -> dict[str, Any]:
    """``base`` (the (a)-(c) config) plus two categories serving all eight endpoints.

    ``mix-a``: primary ``bench-mix`` (a few ms of latency, some invalid answers) falling back
    to ``bench``; ``mix-b``: primary ``bench``.
    """
    from schemas.endpoints import ENDPOINTS

    def endpoint(path: str, source: str, fallback: str | None) -> dict[str, Any]:
        return {
            "path": path,
            "primary_apis": [
                {"source_name": source, "base_url": f"{upstream}/{source}/v1", "priority": 1}
            ],
            "fallback_apis": {source: [f"{upstream}/{fallback}/v1"]} if fallback else {},
            "ttl_seconds": 3600,
            "timeout_seconds": 5,
        }

    categories = list(base["categories"])
    for name, source, fallback in (("mix-a", MIX_SOURCE, "bench"), ("mix-b", "bench", None)):
        categories.append(
            {"name": name, "endpoints": [endpoint(s.path, source, fallback) for s in ENDPOINTS]}
        )
    return {"categories": categories}


def mix_knobs() -> dict[str, object]:
    """The demo source only (e)/(f) use: lognormal 2 ms (p99 15 ms), 5 % invalid answers."""
    return {
        MIX_SOURCE: {
            "latency": {"kind": "lognormal", "median_ms": 2.0, "p99_ms": 15.0},
            "invalid_schema_rate": 0.05,
            "seed": 7,
        }
    }


@dataclass(frozen=True)
class Launched:
    url: str
    query_url: str | None
    command: list[str]
    pid: int

    def cpu_s(self) -> float:
        """CPU-seconds (user + system, every thread) used so far by the gateway process and
        its children (with events on, the embedded store process)."""
        total, pending = 0, [self.pid]
        while pending:
            pid = pending.pop()
            try:
                with open(f"/proc/{pid}/stat") as file:
                    fields = file.read().rsplit(")", 1)[1].split()
                for task in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{task}/children") as children:
                        pending.extend(int(child) for child in children.read().split())
            except OSError:
                continue  # it ended while we looked
            total += int(fields[11]) + int(fields[12])
        return total / CLOCK_TICKS


@contextlib.contextmanager
def launched_gateway(
    servers: Servers, work: Path, config_path: Path, events: str, env: Mapping[str, str], tag: str
) -> Iterator[Launched]:
    """``bench.gateway_launcher`` in its own process group with its own data dir."""
    data_dir = work / f"data-{tag}"
    data_dir.mkdir()
    port = free_port()
    command = [
        sys.executable, "-m", "bench.gateway_launcher", "--config", str(config_path),
        "--host", LOOPBACK, "--port", str(port), "--events", events,
    ]  # fmt: skip
    server = ServerProcess(
        f"gateway-{tag}",
        command,
        cwd=REPO_ROOT,
        env={**env, "APICAT_DATA_DIR": str(data_dir)},
        log_dir=work,
        stdout_pipe=True,
    )
    with servers.started(server):
        line = server.wait_for_line(READY_PREFIX, timeout_s=60)
        url, _, rest = line.partition(" ")
        query = rest.rpartition("query=")[2]
        server.wait_for_http(f"{url}/livez")
        yield Launched(url, None if query == "None" else query, command, server.process.pid)


@dataclass
class EventsCostResult:
    on: Throughput
    off: Throughput
    others_cores: dict[str, float]
    gateway_cpu_s: dict[str, float]
    """CPU the gateway process and its store process used during each measured run."""
    events_on: dict[str, Any]
    stored_events: int
    command: list[str]

    @property
    def ratio(self) -> float:
        return self.on.req_per_s / self.off.req_per_s if self.off.req_per_s else math.nan

    @property
    def passed(self) -> bool:
        clean = all(run.non_2xx == 0 and run.socket_errors == 0 for run in (self.on, self.off))
        return clean and self.ratio >= TARGET_EVENTS_RATIO


def bench_events_cost(
    plan: EventPlan,
    runner: asyncio.Runner,
    work: Path,
    servers: Servers,
    config_path: Path,
    env: Mapping[str, str],
    hit_path: str,
    use_wrk: bool,
) -> EventsCostResult:
    """(e) The same launcher twice, events on and off; warm one key, wrk each in turn."""
    with (
        launched_gateway(servers, work, config_path, "on", env, "events-on") as on,
        launched_gateway(servers, work, config_path, "off", env, "events-off") as off,
    ):
        for gateway in (on, off):
            _get(gateway.url + hit_path)
            _, headers, _ = _get(gateway.url + hit_path)
            if headers.get("x-cache") != "HIT":
                raise RuntimeError(f"{gateway.url}{hit_path} is not a cache hit after warming")

        def measure(url: str, seconds: int) -> Throughput:
            if use_wrk:
                return run_wrk(url, threads=1, connections=32, duration_s=seconds)
            return runner.run(closed_loop(url, connections=32, duration_s=seconds))

        runs: dict[str, Throughput] = {}
        others: dict[str, float] = {}
        gateway_cpu: dict[str, float] = {}
        for name, gateway in (("on", on), ("off", off)):
            measure(gateway.url + hit_path, plan.warmup_s)  # discarded
            before = cpu_snapshot(servers.pgids())
            own_before = gateway.cpu_s()
            runs[name] = measure(gateway.url + hit_path, plan.throughput_s)
            gateway_cpu[name] = gateway.cpu_s() - own_before
            others[name] = cpu_share(before, cpu_snapshot(servers.pgids())).others_cores
            print(
                f"  (e) events {name}: {runs[name].req_per_s:,.0f} req/s, "
                f"p50 {runs[name].p50_ms:.2f} ms, p99 {runs[name].p99_ms:.2f} ms, gateway CPU "
                f"{gateway_cpu[name] / max(runs[name].requests, 1) * 1e6:.0f} µs/request",
                flush=True,
            )
        time.sleep(2.5)  # over two linger periods (1 s embedded): the last batch is stored
        events_on = _events_check(on.url)
        stored = 0
        if on.query_url:
            counts = " UNION ALL ".join(
                f"SELECT count() AS n FROM apicat.{table} FINAL" for table in _LAG_TABLES
            )
            stored = int(_sql(on.query_url, f"SELECT sum(n) FROM ({counts})").strip())
        return EventsCostResult(
            runs["on"], runs["off"], others, gateway_cpu, events_on, stored, on.command
        )


# --------------------------------------------------------------------------- (f) lag


@dataclass
class LagResult:
    load: Throughput
    lags_ms: list[float]
    per_table: dict[str, int]
    stored: dict[str, int]
    polls: int
    poll_p50_ms: float
    poll_max_ms: float
    poll_errors: int
    missed_polls: int
    duration_s: int
    miss_every: int
    events_check: dict[str, Any]
    statuses: dict[str, int]
    lua: str

    @property
    def p50_ms(self) -> float:
        return percentile(self.lags_ms, 50)

    @property
    def p99_ms(self) -> float:
        return percentile(self.lags_ms, 99)

    @property
    def max_ms(self) -> float:
        return max(self.lags_ms, default=math.nan)

    @property
    def complete(self) -> bool:
        return all(self.per_table.get(t, 0) >= n for t, n in self.stored.items())

    @property
    def passed(self) -> bool:
        return self.complete and bool(self.lags_ms) and self.p99_ms <= TARGET_LAG_P99_S * 1000


HIT_PATHS = (
    "/api/v1/home?category=bench",
    "/api/v1/home?category=mix-a",
    "/api/v1/home?category=mix-b",
    "/api/v1/movie?category=mix-a",
    "/api/v1/anime-terbaru?category=mix-b",
    "/api/v1/jadwal-rilis?category=mix-a",
    "/api/v1/jadwal-rilis/senin?category=mix-b",
    "/api/v1/search?category=mix-b&q=naruto",
    "/api/v1/anime-detail?category=mix-a&slug=one-piece",
    "/api/v1/episode-detail?category=mix-b&slug=one-piece-1",
)
MISS_PREFIXES = (
    "/api/v1/search?category=mix-a&q=",
    "/api/v1/anime-detail?category=mix-b&slug=",
    "/api/v1/search?category=bench&q=",
    "/api/v1/episode-detail?category=mix-a&slug=",
)


def lag_lua(run_id: str) -> str:
    """The wrk script: every ``LAG_MISS_EVERY``-th request a new key (miss), else a warm one."""
    hits = ",\n  ".join(json.dumps(path) for path in HIT_PATHS)
    misses = ",\n  ".join(json.dumps(prefix) for prefix in MISS_PREFIXES)
    return f"""-- generated by bench/event_sections.py for section (f)
local hits = {{
  {hits}
}}
local misses = {{
  {misses}
}}
local n = 0
request = function()
  n = n + 1
  if n % {LAG_MISS_EVERY} == 0 then
    local m = misses[math.floor(n / {LAG_MISS_EVERY}) % #misses + 1]
    return wrk.format(nil, m .. "lag-{run_id}-" .. n)
  end
  return wrk.format(nil, hits[n % #hits + 1])
end
delay = function()
  return {LAG_DELAY_MS}
end
"""


_LAG_TABLES = ("requests", "upstream_attempts", "validation_failures")


def _poll_sql(high_water_us: Mapping[str, int]) -> str:
    parts = [
        f"SELECT '{table}', event_id, toUnixTimestamp64Micro(ts), "
        f"toUnixTimestamp64Micro(now64(6)) FROM apicat.{table} "
        f"WHERE ts >= fromUnixTimestamp64Micro({high_water_us[table]})"
        for table in _LAG_TABLES
    ]
    return " UNION ALL ".join(parts) + " FORMAT TabSeparated"


class LagPoller:
    """Sees each event once: the first poll whose answer holds it gives its lag.

    lag = ``now64()`` of that poll (the engine's clock when the query started, so what the
    query can see) minus the event's ``ts`` (the gateway's clock when it built the event);
    one clock, one machine.
    """

    def __init__(self, query_url: str, start_us: int) -> None:
        self.query_url = query_url
        self.high_water = dict.fromkeys(_LAG_TABLES, start_us)
        self.seen: set[str] = set()
        self.lags_ms: list[float] = []
        self.per_table: dict[str, int] = dict.fromkeys(_LAG_TABLES, 0)
        self.poll_ms: list[float] = []
        self.errors = 0
        self.last_new = time.monotonic()

    def poll(self) -> int:
        """One poll; returns how many events it saw for the first time."""
        started = time.perf_counter()
        try:
            body = _sql(self.query_url, _poll_sql(self.high_water), timeout_s=5.0)
        except OSError:
            self.errors += 1
            return 0
        self.poll_ms.append((time.perf_counter() - started) * 1000)
        new = 0
        for line in body.splitlines():
            table, event_id, ts_raw, now_raw = line.decode().split("\t")
            if event_id in self.seen:
                continue
            self.seen.add(event_id)
            ts_us, now_us = int(ts_raw), int(now_raw)
            self.lags_ms.append((now_us - ts_us) / 1000)
            self.per_table[table] += 1
            self.high_water[table] = max(self.high_water[table], ts_us)
            new += 1
        if new:
            self.last_new = time.monotonic()
        return new


def bench_lag(
    plan: EventPlan,
    work: Path,
    servers: Servers,
    config_path: Path,
    env: Mapping[str, str],
) -> LagResult:
    """(f) wrk with a mixing script against a gateway with events on; poll the store."""
    binary = wrk_path()
    if binary is None:
        raise WrkError("wrk is not installed; (f) needs it for the mixed-URL load")
    run_id = uuid.uuid4().hex[:8]
    script = work / "lag-mix.lua"
    script.write_text(lag_lua(run_id))
    with launched_gateway(servers, work, config_path, "on", env, "lag") as gateway:
        if gateway.query_url is None:
            raise RuntimeError("the gateway did not start the embedded store (Kafka mode?)")
        for path in HIT_PATHS:  # warm: MISS, then the key is a HIT for the whole run
            status, _, body = _get(gateway.url + path)
            if status != 200:
                raise RuntimeError(f"warming {path} answered {status}: {body[:200]!r}")
        time.sleep(1.5)  # the warm-up's events land before the measured window opens
        start_us = time.time_ns() // 1000
        poller = LagPoller(gateway.query_url, start_us)
        command = [
            binary, "-t1", f"-c{LAG_CONNECTIONS}", f"-d{plan.lag_s}s", "--latency",
            "-s", str(script), gateway.url,
        ]  # fmt: skip
        wrk = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
        )  # fmt: skip
        missed = 0
        try:
            started = time.monotonic()
            wrk_done_at: float | None = None
            max_polls = int((plan.lag_s + LAG_DRAIN_S + 30) / LAG_POLL_S)
            for i in range(max_polls):
                poller.poll()
                now = time.monotonic()
                if wrk_done_at is None and wrk.poll() is not None:
                    wrk_done_at = now
                if wrk_done_at is not None and (
                    now - poller.last_new > 2.5 or now - wrk_done_at > LAG_DRAIN_S
                ):
                    break
                if now - started > plan.lag_s + LAG_DRAIN_S + 30:
                    break
                next_at = started + (i + 1) * LAG_POLL_S
                if next_at > now:
                    time.sleep(next_at - now)
                else:
                    missed += 1
            out, err = wrk.communicate(timeout=30)
        finally:
            if wrk.poll() is None:
                wrk.kill()
                wrk.wait(timeout=10)
        if wrk.returncode != 0:
            raise WrkError(f"wrk exited {wrk.returncode}: {err.strip()}")
        load = parse_wrk(out)
        poller.poll()  # the last events, for the completeness check below
        stored: dict[str, int] = {}
        for table in _LAG_TABLES:
            sql = (
                f"SELECT count() FROM apicat.{table} FINAL "
                f"WHERE ts >= fromUnixTimestamp64Micro({start_us})"
            )
            stored[table] = int(_sql(gateway.query_url, sql).strip())
        statuses_raw = _sql(
            gateway.query_url,
            "SELECT cache_status, count() FROM apicat.requests "
            f"WHERE ts >= fromUnixTimestamp64Micro({start_us}) GROUP BY cache_status",
        )
        statuses = {
            name: int(count)
            for name, count in (line.split("\t") for line in statuses_raw.decode().splitlines())
        }
        events_check = _events_check(gateway.url)
    result = LagResult(
        load=load,
        lags_ms=poller.lags_ms,
        per_table=poller.per_table,
        stored=stored,
        polls=len(poller.poll_ms),
        poll_p50_ms=percentile(poller.poll_ms, 50),
        poll_max_ms=max(poller.poll_ms, default=math.nan),
        poll_errors=poller.errors,
        missed_polls=missed,
        duration_s=plan.lag_s,
        miss_every=LAG_MISS_EVERY,
        events_check=events_check,
        statuses=statuses,
        lua=script.name,
    )
    print(
        f"  (f) {load.req_per_s:,.0f} req/s; lag p50 {result.p50_ms:.0f} ms, "
        f"p99 {result.p99_ms:.0f} ms, max {result.max_ms:.0f} ms over "
        f"{len(result.lags_ms):,} events",
        flush=True,
    )
    return result


# --------------------------------------------------------------------------- report


def _ms(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.0f} ms"


def _verdict(passed: bool) -> str:
    return "**PASS**" if passed else "**MISS**"


def result_rows(
    ingest: IngestResult | None,
    cost: EventsCostResult | None,
    lag: LagResult | None,
) -> list[str]:
    """Rows of the Results table for (d), (e), (f)."""
    rows: list[str] = []
    target = f"≥ {TARGET_INGEST_ROWS_S:,.0f} events/s"
    if ingest is not None and ingest.skipped:
        rows.append(f"| d | consumer ingest (Kafka → store) | {target} | skipped: Kafka not "
                    "reachable | **SKIPPED** |")  # fmt: skip
    elif ingest is not None and ingest.consume:
        for run in ingest.consume:
            name = "d1" if run.store == CHDB else "d2"
            into = "chDB" if run.store == CHDB else "clickhouse-connect → chdb_http"
            rows.append(
                f"| {name} | consumer ingest, Kafka → {into}, batch {run.batch_rows:,} "
                f"(end to end) | {target} | {run.rows_per_s:,.0f} events/s "
                f"({run.rows:,}/{run.expected:,} rows) | {_verdict(run.passed)} |"
            )
    else:
        rows.append(f"| d | consumer ingest | {target} | not measured | **ERROR** |")
    if ingest is not None and ingest.interrupted:
        rows.append(f"| d | remaining consumer runs | {target} | not run: Kafka went away "
                    "mid-run | **SKIPPED** |")  # fmt: skip
    if cost is not None:
        rows.append(
            f"| e | cache-hit throughput, events on / off | ≥ {TARGET_EVENTS_RATIO:.2f}x | "
            f"{cost.ratio:.2f}x ({cost.on.req_per_s:,.0f} vs {cost.off.req_per_s:,.0f} req/s) "
            f"| {_verdict(cost.passed)} |"
        )
    else:
        rows.append(
            f"| e | cache-hit throughput, events on / off | ≥ {TARGET_EVENTS_RATIO:.2f}x | "
            "not measured | **ERROR** |"
        )
    if lag is not None:
        rows.append(
            f"| f | event lag emitted → queryable, p99 (embedded, "
            f"{lag.load.req_per_s:,.0f} req/s mixed) | ≤ {TARGET_LAG_P99_S:g} s | "
            f"{_ms(lag.p99_ms)} (p50 {_ms(lag.p50_ms)}) | {_verdict(lag.passed)} |"
        )
    else:
        rows.append(
            f"| f | event lag emitted → queryable, p99 | ≤ {TARGET_LAG_P99_S:g} s | "
            "not measured | **ERROR** |"
        )
    return rows


def _ingest_cpu_budget(runs: Sequence[IngestRun]) -> str:
    """What the best run's CPU per event means for the target on this machine."""
    best = max(runs, key=lambda run: run.rows_per_s if run.rows else 0.0)
    per_event_us = best.cpu_s / best.rows * 1e6 if best.rows else math.nan
    cores = per_event_us * TARGET_INGEST_ROWS_S / 1e6
    return (
        f"CPU budget: the best run's worker (Kafka fetch and decompression, validation and "
        f"conversion, chDB's insert threads) used {per_event_us:.0f} µs of CPU per event, so "
        f"{TARGET_INGEST_ROWS_S:,.0f} events/s would keep {cores:.2f} cores busy for the worker "
        f"alone, before the broker's own share, on a machine with {os.cpu_count()}. The "
        "events/s above are therefore bounded by the CPU of this machine as much as by the "
        "code; see docs/ARCHITECTURE.md for where that time goes."
    )


def render_ingest(ingest: IngestResult, plan: EventPlan) -> list[str]:
    lines = ["### (d) Consumer ingest", ""]
    add = lines.append
    if ingest.skipped:
        add(f"> **Skipped**: {ingest.skipped}. Start it with `scripts/services.sh start` (or "
            "point `--kafka` / `$APICAT_TEST_KAFKA_BOOTSTRAP_SERVERS` at a broker) and run "
            "again.")  # fmt: skip
        add("")
        return lines
    produced = ingest.produced
    if produced is not None:
        mix = ", ".join(f"{t} {n:,}" for t, n in sorted(produced.per_topic.items()))
        add(
            f"{produced.records:,} synthetic events ({mix}; "
            f"{produced.payload_bytes / produced.records:,.0f} B of JSON each on average) were "
            f"produced to `{ingest.prefix}<type>` ({PARTITIONS} partitions per topic, keyed "
            f"like the gateway, lz4, acks=all) on Kafka at `{ingest.bootstrap}` before any "
            f"timing ({produced.seconds:.1f} s, not counted). Every run below reads them all "
            "as a new consumer group into a store in a fresh directory."
        )
        add("")
    if ingest.consume:
        add(
            "| store | batch rows | rows stored (FINAL) | **events/s end to end** | drain | "
            "inserts (count, time) | deliveries | group join | worker CPU |"
        )
        add("|---|---|---|---|---|---|---|---|---|")
        for run in ingest.consume:
            add(
                f"| {run.store} | {run.batch_rows:,} | {run.rows:,} / {run.expected:,} | "
                f"**{run.rows_per_s:,.0f}** | {run.drain_s:.2f} s | {run.inserts} in "
                f"{run.insert_s:.2f} s | {run.batches} | {run.join_s:.2f} s | "
                f"{run.cpu_s:.1f} CPU-s |"
            )
        add("")
        add(_ingest_cpu_budget(ingest.consume))
        add("")
    if ingest.interrupted:
        add(f"> **Interrupted**: {ingest.interrupted}")
        add("")
    for note in ingest.notes:
        add(f"> {note}")
        add("")
    if ingest.store_only:
        add("Store only, the same events without Kafka (converted, then inserted, "
            f"{plan.store_only_batch:,} events per batch, one insert per table):")  # fmt: skip
        add("")
        add("| store | rows stored (FINAL) | **insert rows/s** | insert time | "
            "convert (`build_batch`) rows/s | worker CPU |")  # fmt: skip
        add("|---|---|---|---|---|---|")
        for only in ingest.store_only:
            add(
                f"| {only.store} | {only.rows:,} / {only.expected:,} | "
                f"**{only.insert_rows_per_s:,.0f}** | {only.insert_s:.2f} s ({only.inserts} "
                f"inserts) | {only.convert_rows_per_s:,.0f} | {only.cpu_s:.1f} CPU-s |"
            )
        add("")
    return lines


def render_events_cost(cost: EventsCostResult, plan: EventPlan, hit_path: str) -> list[str]:
    lines = ["### (e) Cache-hit throughput, events on vs off", ""]
    add = lines.append
    add(
        f"`wrk -t1 -c32 -d{plan.throughput_s}s --latency` on `{hit_path}` (warm key), after a "
        f"discarded {plan.warmup_s} s warm-up, against two gateways run by "
        "`bench/gateway_launcher.py` with the same config and settings: **on** builds the "
        "emitter with `start_pipeline` as `apicat serve` does (embedded: a store process it "
        "supervises, with chDB in the data dir and its ClickHouse HTTP endpoint), **off** passes "
        "`gateway.events.NullEmitter()`. (a)'s gateway, `apicat serve`, runs with events on "
        "like the **on** row."
    )
    add("")
    add(
        "| events | requests | req/s | p50 | p99 | non-2xx | socket errors | gateway CPU per "
        "request | gateway CPU | others' CPU |"
    )
    add("|---|---|---|---|---|---|---|---|---|---|")
    per_request: dict[str, float] = {}
    for name, run in (("on", cost.on), ("off", cost.off)):
        cpu_s = cost.gateway_cpu_s.get(name, math.nan)
        per_request[name] = cpu_s / max(run.requests, 1) * 1e6
        add(
            f"| {name} | {run.requests:,} | {run.req_per_s:,.0f} | {run.p50_ms:.2f} ms | "
            f"{run.p99_ms:.2f} ms | {run.non_2xx} | {run.socket_errors} | "
            f"{per_request[name]:,.0f} µs | {cpu_s / run.duration_s:.2f} cores | "
            f"{cost.others_cores.get(name, math.nan):.2f} cores |"
        )
    add("")
    events = cost.events_on
    add(
        "Gateway CPU per request = the user + system CPU of the gateway process and its store "
        "process (all threads) during the measured run / requests answered; unlike req/s it does "
        "not depend on how much CPU other jobs left over. Events-on gateway afterwards: emitted "
        f"{events.get('emitted_total', 0):,}, sent to the store "
        f"{events.get('sent_total', 0):,}, journaled {events.get('spilled_total', '?')}, "
        f"dropped {events.get('dropped_total', '?')}; its store holds "
        f"{cost.stored_events:,} events (FINAL; the warm-up's `request`s and its one "
        "`upstream_attempt` included)."
    )
    add("")
    add(
        f"Gateway CPU per request, on / off: **{per_request['on'] / per_request['off']:.2f}x** "
        f"(+{per_request['on'] - per_request['off']:,.0f} µs a request). The events-on "
        "gateway's extra work runs mostly in its store process, so req/s stays close to the "
        "events-off figure only while the machine has CPU to spare for them (gateway CPU "
        "column); when other jobs take it, the req/s ratio drops."
    )
    add("")
    return lines


def render_lag(lag: LagResult) -> list[str]:
    lines = ["### (f) End-to-end event lag", ""]
    add = lines.append
    load = lag.load
    mix = ", ".join(f"{name} {n:,}" for name, n in sorted(lag.statuses.items()))
    add(
        f"One gateway with events on (embedded pipeline, launcher as in (e)); load: `wrk -t1 "
        f"-c{LAG_CONNECTIONS} -d{lag.duration_s}s -s {lag.lua}`, every connection pausing "
        f"{LAG_DELAY_MS} ms after each answer, so at most {LAG_CONNECTIONS} / ({LAG_DELAY_MS} "
        f"ms + answer time) ≈ {LAG_CONNECTIONS * 1000 / LAG_DELAY_MS:,.0f} req/s while answers "
        "are fast, and what the gateway can do when it is the bottleneck; every "
        f"{lag.miss_every}th request a new key (a miss through the demo upstreams), the rest "
        f"spread over {len(HIT_PATHS)} warm URLs of 3 categories and 8 endpoints. Achieved "
        f"**{load.req_per_s:,.0f} req/s** ({load.requests:,} requests, p50 "
        f"{load.p50_ms:.2f} ms, p99 {load.p99_ms:.2f} ms, non-2xx {load.non_2xx}, socket "
        f"errors {load.socket_errors}); request events by cache status: {mix}."
    )
    add("")
    if load.req_per_s < 0.9 * LAG_TARGET_RATE:
        add(
            f"**{LAG_TARGET_RATE:,} req/s was not reached**: the load is closed-loop, and the "
            f"gateway answered {load.req_per_s:,.0f} req/s at a p50 of {load.p50_ms:.0f} ms; "
            "with events on it is the bottleneck on this 2-core machine, shared with wrk, "
            "the demo upstreams and other jobs (see (e) and the CPU table). The lag below is "
            "therefore measured with the gateway saturated."
        )
        add("")
    add("| events seen | lag p50 | **lag p99** | lag max | polls | poll answer p50 / max |")
    add("|---|---|---|---|---|---|")
    add(
        f"| {len(lag.lags_ms):,} | {_ms(lag.p50_ms)} | **{_ms(lag.p99_ms)}** | "
        f"{_ms(lag.max_ms)} | {lag.polls} (errors {lag.poll_errors}, late {lag.missed_polls}) "
        f"| {lag.poll_p50_ms:.1f} / {lag.poll_max_ms:.1f} ms |"
    )
    add("")
    seen = ", ".join(
        f"{table} {lag.per_table.get(table, 0):,}/{stored:,}"
        for table, stored in lag.stored.items()
    )
    add(
        f"Events seen by the poller / stored in the window (FINAL): {seen}. Emitter "
        f"afterwards: emitted {lag.events_check.get('emitted_total', '?'):,}, journaled "
        f"{lag.events_check.get('spilled_total', '?')}, dropped "
        f"{lag.events_check.get('dropped_total', '?')}."
    )
    add("")
    return lines


def method_notes(plan: EventPlan) -> list[str]:
    share = ", ".join(f"{t} {p:.0%}" for t, p in MIX.items())
    return [
        f"- (d) Events: {share} by count, made from 2,000 event-model instances (varied "
        "categories, sources, endpoints, outcomes, cache statuses, 1-3 failed rules) with a "
        "new event_id/ts/request_id/trace_id each, encoded by the models' own serializer. "
        "Each consumer run is `python -m bench.pipeline consume` (its own process: one chDB "
        "engine per process) running `consumers.kafka_consumer.EventConsumer` with "
        "`batch_rows` as shown and `batch_s` 1 s; its store is wrapped to time `insert` and to "
        "note the first `max_offsets` call (made by the rebalance listener on assignment). "
        "**events/s end to end** = rows / drain, drain = from partition assignment to the "
        "moment a `count() ... FINAL` over the three tables returns every event (Kafka fetch, "
        "lz4 decompression, validation of the JSON bytes, insert and offset commit of every "
        "batch, and the last partial batch's wait of up to `batch_s` for more events; the "
        "consumer polls and converts the next batches while one is inserted, and what it "
        "converted meanwhile goes into the next insert, so deliveries (insert + commit rounds) "
        "can be fewer than `rows / batch_rows`; the "
        "FINAL count is issued once the consumer's own counter reached the total, so it does "
        "not compete with the inserts). Group join is shown apart. d2's store is "
        "`ClickHouseStore(url, compress=False)` (as `gateway.pipeline.open_store` uses the "
        "embedded endpoint) against `python -m bench.pipeline chdb-http`, a `ChdbStore` served "
        "by `consumers.chdb_http.serve_chdb_http` in its own process, so the HTTP server and "
        "chDB do not share the consumer's interpreter. Store-only runs convert with "
        "`build_batch` and insert with the store's `insert`, timed apart. Topics are deleted "
        "afterwards. The broker is not one of the benchmark's processes: its CPU counts as "
        '"others" in the CPU table. A consumer run whose Kafka client lost the broker (its '
        "stderr says so, or it stalled 20 s) is repeated once with a new group and store, "
        "and a note says so.",
        f"- (e) Both gateways run side by side (the idle one costs nothing measurable); each "
        f"is warmed on its key, then wrk runs {plan.warmup_s} s (discarded) and "
        f"{plan.throughput_s} s on one, then the other. Same server settings as `apicat "
        "serve` (`gateway.server.serve_app`: uvicorn, httptools, uvloop). With events on, each "
        "request builds a `request` event, the emitter batches it (5,000 events or 1 s, "
        "whichever comes first) and posts the batch to the store process, which converts and "
        "inserts it into chDB.",
        f"- (f) Lag of one event = `now64()` of the first poll whose answer holds it (the "
        "engine's clock when that query started) - the event's `ts` (set when the gateway "
        f"built it). A poll every {LAG_POLL_S * 1000:.0f} ms (`bench/event_sections.py`: "
        "`LagPoller`) asks the gateway's chdb_http endpoint for the event ids and ts of "
        "`requests`, `upstream_attempts` and `validation_failures` rows at or after the "
        "newest ts it has seen per table, and counts each event id once. So the lag includes "
        "up to one poll interval of sampling (more when a poll is late) and is an upper bound "
        "by at most that; ts has millisecond precision. Polling continues after wrk ends "
        "until no new event appears for 2.5 s (the emitter's linger is 1 s) "
        f"(at most {LAG_DRAIN_S:g} s), and the events seen are checked against a FINAL "
        "count of the window.",
    ]
