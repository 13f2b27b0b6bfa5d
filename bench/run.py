"""Entry of ``make bench``: cache hits, cache misses, single-flight and the event pipeline."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import platform
import re
import signal
import sys
import tempfile
import time
import traceback
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from statistics import median
from types import FrameType
from typing import Any

from bench.event_sections import (
    FULL_EVENTS,
    QUICK_EVENTS,
    EventPlan,
    EventsCostResult,
    LagResult,
    Servers,
    bench_events_cost,
    bench_lag,
    method_notes,
    mix_knobs,
    mixed_config,
    render_events_cost,
    render_lag,
    result_rows,
)
from bench.hello import app as hello_app
from bench.ingest import (
    IngestResult,
    bench_ingest,
    ingest_method_note,
    ingest_rows,
    kafka_bootstrap,
    render_ingest,
)
from bench.load import (
    LOOPBACK,
    CpuShare,
    LatencySummary,
    Sample,
    ServerProcess,
    Target,
    Throughput,
    burst,
    closed_loop,
    cpu_share,
    cpu_snapshot,
    free_port,
    open_loop,
    percentile,
    run_wrk,
    wrk_path,
    wrk_version,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_READY_PREFIX = "demo upstreams listening on "
CATEGORY = "bench"
SINGLEFLIGHT_CATEGORY = "bench-sf"
SOURCE = "bench"
SLOW_SOURCE = "bench-slow"
SLOW_LATENCY_MS = 200.0
GATEWAY_ENV = {
    "APICAT_LOG_LEVEL": "WARNING",
    "APICAT_RATE_LIMIT": "1000000/second",
    "APICAT_EMBEDDED_CLICKHOUSE_PORT": "0",
}
WRK_THREADS = 1
WRK_CONNECTIONS = 32
TARGET_RATIO = 0.8
TARGET_ADDED_P50_MS = 2.0
TARGET_ADDED_P99_MS = 10.0
TARGET_UPSTREAM_CALLS = 1
MISS_REPEATS = 3
"""Measured open-loop passes of (b); the median of their added latencies is the result."""
EVENTS_HIT_PATH = f"/api/v1/home?category={CATEGORY}"


@dataclass(frozen=True)
class Plan:
    """Durations and sizes of one run; ``--quick`` shortens them for a smoke run."""

    quick: bool
    warmup_s: int
    throughput_s: int
    miss_rate_per_s: int
    miss_duration_s: int
    miss_repeats: int
    burst: int
    events: EventPlan

    @property
    def miss_count(self) -> int:
        return self.miss_rate_per_s * self.miss_duration_s


FULL = Plan(
    quick=False,
    warmup_s=2,
    throughput_s=10,
    miss_rate_per_s=200,
    miss_duration_s=10,
    miss_repeats=MISS_REPEATS,
    burst=20,
    events=FULL_EVENTS,
)
QUICK = Plan(
    quick=True,
    warmup_s=1,
    throughput_s=2,
    miss_rate_per_s=200,
    miss_duration_s=2,
    miss_repeats=1,
    burst=20,
    events=QUICK_EVENTS,
)


# --------------------------------------------------------------------------- results


@dataclass
class HitResult:
    gateway: Throughput
    hello: Throughput
    hello_same_size: Throughput
    """Informational: the hello app answering a body as large as the gateway's."""
    gateway_body_bytes: int
    hello_body_bytes: int
    upstream_calls_during: int
    fallback_reason: str | None
    others_cores: list[float]
    """CPU cores other jobs on the box used during each measured run (gateway, hello, same)."""

    @property
    def ratio(self) -> float:
        return self.gateway.req_per_s / self.hello.req_per_s if self.hello.req_per_s else math.nan

    @property
    def passed(self) -> bool:
        clean = self.gateway.non_2xx == 0 and self.gateway.socket_errors == 0
        return clean and self.ratio >= TARGET_RATIO


@dataclass(frozen=True)
class MissPass:
    """One measured open-loop pass of (b)."""

    direct: LatencySummary
    gateway: LatencySummary
    sent: int
    elapsed_s: float

    @property
    def added_p50_ms(self) -> float:
        return self.gateway.p50_ms - self.direct.p50_ms

    @property
    def added_p99_ms(self) -> float:
        return self.gateway.p99_ms - self.direct.p99_ms

    @property
    def clean(self) -> bool:
        return not self.direct.failures and not self.gateway.failures


@dataclass
class MissResult:
    passes: list[MissPass]
    """In the order they ran."""
    lag_p99_ms: float
    lag_max_ms: float
    upstream_calls_per_gateway_request: float
    """Lag and upstream calls over all passes."""

    @property
    def added_p50_ms(self) -> float:
        """The median of the passes' added p50: the result of (b)."""
        return median(one.added_p50_ms for one in self.passes)

    @property
    def added_p99_ms(self) -> float:
        """The median of the passes' added p99: the result of (b)."""
        return median(one.added_p99_ms for one in self.passes)

    @property
    def clean(self) -> bool:
        return all(one.clean for one in self.passes)


@dataclass
class FlightResult:
    concurrency: int
    upstream_calls: int
    statuses: Counter[str]
    cache: Counter[str]
    p50_ms: float
    max_ms: float

    @property
    def passed(self) -> bool:
        return self.upstream_calls == TARGET_UPSTREAM_CALLS and self.statuses == Counter(
            {"200": self.concurrency}
        )


