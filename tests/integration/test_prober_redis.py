"""Prober processes sharing a real Redis: one probe per upstream per round, and takeover.

The children run :func:`health.cli.run_prober` (the command's own wiring: aiohttp fetcher,
Redis status store, embedded event pipeline) with a 1 s test interval, below the 10 s a
config may set, so several rounds fit in a few seconds. Every probe a child makes is
recorded in a Redis list by its ``on_status`` callback; rounds are recovered from the probe
times and the targets' phases.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from health.schedule import next_due, probe_offset_s
from health.status import LEASE_PREFIX, STATUS_HASH, UpstreamStatus
from health.targets import ProbeTarget, probe_targets
from schemas.config import GatewayConfig
from tests.support.gateway import Source, build_config
from tests.support.upstreams import REPO_ROOT, DemoUpstreams

pytestmark = pytest.mark.redis

INTERVAL_S = 1.0
RECORD_LIST = "test:health:probes"
BANNER = "prober "


def child_main(argument: str) -> None:
    """Entry point of a prober child: ``run_prober`` with test-interval targets."""
    import asyncio

    from gateway.server import install_shutdown_signals
    from gateway.settings import Settings
    from health.cli import run_prober

    options = json.loads(argument)
    settings = Settings.from_environ(os.environ)
    config = GatewayConfig.model_validate_json(Path(options["config"]).read_bytes())
    targets = [
        dataclasses.replace(target, interval_s=options["interval_s"])
        for target in probe_targets(config, settings.probe_interval_seconds)
    ]
    assert settings.redis_url is not None
    recorder = redis.Redis.from_url(settings.redis_url)

    def record(new: UpstreamStatus, previous: UpstreamStatus | None) -> None:
        recorder.rpush(RECORD_LIST, f"{settings.instance}|{new.url}|{new.checked_at!r}")

    async def main() -> None:
        stop = asyncio.Event()
        install_shutdown_signals(stop)
        await run_prober(settings, lambda: targets, stop, on_status=record)

    try:
        asyncio.run(main())
    finally:
        recorder.close()


@dataclasses.dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]


def child_env(redis_url: str, tmp_path: Path, name: str) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("APICAT_")}
    return {
        **environ,
        "APICAT_REDIS_URL": redis_url,
        "APICAT_INSTANCE": name,
        "APICAT_DATA_DIR": str(tmp_path / name),
        "APICAT_EMBEDDED_CLICKHOUSE_PORT": "0",
        "APICAT_LOG_LEVEL": "WARNING",
        "APICAT_LOG_FORMAT": "text",
    }


def start(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def wait_for_banner(process: subprocess.Popen[bytes], timeout_s: float = 20) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0 and process.poll() is None:
        if select.select([process.stdout], [], [], left)[0]:
            line = process.stdout.readline().decode()
            if line.startswith(BANNER):
                return line
    stderr = process.stderr.read().decode() if process.stderr and process.poll() else ""
    raise AssertionError(f"prober did not start (exit {process.poll()}): {stderr}")


def stop(process: subprocess.Popen[bytes], sig: signal.Signals = signal.SIGTERM) -> bytes:
    """Signal the process, wait (bounded) and return its stderr."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    stderr = process.stderr.read() if process.stderr and not process.stderr.closed else b""
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()
    return stderr


@contextlib.contextmanager
def running(processes: list[subprocess.Popen[bytes]]) -> Iterator[None]:
    try:
        yield
    finally:
        for process in processes:
            stop(process, signal.SIGKILL)


@dataclasses.dataclass(frozen=True)
class Probe:
    holder: str
    url: str
    checked_at: float
    round: int


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def probes(client: redis.Redis, keys: dict[str, str]) -> list[Probe]:
    found = []
    for raw in client.lrange(RECORD_LIST, 0, -1):
        holder, url, checked_at = text(raw).split("|")
        offset = probe_offset_s(keys[url], INTERVAL_S)
        # A probe lands a few ms after its phase point (jitter is 1% of the interval).
        index = round((float(checked_at) - offset) / INTERVAL_S)
        found.append(Probe(holder, url, float(checked_at), index))
    return found


def first_round_after(key: str, moment: float) -> int:
    """The round index of ``key``'s first phase point at or after ``moment``."""
    due = next_due(key, INTERVAL_S, moment)
    return round((due - probe_offset_s(key, INTERVAL_S)) / INTERVAL_S)


def wait_until(condition: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def config_file(upstreams: DemoUpstreams, tmp_path: Path, **category: object) -> Path:
    for name in ("alpha", "beta", "gamma", "delta"):
        upstreams.set_knobs(name)
    config = build_config(
        upstreams,
        {"anime": [Source("alpha", 1, ("beta",)), Source("gamma", 2, ("delta",))]},
        paths=("/api/v1/home",),
    )
    document = config.model_dump(mode="json")
    document["categories"][0].update(category)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(document))
    return path


def targets_of(path: Path) -> list[ProbeTarget]:
    return probe_targets(GatewayConfig.model_validate_json(path.read_bytes()), 600)


