"""Load-generation helpers: server subprocesses, wrk runs and parsing, aiohttp load generators."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Self

import aiohttp

LOOPBACK = "127.0.0.1"


# --------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``values``, linearly interpolated; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Throughput:
    """One closed-loop throughput run (wrk or the Python fallback)."""

    tool: str
    requests: int
    duration_s: float
    req_per_s: float
    p50_ms: float
    p99_ms: float
    non_2xx: int = 0
    socket_errors: int = 0
    raw: str = ""


# --------------------------------------------------------------------------- wrk


class WrkError(RuntimeError):
    """wrk failed or printed something this parser does not understand."""


_TIME_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_DURATION_UNITS_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PERCENTILE_LINE = re.compile(r"^\s*(\d+(?:\.\d+)?)%\s+([\d.]+)\s*(us|ms|s|m|h)\s*$", re.MULTILINE)
_REQS_PER_SEC = re.compile(r"^\s*Requests/sec:\s+([\d.]+)\s*$", re.MULTILINE)
_TOTAL = re.compile(r"^\s*(\d+)\s+requests in\s+([\d.]+)\s*(us|ms|s|m|h)\b", re.MULTILINE)
_SOCKET_ERRORS = re.compile(
    r"Socket errors:\s*connect\s+(\d+),\s*read\s+(\d+),\s*write\s+(\d+),\s*timeout\s+(\d+)"
)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")


def parse_wrk(output: str) -> Throughput:
    """Parse ``wrk --latency`` output (any unit wrk prints: us, ms, s, m, h).

    Raises:
        WrkError: when requests/sec, the request total or the 50 %/99 % lines are missing.
    """
    latencies = {
        float(match.group(1)): float(match.group(2)) * _TIME_UNITS_MS[match.group(3)]
        for match in _PERCENTILE_LINE.finditer(output)
    }
    rps = _REQS_PER_SEC.search(output)
    total = _TOTAL.search(output)
    if rps is None or total is None or 50.0 not in latencies or 99.0 not in latencies:
        raise WrkError(f"unrecognised wrk output:\n{output.strip() or '<empty>'}")
    errors = _SOCKET_ERRORS.search(output)
    non_2xx = _NON_2XX.search(output)
    return Throughput(
        tool="wrk",
        requests=int(total.group(1)),
        duration_s=float(total.group(2)) * _DURATION_UNITS_S[total.group(3)],
        req_per_s=float(rps.group(1)),
        p50_ms=latencies[50.0],
        p99_ms=latencies[99.0],
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
        raw=output.strip(),
    )


def wrk_path() -> str | None:
    """Where the ``wrk`` binary is, or ``None`` when it is not installed."""
    return shutil.which("wrk")


def wrk_version() -> str:
    """``wrk -v``'s first line (wrk exits 1 after printing it), or ``not installed``."""
    binary = wrk_path()
    if binary is None:
        return "not installed"
    result = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10, check=False)
    lines = (result.stdout + result.stderr).strip().splitlines()
    return lines[0].strip() if lines else "unknown"


def run_wrk(url: str, *, threads: int, connections: int, duration_s: int) -> Throughput:
    """Run ``wrk -tT -cC -dDs --latency URL`` and parse it; killed if it overruns.

    Raises:
        WrkError: wrk is missing, failed or printed unparseable output.
    """
    binary = wrk_path()
    if binary is None:
        raise WrkError("wrk is not installed")
    command = [
        binary, f"-t{threads}", f"-c{connections}", f"-d{duration_s}s", "--latency", url,
    ]  # fmt: skip
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=duration_s + 30, check=False
        )
    except subprocess.TimeoutExpired as error:
        raise WrkError(f"wrk did not finish within {duration_s + 30}s") from error
    if result.returncode != 0:
        raise WrkError(f"wrk exited {result.returncode}: {result.stderr.strip()}")
    return parse_wrk(result.stdout)


# --------------------------------------------------------------------------- aiohttp load


def new_session(connections: int, timeout_s: float) -> aiohttp.ClientSession:
    """A keep-alive HTTP/1.1 client pool of at most ``connections`` to one loopback server."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections, limit_per_host=connections),
        timeout=aiohttp.ClientTimeout(total=timeout_s),
        trust_env=False,
    )


@dataclass(frozen=True)
class Sample:
    """One request's outcome: latency from just before sending to the last body byte."""

    kind: str
    latency_ms: float
    status: int
    cache: str | None = None
    error: str | None = None
    lag_ms: float = 0.0
    """How late the request left compared with its open-loop schedule."""


async def timed_get(session: aiohttp.ClientSession, kind: str, url: str) -> Sample:
    """GET ``url``, read the whole body and time it; errors become a sample, never raise."""
    start = time.perf_counter()
    try:
        async with session.get(url) as response:
            await response.read()
            status, cache = response.status, response.headers.get("X-Cache")
    except (aiohttp.ClientError, TimeoutError) as error:
        elapsed = (time.perf_counter() - start) * 1000.0
        return Sample(kind, elapsed, 0, error=type(error).__name__)
    return Sample(kind, (time.perf_counter() - start) * 1000.0, status, cache)


