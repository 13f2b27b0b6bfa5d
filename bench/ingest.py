"""Section (d) of ``make bench``: ``EventConsumer`` ingest from Kafka into both stores.

Synthetic events are produced once to fresh topics. Every consumer configuration (d1:
``ChdbStore`` in the worker; d2: ``ClickHouseStore`` over a ``chdb_http`` endpoint in its own
process; each at every batch size) then drains them ``EventPlan.repeats`` times, round robin,
each run as a new consumer group into a fresh store; then one store-only run per store. Each
worker is a ``python -m bench.pipeline`` subprocess (one chDB engine per process).

Results are dataclasses; ``ingest_rows`` and ``render_ingest`` return Markdown lines for
``bench.run.render``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

from aiokafka.errors import KafkaError

from bench.event_sections import REPO_ROOT, EventPlan, Servers
from bench.load import ServerProcess
from bench.pipeline import (
    LISTENING_PREFIX,
    MIX,
    PARTITIONS,
    Produced,
    Record,
    delete_topics,
    kafka_reachable,
    parse_result,
    produce,
    synthetic_records,
)

DEFAULT_KAFKA = "127.0.0.1:19092"
SERVICES_ENV = REPO_ROOT / ".cache" / "services.env"
KAFKA_ENV_VARS = ("APICAT_BENCH_KAFKA_BOOTSTRAP_SERVERS", "APICAT_TEST_KAFKA_BOOTSTRAP_SERVERS")
KAFKA_WAIT_S = 10.0
TARGET_INGEST_ROWS_S = 50_000.0
SEED = 20_260_101

CHDB = "ChdbStore (chDB in the worker)"
HTTP = "ClickHouseStore → chdb_http (own process)"
STORES = (CHDB, HTTP)


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


def store_label(store: str) -> str:
    """``d1`` for the in-worker chDB store, ``d2`` for the store behind chdb_http."""
    return "d1" if store == CHDB else "d2"


# --------------------------------------------------------------------------- workers


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


# --------------------------------------------------------------------------- results


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
    def complete(self) -> bool:
        """Every produced event stored, in time."""
        return not self.timed_out and self.rows == self.expected


@dataclass(frozen=True)
class IngestConfig:
    """One consumer configuration (store, batch size) and its repeated runs, in run order."""

    store: str
    batch_rows: int
    runs: tuple[IngestRun, ...]

    @property
    def rows_per_s(self) -> float:
        """The median events/s of the runs: the configuration's result."""
        return median(run.rows_per_s for run in self.runs)

    @property
    def drain_s(self) -> float:
        return median(run.drain_s for run in self.runs)

    @property
    def passed(self) -> bool:
        complete = all(run.complete for run in self.runs)
        return complete and self.rows_per_s >= TARGET_INGEST_ROWS_S


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
    """Every consumer run, in the order they ran."""
    store_only: list[StoreOnlyRun] = field(default_factory=list)
    interrupted: str | None = None
    notes: list[str] = field(default_factory=list)

    def configs(self) -> list[IngestConfig]:
        """The consumer runs grouped by (store, batch size), d1 before d2, small batch first."""
        grouped: dict[tuple[str, int], list[IngestRun]] = {}
        for run in self.consume:
            grouped.setdefault((run.store, run.batch_rows), []).append(run)
        return [
            IngestConfig(store, batch, tuple(runs))
            for (store, batch), runs in sorted(
                grouped.items(), key=lambda item: (STORES.index(item[0][0]), item[0][1])
            )
        ]


def _ingest_run(store: str, result: Mapping[str, Any]) -> IngestRun:
    fields = IngestRun.__dataclass_fields__
    return IngestRun(store=store, **{k: result[k] for k in fields if k != "store"})


def _store_only_run(store: str, result: Mapping[str, Any]) -> StoreOnlyRun:
    fields = StoreOnlyRun.__dataclass_fields__
    return StoreOnlyRun(store=store, **{k: result[k] for k in fields if k != "store"})