@dataclass
class Results:
    hit: HitResult | None = None
    miss: MissResult | None = None
    flight: FlightResult | None = None
    ingest: IngestResult | None = None
    events_cost: EventsCostResult | None = None
    lag: LagResult | None = None
    errors: dict[str, str] = field(default_factory=dict)
    cpu: dict[str, CpuShare] = field(default_factory=dict)


@dataclass(frozen=True)
class Stack:
    """The three servers under test and their base URLs."""

    upstream: str
    gateway: str
    hello: str
    gateway_command: list[str]
    hello_command: list[str]
    pgids: frozenset[int]
    """Process groups of the servers, for CPU accounting."""


# --------------------------------------------------------------------------- small HTTP helpers


@dataclass(frozen=True)
class Fetched:
    """A response; header names are lower-cased."""

    status: int
    headers: Mapping[str, str]
    body: bytes


def fetch(url: str, timeout_s: float = 10.0) -> Fetched:
    """One blocking GET (setup and checks only, never under measurement)."""
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        headers = {name.lower(): value for name, value in response.headers.items()}
        return Fetched(response.status, headers, response.read())


def upstream_calls(stack: Stack, source: str, rest: str) -> int:
    """Requests the demo upstreams counted for ``source``/``rest`` so far."""
    stats: dict[str, Any] = json.loads(fetch(f"{stack.upstream}/_demo/stats").body)
    counts: dict[str, Any] = stats["sources"].get(source, {"paths": {}})
    return int(counts["paths"].get(rest, 0))


# --------------------------------------------------------------------------- servers


def gateway_config(upstream: str) -> dict[str, object]:
    """``bench``: one zero-latency primary, no fallbacks; ``bench-sf``: one 200 ms primary."""

    def endpoint(path: str, source: str) -> dict[str, object]:
        return {
            "path": path,
            "primary_apis": [
                {"source_name": source, "base_url": f"{upstream}/{source}/v1", "priority": 1}
            ],
            "ttl_seconds": 3600,
            "timeout_seconds": 5,
        }

    return {
        "categories": [
            {
                "name": CATEGORY,
                "endpoints": [endpoint("/api/v1/home", SOURCE), endpoint("/api/v1/search", SOURCE)],
            },
            {"name": SINGLEFLIGHT_CATEGORY, "endpoints": [endpoint("/api/v1/search", SLOW_SOURCE)]},
        ]
    }


def demo_knobs() -> dict[str, object]:
    """Two clean sources (no faults); only ``bench-slow`` has latency (fixed 200 ms).

    Plus ``bench-mix`` (a few ms, some invalid answers), used only by (e) and (f).
    """
    return {
        SOURCE: {},
        SLOW_SOURCE: {"latency": {"kind": "fixed", "median_ms": SLOW_LATENCY_MS}},
        **mix_knobs(),
    }


def clean_environ() -> dict[str, str]:
    """This process's environment without ``APICAT_*`` (no Redis etc. leaking in)."""
    return {name: value for name, value in os.environ.items() if not name.startswith("APICAT_")}


def apicat_command() -> list[str]:
    script = Path(sys.executable).parent / "apicat"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from gateway.cli import main; main()"]


def start_stack(work: Path, servers: list[ServerProcess]) -> Stack:
    """Start demo upstreams, gateway and hello app; each appended to ``servers`` at once."""
    knobs_path = work / "knobs.json"
    knobs_path.write_text(json.dumps(demo_knobs()))
    demo = ServerProcess(
        "demo-upstreams",
        [sys.executable, "-m", "demo", "--host", LOOPBACK, "--port", "0", "--no-defaults",
         "--knobs", str(knobs_path)],
        cwd=REPO_ROOT, env=clean_environ(), log_dir=work, stdout_pipe=True,
    )  # fmt: skip
    servers.append(demo)
    upstream = demo.wait_for_line(DEMO_READY_PREFIX)

    config_path = work / "gateway-config.json"
    config_path.write_text(json.dumps(gateway_config(upstream), indent=2))
    gateway_port = free_port()
    gateway_command = [
        *apicat_command(), "serve", "--config", str(config_path),
        "--host", LOOPBACK, "--port", str(gateway_port),
    ]  # fmt: skip
    data_dir = work / "apicat-data"
    data_dir.mkdir()
    gateway_env = clean_environ() | GATEWAY_ENV | {"APICAT_DATA_DIR": str(data_dir)}
    gateway = ServerProcess(
        "gateway", gateway_command, cwd=REPO_ROOT, env=gateway_env, log_dir=work
    )
    servers.append(gateway)

    hello_port = free_port()
    hello_command = [
        sys.executable, "-m", "bench.hello", "--host", LOOPBACK, "--port", str(hello_port)
    ]  # fmt: skip
    hello = ServerProcess("hello", hello_command, cwd=REPO_ROOT, env=clean_environ(), log_dir=work)
    servers.append(hello)

    gateway_url = f"http://{LOOPBACK}:{gateway_port}"
    hello_url = f"http://{LOOPBACK}:{hello_port}"
    gateway.wait_for_http(f"{gateway_url}/livez")
    hello.wait_for_http(f"{hello_url}/")
    pgids = frozenset(server.process.pid for server in servers)
    return Stack(upstream, gateway_url, hello_url, gateway_command, hello_command, pgids)