def test_two_prober_processes_probe_each_upstream_once_per_round_and_survivor_takes_over(
    upstreams: DemoUpstreams, redis_url: str, tmp_path: Path
) -> None:
    path = config_file(upstreams, tmp_path)
    keys = {t.base_url: t.key for t in targets_of(path)}
    argument = json.dumps({"config": str(path), "interval_s": INTERVAL_S})
    code = f"import sys; from {__name__} import child_main; child_main(sys.argv[1])"
    children = {
        name: start([sys.executable, "-c", code, argument], child_env(redis_url, tmp_path, name))
        for name in ("prober-a", "prober-b")
    }
    client = redis.Redis.from_url(redis_url)
    with running(list(children.values())), contextlib.closing(client):
        for process in children.values():
            wait_for_banner(process)
        both_up = time.time()

        def rounds_since(since: float) -> int:
            return min(
                sum(1 for p in probes(client, keys) if p.url == url and p.checked_at > since)
                for url in keys
            )

        wait_until(lambda: rounds_since(both_up) >= 3, timeout_s=10)
        stop(children["prober-a"], signal.SIGKILL)
        killed_at = time.time()  # after the kill: every later round is the survivor's
        takeover = {url: first_round_after(key, killed_at) for url, key in keys.items()}

        def survivor_probed_next_two_rounds() -> bool:
            done = {(p.url, p.round) for p in probes(client, keys)}
            return all({(u, r), (u, r + 1)} <= done for u, r in takeover.items())

        wait_until(survivor_probed_next_two_rounds, timeout_s=10)
        # prober-a's leases (TTL = one interval) are gone; the live ones name the survivor.
        leases = [client.get(key) for key in client.scan_iter(f"{LEASE_PREFIX}*")]
        lease_holders = [text(holder) for holder in leases if holder is not None]
        assert b"Traceback" not in stop(children["prober-b"])
        assert children["prober-b"].returncode == 0

        recorded = probes(client, keys)
        stored = client.hgetall(STATUS_HASH)

    # Exactly one probe per upstream per round while both ran (startup, when probes may be
    # slowed by the other process's imports, is left out of the round arithmetic)...
    seen = [(p.url, p.round) for p in recorded if p.checked_at > both_up]
    assert len(seen) == len(set(seen)), "a round was probed twice"
    # ...and both took part (the jitter spreads wins between them).
    assert {p.holder for p in recorded if p.checked_at < killed_at} == {"prober-a", "prober-b"}
    # After the kill, the survivor probed every upstream in every round from the next one on.
    for url, first in takeover.items():
        after = sorted(p.round for p in recorded if p.url == url and p.round >= first)
        assert after == list(range(first, first + len(after))), url
        assert {p.holder for p in recorded if p.url == url and p.round >= first} == {"prober-b"}
    # Each request an upstream saw is a recorded probe (one may have died with prober-a).
    stats = upstreams.stats()["sources"]
    for url in keys:
        name = url.rsplit("/", 2)[-2]
        calls = stats[name]["total"]
        assert 0 <= calls - sum(1 for p in recorded if p.url == url) <= 1, name
    assert {text(k) for k in stored} == set(keys)
    assert lease_holders and set(lease_holders) == {"prober-b"}


def test_prober_command_probes_into_redis_and_stores_events(
    upstreams: DemoUpstreams, redis_url: str, tmp_path: Path
) -> None:
    path = config_file(upstreams, tmp_path, probe={"interval_seconds": 10, "timeout_seconds": 2})
    upstreams.set_knobs("delta", error_rate=1.0)
    keys = {t.base_url for t in targets_of(path)}
    env = child_env(redis_url, tmp_path, "prober-cli")
    process = start([sys.executable, "-m", "health", "--config", str(path)], env)
    client = redis.Redis.from_url(redis_url)
    with running([process]), contextlib.closing(client):
        assert "probing 4 upstreams (status store: redis)" in wait_for_banner(process)
        # Every upstream is probed once within one 10 s interval, at its own phase.
        wait_until(lambda: client.hlen(STATUS_HASH) == len(keys), timeout_s=12)
        stderr = stop(process)
        statuses = {
            text(k): UpstreamStatus.from_json(v) for k, v in client.hgetall(STATUS_HASH).items()
        }
    assert process.returncode == 0, stderr.decode()
    assert b"Traceback" not in stderr
    assert set(statuses) == keys
    by_source = {s.url.rsplit("/", 2)[-2]: s.status.value for s in statuses.values()}
    assert by_source == {"alpha": "OK", "beta": "OK", "gamma": "OK", "delta": "Error"}
    # The events reached the embedded store (read after the prober let go of it).
    query = subprocess.run(
        [sys.executable, "-c", "from gateway.cli import main; main()", "query",
         "SELECT source_name, status FROM apicat.health_probes ORDER BY upstream_url",
         "--format", "json"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert query.returncode == 0, query.stderr
    rows = json.loads(query.stdout)
    # Fallbacks are named after their primary (beta → alpha, delta → gamma); the failing
    # upstream may also have had its confirmation probe.
    assert len(rows) >= len(keys)
    assert {(row["source_name"], row["status"]) for row in rows} == {
        ("alpha", "OK"),
        ("gamma", "Error"),
        ("gamma", "OK"),
    }