# --------------------------------------------------------------------------- (d) runs


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
    work.mkdir(parents=True, exist_ok=True)
    result.prefix = f"apicat-bench-{os.getpid()}-{uuid.uuid4().hex[:6]}.events."
    runs = _IngestRuns(plan, runner, work, servers, env, bootstrap, base, result)
    try:
        # Passed straight in, so the records are freed before the consumers run.
        runs.produce(synthetic_records(plan.ingest_events, SEED, base))
        runs.consume_all()
        for store in STORES:
            runs.store_only(store)
    finally:
        runner.run(delete_topics(bootstrap, result.prefix))


@dataclass
class _IngestRuns:
    """(d)'s worker runs against one produced topic prefix; each recorded in ``result``."""

    plan: EventPlan
    runner: asyncio.Runner
    work: Path
    servers: Servers
    env: Mapping[str, str]
    bootstrap: str
    base: dt.datetime
    result: IngestResult

    @property
    def common(self) -> list[str]:
        return [
            "--prefix", self.result.prefix, "--expect", str(self.plan.ingest_events),
            "--time-limit", str(self.plan.worker_limit_s),
        ]  # fmt: skip

    @property
    def limit_s(self) -> float:
        return self.plan.worker_limit_s + 60

    def kafka_gone(self, during: str) -> bool:
        """Whether the broker stopped answering; if so, mark the result interrupted."""
        reason = self.runner.run(kafka_reachable(self.bootstrap))
        if reason is None:
            return False
        self.result.interrupted = (
            f"Kafka at {self.bootstrap} stopped answering during {during} ({reason}); another "
            "job on the machine may have stopped the broker. The runs shown finished before that."
        )
        print(f"  (d) interrupted: {self.result.interrupted}", flush=True)
        return True

    def produce(self, records: Sequence[Record]) -> None:
        try:
            produced = self.runner.run(produce(self.bootstrap, self.result.prefix, records))
        except (KafkaError, OSError, TimeoutError):
            if not self.kafka_gone("producing"):
                raise
            return
        self.result.produced = produced
        print(
            f"  (d) produced {produced.records:,} events to {self.result.prefix}* in "
            f"{produced.seconds:.1f} s",
            flush=True,
        )

    def consume_all(self) -> None:
        """Every configuration ``plan.repeats`` times, round robin, so drift hits all alike."""
        for repeat in range(1, self.plan.repeats + 1):
            for store in STORES:
                for batch in self.plan.ingest_batches:
                    self.consume(store, batch, repeat)

    def consume(self, store: str, batch: int, repeat: int) -> None:
        """One consumer run; once more (fresh store and group) if the broker went away."""
        label = store_label(store)
        during = f"the {label} consumer run {repeat} with batch {batch:,}"
        for attempt in (1, 2):
            if self.result.interrupted:
                return
            output = self._consume_once(store, batch, f"{batch}-{repeat}-{attempt}", during)
            if output is None:
                return
            run = _ingest_run(store, output.result)
            trouble = output.broker_trouble
            if not run.timed_out and trouble is None:
                break
            if self.kafka_gone(during):
                return
            why = trouble or f"it stalled at {run.rows:,} of {run.expected:,} rows"
            self._note_retry(f"({label}) batch {batch:,}, run {repeat}", attempt, why)
        self.result.consume.append(run)
        _print_run(label, repeat, run)

    def _consume_once(self, store: str, batch: int, tag: str, during: str) -> WorkerOutput | None:
        """One consumer worker on a fresh store; ``None`` if Kafka went away meanwhile."""
        group = f"apicat-bench-{uuid.uuid4().hex[:10]}"
        with self._store_args(store, f"consume-{tag}") as where:
            args = ["consume", *where, "--batch-rows", str(batch), *self.common,
                    "--bootstrap", self.bootstrap, "--group", group]  # fmt: skip
            try:
                return _worker(args, self.env, self.limit_s)
            except RuntimeError:
                if self.kafka_gone(during):
                    return None
                raise

    def _note_retry(self, which: str, attempt: int, why: str) -> None:
        if attempt == 1:
            self.result.notes.append(
                f"{which}, first attempt: the consumer lost the broker ({why}); another job on "
                "the machine probably restarted it. Run again with a new group and store; the "
                "figures shown are the second attempt's."
            )
            print(f"  {which}: broker trouble, repeating: {why}", flush=True)
        else:
            self.result.notes.append(f"{which}, second attempt: broker trouble again ({why}).")

    def store_only(self, store: str) -> None:
        with self._store_args(store, "store-only") as where:
            args = ["store-only", *where, "--seed", str(SEED), "--base", self.base.isoformat(),
                    "--batch-rows", str(self.plan.store_only_batch), *self.common]  # fmt: skip
            only = _store_only_run(store, _worker(args, self.env, self.limit_s).result)
        self.result.store_only.append(only)
        _print_store_only(store_label(store), only)

    @contextlib.contextmanager
    def _store_args(self, store: str, tag: str) -> Iterator[list[str]]:
        """The worker's store arguments: a fresh chDB path, or a fresh chdb_http endpoint."""
        if store == CHDB:
            yield ["--path", str(self.work / f"chdb-{tag}")]
            return
        with _chdb_http(self.servers, self.work / f"http-{tag}", self.env) as url:
            yield ["--url", url]