# --------------------------------------------------------------------------- sections


def bench_cache_hit(
    stack: Stack, plan: Plan, runner: asyncio.Runner, use_wrk: bool, fallback_reason: str | None
) -> HitResult:
    """(a) wrk (or the Python fallback) against one warm gateway key, then the hello app."""
    gateway_url = f"{stack.gateway}/api/v1/home?category={CATEGORY}"
    hello_url = f"{stack.hello}/"
    first = fetch(gateway_url)
    if first.status != 200:
        raise RuntimeError(f"warming {gateway_url} answered {first.status}: {first.body[:300]!r}")
    warm = fetch(gateway_url)
    if warm.headers.get("x-cache") != "HIT":
        raise RuntimeError(f"second GET of {gateway_url} was X-Cache {warm.headers.get('x-cache')}")
    hello_body = fetch(hello_url).body
    same_size_url = f"{stack.hello}/bytes/{len(warm.body)}"
    if len(fetch(same_size_url).body) != len(warm.body):
        raise RuntimeError(f"{same_size_url} did not answer {len(warm.body)} bytes")
    calls_before = upstream_calls(stack, SOURCE, "home")

    def measure(url: str, seconds: int) -> Throughput:
        if use_wrk:
            return run_wrk(
                url, threads=WRK_THREADS, connections=WRK_CONNECTIONS, duration_s=seconds
            )
        return runner.run(closed_loop(url, connections=WRK_CONNECTIONS, duration_s=seconds))

    results: dict[str, Throughput] = {}
    cpu: dict[str, CpuShare] = {}
    for name, url in (
        ("gateway", gateway_url),
        ("hello", hello_url),
        ("hello, same body size", same_size_url),
    ):
        measure(url, plan.warmup_s)  # discarded: connections, allocator and caches warm up
        before = cpu_snapshot(stack.pgids)
        results[name] = measure(url, plan.throughput_s)
        cpu[name] = cpu_share(before, cpu_snapshot(stack.pgids))
        print(
            f"  (a) {name}: {results[name].req_per_s:,.0f} req/s, "
            f"p50 {results[name].p50_ms:.2f} ms, p99 {results[name].p99_ms:.2f} ms",
            flush=True,
        )
    return HitResult(
        gateway=results["gateway"],
        hello=results["hello"],
        hello_same_size=results["hello, same body size"],
        others_cores=[cpu[name].others_cores for name in results],
        gateway_body_bytes=len(warm.body),
        hello_body_bytes=len(hello_body),
        upstream_calls_during=upstream_calls(stack, SOURCE, "home") - calls_before,
        fallback_reason=fallback_reason,
    )


def bench_cache_miss(stack: Stack, plan: Plan, runner: asyncio.Runner) -> MissResult:
    """(b) A warm-up second, then ``plan.miss_repeats`` measured open-loop passes.

    Each pass alternates direct upstream and gateway calls, a unique ``q`` each.
    """
    run_id = f"{os.getpid()}-{int(time.time())}"

    def targets(tag: str) -> list[Target]:
        return [
            Target("direct", f"{stack.upstream}/{SOURCE}/v1/search?q={tag}-direct-{run_id}-{{n}}"),
            Target(
                "gateway",
                f"{stack.gateway}/api/v1/search?category={CATEGORY}&q={tag}-gw-{run_id}-{{n}}",
            ),
        ]

    def open_pass(tag: str, count: int) -> list[Sample]:
        rate = plan.miss_rate_per_s
        limit_s = count / rate + 5.0
        return runner.run(
            open_loop(targets(tag), rate_per_s=rate, count=count, time_limit_s=limit_s)
        )

    open_pass("warm", plan.miss_rate_per_s)  # one second, discarded
    calls_before = upstream_calls(stack, SOURCE, "search")
    passes: list[MissPass] = []
    samples: list[Sample] = []
    for number in range(1, plan.miss_repeats + 1):
        started = time.perf_counter()
        pass_samples = open_pass(f"run{number}", plan.miss_count)
        passes.append(_miss_pass(pass_samples, time.perf_counter() - started))
        _print_miss_pass(number, passes[-1])
        samples.extend(pass_samples)
    calls = upstream_calls(stack, SOURCE, "search") - calls_before
    gateway_sent = sum(1 for sample in samples if sample.kind == "gateway")
    direct_sent = sum(1 for sample in samples if sample.kind == "direct")
    lags = [sample.lag_ms for sample in samples if not math.isnan(sample.latency_ms)]
    return MissResult(
        passes=passes,
        lag_p99_ms=percentile(lags, 99),
        lag_max_ms=max(lags, default=math.nan),
        upstream_calls_per_gateway_request=(
            (calls - direct_sent) / gateway_sent if gateway_sent else math.nan
        ),
    )


def _miss_pass(samples: Sequence[Sample], elapsed_s: float) -> MissPass:
    return MissPass(
        direct=LatencySummary.of("direct", samples),
        gateway=LatencySummary.of("gateway", samples, expect_cache="MISS"),
        sent=len(samples),
        elapsed_s=elapsed_s,
    )