async def closed_loop(url: str, *, connections: int, duration_s: float) -> Throughput:
    """Python stand-in for wrk: ``connections`` workers each send back-to-back GETs.

    Bounded in time (``duration_s``) and in count (at most 200 000 requests per worker).
    """
    latencies: list[float] = []
    non_2xx = errors = 0
    stop_at = time.perf_counter() + duration_s

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal non_2xx, errors
        for _ in range(200_000):
            if time.perf_counter() >= stop_at:
                return
            sample = await timed_get(session, "load", url)
            if sample.error is not None:
                errors += 1
            else:
                latencies.append(sample.latency_ms)
                non_2xx += not 200 <= sample.status < 400

    async with new_session(connections, 10.0) as session:
        started = time.perf_counter()
        await asyncio.wait_for(
            asyncio.gather(*(worker(session) for _ in range(connections))), duration_s + 30
        )
        elapsed = time.perf_counter() - started
    return Throughput(
        tool="python/aiohttp",
        requests=len(latencies),
        duration_s=elapsed,
        req_per_s=len(latencies) / elapsed,
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        non_2xx=non_2xx,
        socket_errors=errors,
    )


@dataclass(frozen=True)
class Target:
    """One kind of request an open-loop run sends: its name and its URL for request ``n``."""

    kind: str
    url_template: str
    """Formatted with ``n`` (the request's sequence number), e.g. ``...&q=bench-{n}``."""


async def open_loop(
    targets: Sequence[Target],
    *,
    rate_per_s: float,
    count: int,
    time_limit_s: float,
    timeout_s: float = 5.0,
) -> list[Sample]:
    """Send ``count`` requests at a fixed total rate, taking ``targets`` in turn (round robin).

    Open loop: request ``i`` is due at ``start + i / rate`` whether or not earlier ones have
    answered, so a slow server cannot slow the generator down. Each target gets its own
    keep-alive pool. Requests still running at ``time_limit_s`` are cancelled and reported as
    errors.
    """
    sessions = {target.kind: new_session(64, timeout_s) for target in targets}
    tasks: list[asyncio.Task[Sample]] = []

    async def send(target: Target, n: int, lag_ms: float) -> Sample:
        sample = await timed_get(
            sessions[target.kind], target.kind, target.url_template.format(n=n)
        )
        return Sample(
            sample.kind, sample.latency_ms, sample.status, sample.cache, sample.error, lag_ms
        )

    try:
        start = time.perf_counter()
        deadline = start + time_limit_s
        for i in range(count):
            due = start + i / rate_per_s
            now = time.perf_counter()
            if due > now:
                await asyncio.sleep(due - now)
                now = time.perf_counter()
            if now >= deadline:
                break
            target = targets[i % len(targets)]
            tasks.append(asyncio.create_task(send(target, i, (now - due) * 1000.0)))
        remaining = max(deadline - time.perf_counter(), 0.0) + timeout_s
        done, pending = await asyncio.wait(tasks, timeout=remaining) if tasks else (set(), set())
        for task in pending:
            task.cancel()
        samples = [task.result() for task in tasks if task in done]
        samples += [Sample("cancelled", math.nan, 0, error="cancelled") for _ in pending]
        return samples
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for session in sessions.values():
            await session.close()


async def burst(url: str, *, concurrency: int, timeout_s: float) -> list[Sample]:
    """Send ``concurrency`` GETs for one URL at once, each on its own connection."""
    async with new_session(concurrency, timeout_s) as session:
        return list(
            await asyncio.gather(*(timed_get(session, "burst", url) for _ in range(concurrency)))
        )


@dataclass
class LatencySummary:
    """Percentiles of the successful samples of one kind plus what went wrong."""

    kind: str
    ok: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    failures: Counter[str] = field(default_factory=Counter)

    @classmethod
    def of(cls, kind: str, samples: Sequence[Sample], expect_cache: str | None = None) -> Self:
        """Summarise ``samples`` of ``kind``; non-200s, errors and wrong X-Cache are failures."""
        latencies: list[float] = []
        failures: Counter[str] = Counter()
        for sample in samples:
            if sample.kind != kind:
                continue
            if sample.error is not None:
                failures[sample.error] += 1
            elif sample.status != 200:
                failures[f"HTTP {sample.status}"] += 1
            elif expect_cache is not None and sample.cache != expect_cache:
                failures[f"X-Cache {sample.cache}"] += 1
            else:
                latencies.append(sample.latency_ms)
        return cls(
            kind=kind,
            ok=len(latencies),
            p50_ms=percentile(latencies, 50),
            p99_ms=percentile(latencies, 99),
            mean_ms=sum(latencies) / len(latencies) if latencies else math.nan,
            max_ms=max(latencies, default=math.nan),
            failures=failures,
        )


# --------------------------------------------------------------------------- servers