def _print_run(label: str, repeat: int, run: IngestRun) -> None:
    print(
        f"  ({label}) consumer, batch {run.batch_rows:,}, run {repeat}: "
        f"{run.rows:,}/{run.expected:,} rows, {run.rows_per_s:,.0f} rows/s "
        f"(drain {run.drain_s:.1f} s, inserts {run.insert_s:.1f} s)",
        flush=True,
    )


def _print_store_only(label: str, run: StoreOnlyRun) -> None:
    print(
        f"  ({label}) store-only, batch {run.batch_rows:,}: insert "
        f"{run.insert_rows_per_s:,.0f} rows/s, convert {run.convert_rows_per_s:,.0f} rows/s",
        flush=True,
    )


# --------------------------------------------------------------------------- report


def _verdict(passed: bool) -> str:
    return "**PASS**" if passed else "**MISS**"


def ingest_rows(ingest: IngestResult | None) -> list[str]:
    """Rows of the Results table for (d): one per consumer configuration, its median run."""
    target = f"≥ {TARGET_INGEST_ROWS_S:,.0f} events/s"
    if ingest is not None and ingest.skipped:
        return [f"| d | consumer ingest (Kafka → store) | {target} | skipped: Kafka not "
                "reachable | **SKIPPED** |"]  # fmt: skip
    if ingest is None or not ingest.consume:
        return [f"| d | consumer ingest | {target} | not measured | **ERROR** |"]
    rows = [_config_row(config, target) for config in ingest.configs()]
    if ingest.interrupted:
        rows.append(f"| d | remaining consumer runs | {target} | not run: Kafka went away "
                    "mid-run | **SKIPPED** |")  # fmt: skip
    return rows


def _config_row(config: IngestConfig, target: str) -> str:
    into = "chDB" if config.store == CHDB else "clickhouse-connect → chdb_http"
    runs = ", ".join(f"{run.rows_per_s:,.0f}" for run in config.runs)
    if all(run.rows == run.expected for run in config.runs):
        stored = f"{config.runs[0].expected:,} rows each"
    else:
        stored = "rows " + ", ".join(f"{run.rows:,}/{run.expected:,}" for run in config.runs)
    return (
        f"| {store_label(config.store)} | consumer ingest, Kafka → {into}, batch "
        f"{config.batch_rows:,} (end to end, median of {len(config.runs)}) | {target} | "
        f"{config.rows_per_s:,.0f} events/s (runs: {runs}; {stored}) | "
        f"{_verdict(config.passed)} |"
    )


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
    if ingest.skipped:
        lines += [
            f"> **Skipped**: {ingest.skipped}. Start it with `scripts/services.sh start` (or "
            "point `--kafka` / `$APICAT_TEST_KAFKA_BOOTSTRAP_SERVERS` at a broker) and run "
            "again.",
            "",
        ]
        return lines
    if ingest.produced is not None:
        lines += [_produced_text(ingest, ingest.produced, plan), ""]
    if ingest.consume:
        lines += _consume_table(ingest.configs())
        lines += [_ingest_cpu_budget(ingest.consume), ""]
    if ingest.interrupted:
        lines += [f"> **Interrupted**: {ingest.interrupted}", ""]
    for note in ingest.notes:
        lines += [f"> {note}", ""]
    if ingest.store_only:
        lines += _store_only_table(ingest.store_only, plan)
    return lines