def _print_miss_pass(number: int, one: MissPass) -> None:
    for summary in (one.direct, one.gateway):
        print(
            f"  (b) pass {number}, {summary.kind}: p50 {summary.p50_ms:.2f} ms, p99 "
            f"{summary.p99_ms:.2f} ms ({summary.ok} ok, failures {dict(summary.failures) or 0})",
            flush=True,
        )
    print(
        f"  (b) pass {number}: added p50 {one.added_p50_ms:.2f} ms, p99 {one.added_p99_ms:.2f} ms",
        flush=True,
    )


def bench_single_flight(stack: Stack, plan: Plan, runner: asyncio.Runner) -> FlightResult:
    """(c) ``plan.burst`` concurrent requests for one cold key whose upstream takes 200 ms."""
    url = f"{stack.gateway}/api/v1/search?category={SINGLEFLIGHT_CATEGORY}&q=sf-{os.getpid()}"
    before = upstream_calls(stack, SLOW_SOURCE, "search")
    samples: list[Sample] = runner.run(burst(url, concurrency=plan.burst, timeout_s=10.0))
    calls = upstream_calls(stack, SLOW_SOURCE, "search") - before
    latencies = [sample.latency_ms for sample in samples if sample.error is None]
    result = FlightResult(
        concurrency=plan.burst,
        upstream_calls=calls,
        statuses=Counter(sample.error or str(sample.status) for sample in samples),
        cache=Counter(str(sample.cache) for sample in samples if sample.error is None),
        p50_ms=percentile(latencies, 50),
        max_ms=max(latencies, default=math.nan),
    )
    print(f"  (c) {plan.burst} concurrent cold requests -> {calls} upstream call(s)", flush=True)
    return result


# --------------------------------------------------------------------------- machine facts


def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def _memory() -> str:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return "unknown"