class ServerError(RuntimeError):
    """A server subprocess did not come up; carries the tail of its output."""


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """A server in its own subprocess and process group; :meth:`stop` always cleans it up.

    The group matters for servers with children, such as the gateway's embedded store process
    (``consumers.store_server``), which must go down with the parent.
    """

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        log_dir: Path,
        stdout_pipe: bool = False,
    ) -> None:
        self.name = name
        self.command = list(command)
        self._log_path = log_dir / f"{name}.log"
        self._log: IO[bytes] = self._log_path.open("wb")
        self.process = subprocess.Popen(
            self.command,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout_pipe else self._log,
            stderr=self._log,
            start_new_session=True,
        )

    def output_tail(self, limit: int = 4000) -> str:
        """The last ``limit`` characters the server wrote to stderr (and stdout)."""
        self._log.flush()
        try:
            text = self._log_path.read_text("utf-8", "replace")
        except OSError:
            return "<no output>"
        return text[-limit:].strip() or "<no output>"

    def _failed(self, what: str) -> ServerError:
        state = "is still running" if self.process.poll() is None else "exited"
        if self.process.returncode is not None:
            state = f"exited with {self.process.returncode}"
        return ServerError(f"{self.name} {what} ({state}); output:\n{self.output_tail()}")

    def wait_for_line(self, prefix: str, timeout_s: float = 30.0) -> str:
        """Wait for a stdout line starting with ``prefix`` and return the rest of it."""
        stdout = self.process.stdout
        assert stdout is not None, "start with stdout_pipe=True"
        deadline = time.monotonic() + timeout_s
        for _ in range(10_000):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.process.poll() is not None:
                break
            readable, _, _ = select.select([stdout], [], [], remaining)
            if not readable:
                continue
            line = stdout.readline().decode("utf-8", "replace").strip()
            if line.startswith(prefix):
                return line.removeprefix(prefix)
            if not line:  # EOF: the process is exiting
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout=5)
        raise self._failed(f"did not print {prefix!r} within {timeout_s:g}s")

    def wait_for_http(self, url: str, timeout_s: float = 30.0) -> None:
        """Poll ``url`` until it answers 200 (at most ``timeout_s`` and 600 tries)."""
        deadline = time.monotonic() + timeout_s
        for _ in range(600):
            if self.process.poll() is not None or time.monotonic() > deadline:
                break
            try:
                with urllib.request.urlopen(url, timeout=2.0) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise self._failed(f"did not answer 200 on {url} within {timeout_s:g}s")

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM the process group, wait, then SIGKILL whatever is left; idempotent."""
        pgid = self.process.pid  # the group leader, thanks to start_new_session
        _signal_group(pgid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _signal_group(pgid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=timeout_s)
        # Children (the gateway's store process) may outlive the leader briefly.
        deadline = time.monotonic() + timeout_s
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _group_alive(pgid):
            _signal_group(pgid, signal.SIGKILL)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


# --------------------------------------------------------------------------- CPU accounting


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class CpuSnapshot:
    """Machine-wide busy and steal CPU-seconds, and what this benchmark's processes used."""

    wall_s: float
    machine_busy_s: float
    steal_s: float
    ours_s: float


@dataclass(frozen=True)
class CpuShare:
    """CPU used between two snapshots: by everything, by steal, by the benchmark's processes."""

    wall_s: float
    machine_busy_s: float
    steal_s: float
    ours_s: float

    @property
    def others_s(self) -> float:
        """CPU-seconds that processes outside this benchmark used (other jobs on the box)."""
        return max(self.machine_busy_s - self.ours_s, 0.0)

    @property
    def others_cores(self) -> float:
        return self.others_s / self.wall_s if self.wall_s > 0 else math.nan


def _machine_cpu() -> tuple[float, float]:
    """(busy, steal) CPU-seconds since boot from /proc/stat; zeros when unavailable."""
    try:
        with open("/proc/stat") as file:
            fields = [int(value) for value in file.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / _CLOCK_TICKS, steal / _CLOCK_TICKS


def _group_cpu(pgids: frozenset[int]) -> float:
    """utime + stime of the live processes in the given process groups."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as file:
                fields = file.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended while we looked
        if int(fields[2]) in pgids:  # field 5 of stat: pgrp
            total += int(fields[11]) + int(fields[12])
    return total / _CLOCK_TICKS


def cpu_snapshot(pgids: frozenset[int]) -> CpuSnapshot:
    """Snapshot for :func:`cpu_share`; ``pgids`` are the server process groups."""
    busy, steal = _machine_cpu()
    own = os.times()
    ours = own.user + own.system + own.children_user + own.children_system
    return CpuSnapshot(time.monotonic(), busy, steal, ours + _group_cpu(pgids))


def cpu_share(before: CpuSnapshot, after: CpuSnapshot) -> CpuShare:
    return CpuShare(
        wall_s=after.wall_s - before.wall_s,
        machine_busy_s=after.machine_busy_s - before.machine_busy_s,
        steal_s=after.steal_s - before.steal_s,
        ours_s=after.ours_s - before.ours_s,
    )