def _produced_text(ingest: IngestResult, produced: Produced, plan: EventPlan) -> str:
    mix = ", ".join(f"{t} {n:,}" for t, n in sorted(produced.per_topic.items()))
    order = ", ".join(
        f"{store_label(store)} {batch:,}" for store in STORES for batch in plan.ingest_batches
    )
    return (
        f"{produced.records:,} synthetic events ({mix}; "
        f"{produced.payload_bytes / produced.records:,.0f} B of JSON each on average) were "
        f"produced to `{ingest.prefix}<type>` ({PARTITIONS} partitions per topic, keyed "
        f"like the gateway, lz4, acks=all) on Kafka at `{ingest.bootstrap}` before any "
        f"timing ({produced.seconds:.1f} s, not counted). Every consumer configuration read "
        f"them all {plan.repeats} time(s), round robin ({order}, then again), each run as a "
        "new consumer group into a store in a fresh directory. Every run is shown; the "
        "**median** row of each configuration is its result."
    )


def _consume_table(configs: Sequence[IngestConfig]) -> list[str]:
    lines = [
        "| store | batch rows | run | rows stored (FINAL) | events/s end to end | drain | "
        "inserts (count, time) | deliveries | group join | worker CPU |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for config in configs:
        for repeat, run in enumerate(config.runs, start=1):
            lines.append(
                f"| {run.store} | {run.batch_rows:,} | {repeat} | {run.rows:,} / "
                f"{run.expected:,} | {run.rows_per_s:,.0f} | {run.drain_s:.2f} s | "
                f"{run.inserts} in {run.insert_s:.2f} s | {run.batches} | {run.join_s:.2f} s | "
                f"{run.cpu_s:.1f} CPU-s |"
            )
        lines.append(
            f"| {config.store} | {config.batch_rows:,} | **median** | | "
            f"**{config.rows_per_s:,.0f}** | {config.drain_s:.2f} s | | | | |"
        )
    return [*lines, ""]


def _store_only_table(runs: Sequence[StoreOnlyRun], plan: EventPlan) -> list[str]:
    lines = [
        "Store only, the same events without Kafka (converted, then inserted, "
        f"{plan.store_only_batch:,} events per batch, one insert per table; one run each):",
        "",
        "| store | rows stored (FINAL) | **insert rows/s** | insert time | "
        "convert (`build_batch`) rows/s | worker CPU |",
        "|---|---|---|---|---|---|",
    ]
    for only in runs:
        lines.append(
            f"| {only.store} | {only.rows:,} / {only.expected:,} | "
            f"**{only.insert_rows_per_s:,.0f}** | {only.insert_s:.2f} s ({only.inserts} "
            f"inserts) | {only.convert_rows_per_s:,.0f} | {only.cpu_s:.1f} CPU-s |"
        )
    return [*lines, ""]


def ingest_method_note(plan: EventPlan) -> str:
    share = ", ".join(f"{t} {p:.0%}" for t, p in MIX.items())
    return (
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
        "not compete with the inserts). Group join is shown apart. Each configuration runs "
        f"{plan.repeats} time(s) from the same topics, round robin with the others, and its "
        "result is the median events/s of its runs. d2's store is "
        "`ClickHouseStore(url, compress=False)` (as `gateway.pipeline.open_store` uses the "
        "embedded endpoint) against `python -m bench.pipeline chdb-http`, a `ChdbStore` served "
        "by `consumers.chdb_http.serve_chdb_http` in its own process (a new one per run), so "
        "the HTTP server and chDB do not share the consumer's interpreter. Store-only runs "
        "(once per store) convert with `build_batch` and insert with the store's `insert`, "
        "timed apart. Topics are deleted "
        "afterwards. The broker is not one of the benchmark's processes: its CPU counts as "
        '"others" in the CPU table. A consumer run whose Kafka client lost the broker (its '
        "stderr says so, or it stalled 20 s) is repeated once with a new group and store, "
        "and a note says so."
    )