def machine_facts() -> dict[str, str]:
    """What the numbers were measured on."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    return {
        "date (UTC)": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "CPUs (nproc)": str(cpus),
        "CPU model": _cpu_model(),
        "memory": _memory(),
        "kernel": f"{platform.system()} {platform.release()}",
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "uvicorn / httptools / Quart / uvloop": " / ".join(
            _package_version(name) for name in ("uvicorn", "httptools", "quart", "uvloop")
        ),
        "aiohttp (load generator)": _package_version("aiohttp"),
        "wrk": wrk_version(),
        "load average at start": " ".join(f"{value:.2f}" for value in load),
    }


def server_defaults() -> dict[str, str]:
    from gateway.server import server_config

    config = server_config(hello_app)
    return {
        "keep_alive_timeout": f"{config.timeout_keep_alive:g} s",
        "graceful shutdown": f"{config.timeout_graceful_shutdown} s",
        "backlog": "1024",
    }


# --------------------------------------------------------------------------- report


def _ms(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f} ms"


def _verdict(passed: bool) -> str:
    return "**PASS**" if passed else "**MISS**"


def _failures(counter: Counter[str]) -> str:
    return ", ".join(f"{name}: {n}" for name, n in sorted(counter.items())) or "none"


def _short(command: Sequence[str]) -> str:
    """A command line for the doc: file names without their temp dirs, ports as ``<port>``."""
    shown = [Path(part).name if part.startswith("/") else part for part in command]
    text = " ".join(shown)
    text = re.sub(r"--port \d+", "--port <port>", text)
    return re.sub(rf"{re.escape(LOOPBACK)}:\d+", f"{LOOPBACK}:<port>", text)


def render(
    facts: Mapping[str, str], plan: Plan, results: Results, stack: Stack | None, argv: list[str]
) -> str:
    """The whole of docs/BENCHMARKS.md."""
    lines: list[str] = ["# Benchmarks", ""]
    add = lines.append
    add("Generated by `make bench` (`.venv/bin/python -m bench.run --output docs/BENCHMARKS.md`);")
    add("do not edit by hand. Targets come from the issue that introduced `make bench`; SPEC §7")
    add("sets the direction (cache hits close to the bare framework, overhead close to zero).")
    add("")
    if plan.quick:
        add("> **Smoke run (`--quick`)**: durations are shortened; the numbers are not meaningful.")
        add("")
    add(f"This run: `python -m bench.run {' '.join(argv)}`".rstrip())
    add("")
    add("## Results")
    add("")
    add("| # | what | target | measured | result |")
    add("|---|---|---|---|---|")
    hit, miss, flight = results.hit, results.miss, results.flight
    if hit is not None:
        note = "" if hit.gateway.non_2xx == 0 else f"; {hit.gateway.non_2xx} non-2xx"
        add(
            f"| a | cache-hit throughput, gateway / hello-world | ≥ {TARGET_RATIO:.2f}x | "
            f"{hit.ratio:.2f}x ({hit.gateway.req_per_s:,.0f} vs {hit.hello.req_per_s:,.0f} "
            f"req/s{note}) | {_verdict(hit.passed)} |"
        )
    else:
        add(
            f"| a | cache-hit throughput ratio | ≥ {TARGET_RATIO:.2f}x | not measured | **ERROR** |"
        )
    lines.extend(miss_rows(miss))
    if flight is not None:
        add(
            f"| c | upstream calls for {flight.concurrency} concurrent requests on one cold key | "
            f"exactly {TARGET_UPSTREAM_CALLS} | {flight.upstream_calls} | "
            f"{_verdict(flight.passed)} |"
        )
    else:
        add("| c | single-flight upstream calls | exactly 1 | not measured | **ERROR** |")
    lines.extend(ingest_rows(results.ingest))
    lines.extend(result_rows(results.events_cost, results.lag))
    add("")
    for section, message in results.errors.items():
        add(f"**{section} failed to run:**")
        add("")
        add("```")
        add(message.strip())
        add("```")
        add("")

    if hit is not None:
        add("### (a) Cache-hit throughput")
        add("")
        if hit.fallback_reason:
            add(
                f"> wrk was not used ({hit.fallback_reason}); a Python aiohttp closed-loop "
                f"generator with {WRK_CONNECTIONS} connections stood in. It is much slower than "
                "wrk and shares the CPUs, so both figures are capped by it."
            )
            add("")
        tool = (
            f"`wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} -d{plan.throughput_s}s --latency`"
            if hit.gateway.tool == "wrk"
            else f"python/aiohttp, {WRK_CONNECTIONS} connections, {plan.throughput_s} s"
        )
        add(f"Tool: {tool}, after a discarded {plan.warmup_s} s warm-up run on each server.")
        add("")
        add(
            "| server | URL | body | requests | req/s | p50 | p99 | non-2xx | socket errors "
            "| others' CPU |"
        )
        add("|---|---|---|---|---|---|---|---|---|---|")
        for (name, path, body, run), others in zip(
            (
                (
                    "gateway",
                    f"/api/v1/home?category={CATEGORY}",
                    hit.gateway_body_bytes,
                    hit.gateway,
                ),
                ("hello-world", "/", hit.hello_body_bytes, hit.hello),
                (
                    "hello-world, same body size (info)",
                    f"/bytes/{hit.gateway_body_bytes}",
                    hit.gateway_body_bytes,
                    hit.hello_same_size,
                ),
            ),
            hit.others_cores,
            strict=True,
        ):
            add(
                f"| {name} | `{path}` | {body:,} B | {run.requests:,} | {run.req_per_s:,.0f} | "
                f"{_ms(run.p50_ms)} | {_ms(run.p99_ms)} | {run.non_2xx} | {run.socket_errors} "
                f"| {others:.2f} cores |"
            )
        add("")
        same_ratio = (
            hit.gateway.req_per_s / hit.hello_same_size.req_per_s
            if hit.hello_same_size.req_per_s
            else math.nan
        )
        add(
            f"Gateway / hello-world at the same body size: {same_ratio:.2f}x (information only; "
            "it shows how much of the gap is the payload size rather than the gateway's code). "
            f"Upstream calls for the key while it was driven: {hit.upstream_calls_during} "
            "(0 means every request was a cache hit)."
        )
        add("")

    if miss is not None:
        lines.extend(render_miss(miss, plan))
    if flight is not None:
        add("### (c) Single-flight")
        add("")
        add(
            f"{flight.concurrency} requests for `GET /api/v1/search?category="
            f"{SINGLEFLIGHT_CATEGORY}&q=<one new value>` sent at once on {flight.concurrency} "
            f"connections; the upstream `{SLOW_SOURCE}` answers after a fixed "
            f"{SLOW_LATENCY_MS:g} ms. Upstream calls counted by the demo server's "
            f"`/_demo/stats`: **{flight.upstream_calls}**. Answers: {_failures(flight.statuses)}"
            f" (status); X-Cache {_failures(flight.cache)}; client latency p50 "
            f"{_ms(flight.p50_ms)}, max {_ms(flight.max_ms)}."
        )
        add("")

    if results.events_cost is not None:
        lines.extend(render_events_cost(results.events_cost, plan.events, EVENTS_HIT_PATH))
    if results.lag is not None:
        lines.extend(render_lag(results.lag))
    if results.ingest is not None:
        lines.extend(render_ingest(results.ingest, plan.events))

    if results.cpu:
        add("### CPU seen during each section")
        add("")
        add(
            "Machine-wide CPU from `/proc/stat`, split into this benchmark's processes (servers, "
            'load generator, wrk) and everything else on the box; "others" above a few '
            "hundredths of a core means other jobs competed for the CPUs and the numbers of "
            "that section are pessimistic."
        )
        add("")
        add("| section | wall | ours (CPU-s) | others (CPU-s) | others (cores) | steal (CPU-s) |")
        add("|---|---|---|---|---|---|")
        for name, share in results.cpu.items():
            add(
                f"| {name} | {share.wall_s:.1f} s | {share.ours_s:.1f} | {share.others_s:.1f} | "
                f"{share.others_cores:.2f} | {share.steal_s:.1f} |"
            )
        add("")
    add("## Machine")
    add("")
    add("| fact | value |")
    add("|---|---|")
    for name, value in facts.items():
        add(f"| {name} | {value} |")
    add("")
    add(
        "The machine has few cores (this run: "
        + facts.get("CPUs (nproc)", "?")
        + ") and the load generator (wrk or aiohttp), the gateway, the demo "
        "upstreams, the hello-world app and, for (d), the Kafka broker and the consumer "
        "workers all run on it and share them, so absolute figures are "
        "lower, and tails longer, than on a machine where the client is elsewhere; it is also a "
        "shared VM, so req/s moves by 10-20 % from run to run. Compare the ratios and "
        "differences, which are measured back to back in one run; (b), (d) and (e) are "
        "medians of repeated measurements for that reason (see Method), and a small change "
        "still wants a second run before much is read into it."
    )
    add("")
    add("## Settings")
    add("")
    add("Everything listens on 127.0.0.1 only; each server runs in its own subprocess (own")
    add("process group, SIGTERM then SIGKILL at the end, also on errors and Ctrl-C).")
    add("")
    if stack is not None:
        add(f"- gateway: `{_short(stack.gateway_command)}` (config path is a temp file)")
        add(f"- hello-world: `{_short(stack.hello_command)}` (`bench/hello.py`, bare Quart)")
    add(
        f"- gateway environment: only {', '.join(f'`{k}={v}`' for k, v in GATEWAY_ENV.items())} "
        "and a temporary `APICAT_DATA_DIR`; every other `APICAT_*` variable of the caller is "
        "removed, so the embedded (in-process) cache, single-flight and limiter are measured."
    )
    add(
        "- same server settings on both, from the same code (`gateway.server.listen` + "
        "`serve_app`): uvicorn with the httptools parser on the process's uvloop loop, one "
        "process, no access log, "
        + ", ".join(f"{k} {v}" for k, v in server_defaults().items())
        + ". The gateway's `/api/v1` answers come from its ASGI edge (`gateway/edge.py`) in "
        "front of Quart, the hello app's from a Quart view, so the ratio can exceed 1."
    )
    add(
        f"- gateway config: category `{CATEGORY}` serves `/api/v1/home` and `/api/v1/search` from "
        f"one primary `{SOURCE}` (demo source, no latency, no faults) without fallbacks, TTL "
        f"3600 s, timeout 5 s; category `{SINGLEFLIGHT_CATEGORY}` serves `/api/v1/search` from "
        f"`{SLOW_SOURCE}` (fixed {SLOW_LATENCY_MS:g} ms latency). Demo upstreams started with "
        "`python -m demo --host 127.0.0.1 --port 0 --no-defaults --knobs <file>`."
    )
    add(
        "- (e), (f) gateways: `python -m bench.gateway_launcher --config "
        "gateway-config-mixed.json --host 127.0.0.1 --port <port> --events on|off`, same "
        "environment as above with a data dir each; the config adds categories `mix-a` "
        "(all eight endpoints from `bench-mix`: lognormal latency, median 2 ms, p99 15 ms, 5 % "
        "invalid answers, falling back to `bench`) and `mix-b` (all eight from `bench`)."
    )
    add(
        "- (d) workers: `python -m bench.pipeline consume|store-only|chdb-http ...`, each its "
        "own process with a fresh chDB directory; no `APICAT_*` variable is passed on."
    )
    add("")
    add("## Method")
    add("")
    add(
        "- Order: (c) first on a cold gateway, then (b), then (a), so the latency runs are not "
        "preceded by a high-throughput run; one process set serves all three. Then (e) and (f) "
        "on gateways of their own (same demo upstreams), and (d) last, whose chDB and Kafka "
        "work would otherwise leave background merges behind."
    )
    add(_repeats_note(plan))
    add(
        "- (a) The key is fetched twice first (MISS, then HIT is checked). wrk runs closed-loop: "
        f"{WRK_CONNECTIONS} keep-alive connections each send the next request when the previous "
        "answer arrives; req/s and the 50 %/99 % lines come from wrk's `--latency` output. The "
        "gateway answers the cached upstream JSON (body size in the table) plus its headers. "
        "The hello app also serves `/bytes/<n>`, a prebuilt JSON body of n bytes, measured "
        "the same way for information, to tell payload size apart from gateway code."
    )
    add(
        "- (b) The generator (aiohttp on uvloop, one keep-alive pool per server) sends request "
        "`i` at `start + i / rate` whether or not earlier ones have answered (open loop), "
        "alternating direct and gateway. Latency is measured from just before the request is "
        "handed to aiohttp to the last body byte, the same way for both, so the client's own "
        "cost cancels out in the difference. A warm-up second is discarded. Gateway answers "
        "that are not `200` with `X-Cache: MISS` count as failures and are left out of the "
        "percentiles. The difference of two percentiles is not the percentile of the "
        "per-request overhead; it is the added latency a client sees at that percentile."
    )
    add(
        "- (c) The upstream call count is the demo server's own per-source counter, read "
        "before and after."
    )
    lines.append(ingest_method_note(plan.events))
    lines.extend(method_notes(plan.events))
    add("- Targets missed are reported as MISS; the run still exits 0.")
    add("")
    return "\n".join(lines)


def miss_rows(miss: MissResult | None) -> list[str]:
    """The two Results rows of (b): medians of the passes' added p50 and p99."""
    if miss is None:
        return ["| b | cache-miss added latency | p50 ≤ 2 ms, p99 ≤ 10 ms | not measured | "
                "**ERROR** |"]  # fmt: skip
    rows = []
    for name, target, value, per_pass in (
        ("p50", TARGET_ADDED_P50_MS, miss.added_p50_ms, [p.added_p50_ms for p in miss.passes]),
        ("p99", TARGET_ADDED_P99_MS, miss.added_p99_ms, [p.added_p99_ms for p in miss.passes]),
    ):
        passes = ", ".join(f"{ms:.2f}" for ms in per_pass)
        rows.append(
            f"| b | cache-miss added latency, {name} (gateway - direct, median of "
            f"{len(miss.passes)} passes) | ≤ {target:g} ms | {_ms(value)} (passes: {passes} ms)"
            f" | {_verdict(miss.clean and value <= target)} |"
        )
    return rows


