"""Sections (e), (f) of ``make bench`` and what they share with (d) (plan, server tracking).

* (e) ``bench_events_cost``: cache-hit throughput of the gateway with its real embedded
  pipeline vs the same launcher with ``NullEmitter`` (``bench/gateway_launcher.py``), in
  alternating on/off pairs; the result is the median pair ratio.
* (f) ``bench_lag``: mixed traffic through a gateway with events on while the chDB endpoint
  is polled; per event, the time from its ``ts`` to the first poll that sees it.

(d), the consumer ingest, lives in ``bench/ingest.py``. Results are dataclasses; ``render_*``
return Markdown lines for ``bench.run.render``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

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

REPO_ROOT = Path(__file__).resolve().parents[1]

TARGET_EVENTS_RATIO = 0.9
TARGET_LAG_P99_S = 5.0

EVENT_REPEATS = 3
"""Runs of each (d) consumer configuration and (e) on/off pairs; the median is the result."""
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
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class EventPlan:
    """Sizes and durations of (d), (e), (f); shorter under ``--quick``."""

    ingest_events: int
    ingest_batches: tuple[int, ...]
    repeats: int
    """Runs of each (d) consumer configuration, and (e) on/off pairs."""
    store_only_batch: int
    worker_limit_s: float
    warmup_s: int
    throughput_s: int
    lag_s: int


FULL_EVENTS = EventPlan(
    ingest_events=500_000,
    ingest_batches=(1_000, 10_000),
    repeats=EVENT_REPEATS,
    store_only_batch=10_000,
    worker_limit_s=90.0,
    warmup_s=2,
    throughput_s=10,
    lag_s=15,
)
QUICK_EVENTS = EventPlan(
    ingest_events=20_000,
    ingest_batches=(1_000, 10_000),
    repeats=1,
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


@dataclass(frozen=True)
class CostRun:
    """One measured wrk run of (e) against the events-on or the events-off gateway."""

    events: str
    """``on`` or ``off``."""
    load: Throughput
    gateway_cpu_s: float
    """CPU the gateway process and its store process used during the run."""
    others_cores: float

    @property
    def cpu_per_request_us(self) -> float:
        return self.gateway_cpu_s / max(self.load.requests, 1) * 1e6

    @property
    def clean(self) -> bool:
        return self.load.non_2xx == 0 and self.load.socket_errors == 0


@dataclass(frozen=True)
class CostPair:
    """An events-on run and the events-off run right after it."""

    on: CostRun
    off: CostRun

    @property
    def ratio(self) -> float:
        off = self.off.load.req_per_s
        return self.on.load.req_per_s / off if off else math.nan

    @property
    def cpu_ratio(self) -> float:
        return self.on.cpu_per_request_us / self.off.cpu_per_request_us

    @property
    def cpu_added_us(self) -> float:
        return self.on.cpu_per_request_us - self.off.cpu_per_request_us


@dataclass
class EventsCostResult:
    pairs: list[CostPair]
    """In the order they ran."""
    events_on: dict[str, Any]
    stored_events: int
    command: list[str]

    @property
    def ratio(self) -> float:
        """The median of the pairs' req/s ratios: the result of (e)."""
        return median(pair.ratio for pair in self.pairs)

    @property
    def median_pair(self) -> CostPair:
        """The pair whose ratio is the median (the lower middle one for an even count)."""
        ordered = sorted(self.pairs, key=lambda pair: pair.ratio)
        return ordered[(len(ordered) - 1) // 2]

    @property
    def passed(self) -> bool:
        clean = all(run.clean for pair in self.pairs for run in (pair.on, pair.off))
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
    """(e) The same launcher twice, events on and off; ``plan.repeats`` pairs, on then off."""
    with (
        launched_gateway(servers, work, config_path, "on", env, "events-on") as on,
        launched_gateway(servers, work, config_path, "off", env, "events-off") as off,
    ):
        for gateway in (on, off):
            _get(gateway.url + hit_path)
            _, headers, _ = _get(gateway.url + hit_path)
            if headers.get("x-cache") != "HIT":
                raise RuntimeError(f"{gateway.url}{hit_path} is not a cache hit after warming")

        def measure(events: str, gateway: Launched, pair: int) -> CostRun:
            run = _cost_run(events, gateway, gateway.url + hit_path, plan, runner, servers, use_wrk)
            _print_cost_run(pair, run)
            return run

        pairs = [
            CostPair(measure("on", on, pair), measure("off", off, pair))
            for pair in range(1, plan.repeats + 1)
        ]
        time.sleep(2.5)  # over two linger periods (1 s embedded): the last batch is stored
        return EventsCostResult(pairs, _events_check(on.url), _stored_events(on), on.command)


def _cost_run(
    events: str,
    gateway: Launched,
    url: str,
    plan: EventPlan,
    runner: asyncio.Runner,
    servers: Servers,
    use_wrk: bool,
) -> CostRun:
    """A discarded warm-up, then the measured run with the CPU it cost."""

    def load(seconds: int) -> Throughput:
        if use_wrk:
            return run_wrk(url, threads=1, connections=32, duration_s=seconds)
        return runner.run(closed_loop(url, connections=32, duration_s=seconds))

    load(plan.warmup_s)  # discarded
    before = cpu_snapshot(servers.pgids())
    own_before = gateway.cpu_s()
    measured = load(plan.throughput_s)
    gateway_cpu_s = gateway.cpu_s() - own_before
    others = cpu_share(before, cpu_snapshot(servers.pgids())).others_cores
    return CostRun(events, measured, gateway_cpu_s, others)


def _print_cost_run(pair: int, run: CostRun) -> None:
    print(
        f"  (e) pair {pair}, events {run.events}: {run.load.req_per_s:,.0f} req/s, "
        f"p50 {run.load.p50_ms:.2f} ms, p99 {run.load.p99_ms:.2f} ms, gateway CPU "
        f"{run.cpu_per_request_us:.0f} µs/request",
        flush=True,
    )


def _stored_events(gateway: Launched) -> int:
    """Events in the gateway's embedded store (FINAL); 0 without one."""
    if not gateway.query_url:
        return 0
    counts = " UNION ALL ".join(
        f"SELECT count() AS n FROM apicat.{table} FINAL" for table in _LAG_TABLES
    )
    return int(_sql(gateway.query_url, f"SELECT sum(n) FROM ({counts})").strip())


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


def result_rows(cost: EventsCostResult | None, lag: LagResult | None) -> list[str]:
    """Rows of the Results table for (e), (f)."""
    rows: list[str] = []
    if cost is not None:
        pair = cost.median_pair
        rows.append(
            f"| e | cache-hit throughput, events on / off (median of {len(cost.pairs)} pairs) "
            f"| ≥ {TARGET_EVENTS_RATIO:.2f}x | {cost.ratio:.2f}x ({pair.on.load.req_per_s:,.0f}"
            f" vs {pair.off.load.req_per_s:,.0f} req/s; pairs: {_ratios(cost)}) | "
            f"{_verdict(cost.passed)} |"
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


def _ratios(cost: EventsCostResult) -> str:
    return ", ".join(f"{pair.ratio:.2f}x" for pair in cost.pairs)


def render_events_cost(cost: EventsCostResult, plan: EventPlan, hit_path: str) -> list[str]:
    lines = ["### (e) Cache-hit throughput, events on vs off", ""]
    add = lines.append
    add(
        f"`wrk -t1 -c32 -d{plan.throughput_s}s --latency` on `{hit_path}` (warm key), each run "
        f"after its own discarded {plan.warmup_s} s warm-up, against two gateways run by "
        "`bench/gateway_launcher.py` with the same config and settings: **on** builds the "
        "emitter with `start_pipeline` as `apicat serve` does (embedded: a store process it "
        "supervises, with chDB in the data dir and its ClickHouse HTTP endpoint), **off** passes "
        "`gateway.events.NullEmitter()`. (a)'s gateway, `apicat serve`, runs with events on "
        f"like the **on** rows. {len(cost.pairs)} pair(s), in the order they ran (on, off, on, "
        "off, ...); each pair gives one req/s ratio."
    )
    add("")
    lines += _cost_table(cost)
    pair = cost.median_pair
    add(
        f"req/s on / off per pair: {_ratios(cost)}; median **{cost.ratio:.2f}x** (pair "
        f"{cost.pairs.index(pair) + 1}: {pair.on.load.req_per_s:,.0f} vs "
        f"{pair.off.load.req_per_s:,.0f} req/s)."
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
        f"{cost.stored_events:,} events (FINAL; the warm-ups' `request`s and its one "
        "`upstream_attempt` included)."
    )
    add("")
    cpu_ratio = median(p.cpu_ratio for p in cost.pairs)
    cpu_added = median(p.cpu_added_us for p in cost.pairs)
    add(
        f"Gateway CPU per request, on / off (median over the pairs): **{cpu_ratio:.2f}x** "
        f"(+{cpu_added:,.0f} µs a request; pairs: "
        f"{', '.join(f'{p.cpu_ratio:.2f}x' for p in cost.pairs)}). The events-on "
        "gateway's extra work runs mostly in its store process, so req/s stays close to the "
        "events-off figure only while the machine has CPU to spare for them (gateway CPU "
        "column); when other jobs take it, the req/s ratio drops."
    )
    add("")
    return lines


def _cost_table(cost: EventsCostResult) -> list[str]:
    lines = [
        "| pair | events | requests | req/s | p50 | p99 | non-2xx | socket errors | gateway CPU "
        "per request | gateway CPU | others' CPU |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for number, pair in enumerate(cost.pairs, start=1):
        for run in (pair.on, pair.off):
            load = run.load
            lines.append(
                f"| {number} | {run.events} | {load.requests:,} | {load.req_per_s:,.0f} | "
                f"{load.p50_ms:.2f} ms | {load.p99_ms:.2f} ms | {load.non_2xx} | "
                f"{load.socket_errors} | {run.cpu_per_request_us:,.0f} µs | "
                f"{run.gateway_cpu_s / load.duration_s:.2f} cores | "
                f"{run.others_cores:.2f} cores |"
            )
    return [*lines, ""]


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
    """Method bullets for (e) and (f)."""
    return [
        f"- (e) Both gateways run side by side (the idle one costs nothing measurable); each "
        f"is warmed on its key, then {plan.repeats} pair(s) of runs: wrk {plan.warmup_s} s "
        f"(discarded) and {plan.throughput_s} s on the events-on gateway, then the same on "
        "the events-off one, and again. Alternating spreads slow stretches of the machine "
        "over both sides; the result is the median of the per-pair ratios, and the CPU per "
        "request line the median of the per-pair figures. Same server settings as `apicat "
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