def render_miss(miss: MissResult, plan: Plan) -> list[str]:
    """(b)'s detail: one row per pass, then the medians."""
    sent = ", ".join(f"{one.sent:,} in {one.elapsed_s:.1f} s" for one in miss.passes)
    lines = [
        "### (b) Cache-miss added latency",
        "",
        f"Open loop at {plan.miss_rate_per_s} req/s in total for {plan.miss_duration_s} s "
        f"per pass ({plan.miss_count:,} requests planned; sent {sent}), alternating a direct "
        "upstream call (`GET <upstream>/"
        f"{SOURCE}/v1/search?q=…`) and a gateway call (`GET /api/v1/search?category="
        f"{CATEGORY}&q=…`), each with a unique `q`. {len(miss.passes)} measured pass(es) after "
        "one warm-up second; each pass gives its own added p50 and p99, and the **median** "
        "row's added figures (the medians of those, not the differences of the medians) are "
        "the result.",
        "",
        "| pass | direct ok | direct p50 | direct p99 | gateway ok | gateway p50 | gateway "
        "p99 | added p50 | added p99 | failures (direct / gateway) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for number, one in enumerate(miss.passes, start=1):
        lines.append(
            f"| {number} | {one.direct.ok} | {_ms(one.direct.p50_ms)} | "
            f"{_ms(one.direct.p99_ms)} | {one.gateway.ok} | {_ms(one.gateway.p50_ms)} | "
            f"{_ms(one.gateway.p99_ms)} | {_ms(one.added_p50_ms)} | {_ms(one.added_p99_ms)} | "
            f"{_failures(one.direct.failures)} / {_failures(one.gateway.failures)} |"
        )
    lines += [_miss_median_row(miss), ""]
    lines.append(
        f"Upstream calls per gateway request, all passes: "
        f"{miss.upstream_calls_per_gateway_request:.2f} (1.00 = every gateway request was one "
        "miss and one upstream call). Generator send lag behind schedule, all passes: p99 "
        f"{_ms(miss.lag_p99_ms)}, max {_ms(miss.lag_max_ms)}."
    )
    return [*lines, ""]


def _miss_median_row(miss: MissResult) -> str:
    def mid(values: Iterator[float]) -> str:
        return _ms(median(values))

    passes = miss.passes
    return (
        f"| **median** | | {mid(p.direct.p50_ms for p in passes)} | "
        f"{mid(p.direct.p99_ms for p in passes)} | | {mid(p.gateway.p50_ms for p in passes)} | "
        f"{mid(p.gateway.p99_ms for p in passes)} | **{_ms(miss.added_p50_ms)}** | "
        f"**{_ms(miss.added_p99_ms)}** | |"
    )


def _repeats_note(plan: Plan) -> str:
    return (
        "- Repeats: on this shared 2-core VM a single run of (b), (d) or (e) is dominated by "
        "the machine rather than the code: stalls of 50-80 ms hit every process at once (the "
        "load generator's own send lag shows them), and consecutive single runs gave (b) "
        "added p99 5.2-17.6 ms, (e) ratios 0.79-1.25 and (d) 45k-56k events/s per "
        f"configuration. So (b) runs {plan.miss_repeats} measured pass(es), (e) "
        f"{plan.events.repeats} on/off pair(s) and (d) {plan.events.repeats} run(s) of each "
        "consumer configuration, and each result is the **median** over those repetitions "
        "(one slow stretch moves one repetition, not the result); every repetition is in the "
        "detail tables. (a), (c), (f) and the store-only runs of (d) stay single runs: (a) and "
        "(f) have moved far less than their distance from the target, (c) is a count and the "
        "store-only runs are for information."
    )


# --------------------------------------------------------------------------- main


def _uvloop_runner() -> asyncio.Runner:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


@contextlib.contextmanager
def _section(results: Results, name: str, pgids: Callable[[], frozenset[int]]) -> Iterator[None]:
    """Record a section's error instead of raising, and the CPU it saw used.

    ``pgids`` is asked at both ends: servers a section starts and stops are counted while
    they run (their process group) and once reaped (this process's children times).
    """
    before = cpu_snapshot(pgids())
    try:
        yield
    except Exception:
        results.errors[name] = traceback.format_exc(limit=8)
        print(f"  {name} FAILED:\n{results.errors[name]}", file=sys.stderr, flush=True)
    finally:
        results.cpu[name] = cpu_share(before, cpu_snapshot(pgids()))


def run(
    plan: Plan, use_wrk: bool, fallback_reason: str | None, kafka: tuple[str, str]
) -> tuple[Results, Stack | None]:
    """Start the servers, run (c), (b), (a), (e), (f), (d); stop every server whatever happens."""
    results = Results()
    stack: Stack | None = None
    servers: list[ServerProcess] = []
    tracked = Servers(servers)
    with tempfile.TemporaryDirectory(prefix="apicat-bench-") as work:
        try:
            print("starting demo upstreams, gateway and hello-world ...", flush=True)
            try:
                stack = start_stack(Path(work), servers)
            except Exception:
                results.errors["startup"] = traceback.format_exc(limit=6)
                print(results.errors["startup"], file=sys.stderr, flush=True)
                return results, None
            with _uvloop_runner() as runner:
                sections: list[tuple[str, Callable[[], None]]] = [
                    ("(c) single-flight", lambda: _set_flight(results, stack, plan, runner)),
                    ("(b) cache-miss latency", lambda: _set_miss(results, stack, plan, runner)),
                    (
                        "(a) cache-hit throughput",
                        lambda: _set_hit(results, stack, plan, runner, use_wrk, fallback_reason),
                    ),
                    (
                        "(e) events on vs off",
                        lambda: _set_events_cost(
                            results, stack, plan, runner, Path(work), tracked, use_wrk
                        ),
                    ),
                    ("(f) event lag", lambda: _set_lag(results, stack, plan, Path(work), tracked)),
                    (
                        "(d) consumer ingest",
                        lambda: _set_ingest(results, plan, runner, Path(work), tracked, kafka),
                    ),
                ]
                for name, step in sections:
                    print(f"{name} ...", flush=True)
                    with _section(results, name, tracked.pgids):
                        step()
        finally:
            for server in reversed(servers):
                server.stop()
    return results, stack


def _set_flight(results: Results, stack: Stack | None, plan: Plan, runner: asyncio.Runner) -> None:
    assert stack is not None
    results.flight = bench_single_flight(stack, plan, runner)


def _set_miss(results: Results, stack: Stack | None, plan: Plan, runner: asyncio.Runner) -> None:
    assert stack is not None
    results.miss = bench_cache_miss(stack, plan, runner)


def _set_hit(
    results: Results,
    stack: Stack | None,
    plan: Plan,
    runner: asyncio.Runner,
    use_wrk: bool,
    fallback_reason: str | None,
) -> None:
    assert stack is not None
    results.hit = bench_cache_hit(stack, plan, runner, use_wrk, fallback_reason)


def _events_env() -> dict[str, str]:
    """Environment of the (e)/(f) gateways: (a)'s, without a data dir (each gets its own)."""
    return clean_environ() | GATEWAY_ENV


def _events_config(work: Path, stack: Stack) -> Path:
    path = work / "gateway-config-mixed.json"
    if not path.exists():
        config = mixed_config(gateway_config(stack.upstream), stack.upstream)
        path.write_text(json.dumps(config, indent=2))
    return path


def _set_events_cost(
    results: Results,
    stack: Stack | None,
    plan: Plan,
    runner: asyncio.Runner,
    work: Path,
    servers: Servers,
    use_wrk: bool,
) -> None:
    assert stack is not None
    results.events_cost = bench_events_cost(
        plan.events, runner, work, servers, _events_config(work, stack), _events_env(),
        EVENTS_HIT_PATH, use_wrk,
    )  # fmt: skip


def _set_lag(
    results: Results, stack: Stack | None, plan: Plan, work: Path, servers: Servers
) -> None:
    assert stack is not None
    results.lag = bench_lag(plan.events, work, servers, _events_config(work, stack), _events_env())


def _set_ingest(
    results: Results,
    plan: Plan,
    runner: asyncio.Runner,
    work: Path,
    servers: Servers,
    kafka: tuple[str, str],
) -> None:
    results.ingest = IngestResult(bootstrap=kafka[0], bootstrap_from=kafka[1])
    bench_ingest(
        plan.events, runner, work / "ingest", servers, clean_environ(), kafka[0], kafka[1],
        results.ingest,
    )  # fmt: skip


def _interrupt_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt so the ``finally`` that stops servers runs."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--output", type=Path, default=Path("docs/BENCHMARKS.md"))
    parser.add_argument("--quick", action="store_true", help="short durations (smoke run)")
    parser.add_argument(
        "--no-wrk", action="store_true", help="use the Python load generator even if wrk exists"
    )
    parser.add_argument(
        "--kafka",
        metavar="HOST:PORT",
        help="broker for (d); default $APICAT_TEST_KAFKA_BOOTSTRAP_SERVERS, then "
        ".cache/services.env, then 127.0.0.1:19092",
    )
    args_list = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(args_list)
    plan = QUICK if args.quick else FULL
    fallback_reason: str | None = None
    if args.no_wrk:
        fallback_reason = "--no-wrk was given"
    elif wrk_path() is None:
        fallback_reason = "wrk is not installed"
    if fallback_reason:
        print(f"note: {fallback_reason}; (a) uses the Python aiohttp load generator", flush=True)
    _interrupt_on_sigterm()
    facts = machine_facts()
    started = time.monotonic()
    try:
        results, stack = run(
            plan, fallback_reason is None, fallback_reason, kafka_bootstrap(args.kafka)
        )
    except KeyboardInterrupt:
        print("interrupted; every server was stopped, no report written", file=sys.stderr)
        return 130
    print(f"finished in {time.monotonic() - started:.0f} s", flush=True)
    report = render(facts, plan, results, stack, args_list)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report)
    print(f"wrote {args.output}")
    # A missed target is a result, not a failure; only a broken harness exits non-zero.
    return 1 if results.errors else 0


if __name__ == "__main__":
    sys.exit(main())
