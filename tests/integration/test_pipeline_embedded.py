"""Embedded event pipeline: every event lands in the store process's chDB exactly once.

The store runs in its own process (``consumers.store_server``) supervised by the pipeline;
these tests use real processes on loopback and poll with bounded deadlines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import httpx
import pytest

from consumers.store import EventStore
from consumers.store_server import STORE_NICENESS
from gateway.app import create_app
from gateway.container import Container
from gateway.emitter import BufferedEmitter, EmitterPolicy, TransportError
from gateway.pipeline import EMBEDDED_URL_FILE, Pipeline, open_store, start_pipeline
from gateway.settings import Settings
from gateway.store_process import StoreProcess
from gateway.store_transport import StoreProcessTransport
from schemas.events import AttemptOutcome, UpstreamAttemptEvent
from schemas.wire import encode_record
from tests.support.gateway import Source, build_config, gateway_settings
from tests.support.net import free_port
from tests.support.pipeline import request_event, scalar, wait_for
from tests.support.upstreams import DemoUpstreams

pytestmark = pytest.mark.clickhouse

DUPLICATES = "SELECT count() - uniqExact(event_id) FROM apicat.requests"


def embedded_settings(tmp_path: Path, **overrides: object) -> Settings:
    return gateway_settings(tmp_path / "data", embedded_clickhouse_port=0, **overrides)


@contextlib.asynccontextmanager
async def reading(settings: Settings) -> AsyncIterator[EventStore]:
    """The store as ``apicat query`` resolves it (the running store process)."""
    store = await open_store(settings)
    try:
        yield store
    finally:
        await store.aclose()


@contextlib.asynccontextmanager
async def running_pipeline(settings: Settings, role: str = "gateway") -> AsyncIterator[Pipeline]:
    """``start_pipeline`` as ``apicat serve`` runs it; the emitter and then the store closed."""
    pipeline = await start_pipeline(settings, role)
    try:
        yield pipeline
    finally:
        await pipeline.emitter.aclose()
        await pipeline.aclose()


async def flush_all(emitter: BufferedEmitter) -> None:
    """Until the emitter has handed every event to the store (the store may be restarting)."""

    async def flushed() -> bool:
        try:
            await emitter.flush()
        except TransportError:
            return False
        return True

    await wait_for(flushed, "every event stored")


async def drive(
    upstreams: DemoUpstreams, settings: Settings, emitter: BufferedEmitter, requests: int
) -> list[UpstreamAttemptEvent]:
    """Send ``requests`` distinct requests through a gateway whose events go to ``emitter``."""
    upstreams.set_knobs("alpha", invalid_schema_rate=0.3, seed=7)
    upstreams.set_knobs("alpha-mirror")
    upstreams.set_knobs("beta", latency={"kind": "fixed", "median_ms": 5})
    config = build_config(
        upstreams,
        {"anime": [Source("alpha", 1, fallbacks=["alpha-mirror"]), Source("beta", 2)]},
    )
    seen: list[UpstreamAttemptEvent] = []
    container = Container(settings, config, emitter=emitter)
    original_emit = emitter.emit

    def spy(event: object) -> None:
        if isinstance(event, UpstreamAttemptEvent):
            seen.append(event)
        original_emit(event)  # type: ignore[arg-type]

    emitter.emit = spy  # type: ignore[method-assign]
    app = create_app(container)
    async with app.test_app():
        client = app.test_client()
        for number in range(requests):
            response = await client.get(f"/api/v1/search?category=anime&q=q{number}")
            assert response.status_code == 200
        await flush_all(emitter)
    # Leaving test_app closed the container, which closed the emitter.
    assert emitter.stats().dropped_total == 0
    return seen


async def test_every_request_and_attempt_is_stored_exactly_once(
    upstreams: DemoUpstreams, tmp_path: Path
) -> None:
    settings = embedded_settings(tmp_path, retry_attempts=1)
    pipeline = await start_pipeline(settings, "gateway")
    try:
        attempts = await drive(upstreams, settings, pipeline.emitter, requests=25)
        async with reading(settings) as store:
            assert await scalar(store, "SELECT count() FROM apicat.requests") == 25
            for source in ("alpha", "alpha-mirror", "beta"):
                sent = sum(
                    1
                    for a in attempts
                    if a.source_name == (source if source != "alpha-mirror" else "alpha")
                    and (a.depth == 1) == (source == "alpha-mirror")
                )
                stored = await scalar(
                    store,
                    "SELECT count() FROM apicat.upstream_attempts "
                    f"WHERE source_name = '{source.removesuffix('-mirror')}' "
                    f"AND depth = {1 if source.endswith('-mirror') else 0}",
                )
                assert stored == sent
            invalid = sum(1 for a in attempts if a.outcome is AttemptOutcome.INVALID_SCHEMA)
            assert invalid > 0
            failures = await scalar(store, "SELECT count() FROM apicat.validation_failures")
            assert failures == invalid
            assert await scalar(store, DUPLICATES) == 0
    finally:
        await pipeline.aclose()
    http_calls = sum(1 for a in attempts if a.outcome is not AttemptOutcome.CIRCUIT_OPEN)
    received = sum(upstreams.calls(name) for name in ("alpha", "alpha-mirror", "beta"))
    assert http_calls == received, "one attempt event per HTTP call the upstreams received"


async def test_killed_store_process_is_restarted_and_no_event_is_lost_or_doubled(
    tmp_path: Path,
) -> None:
    settings = embedded_settings(tmp_path)
    async with running_pipeline(settings) as pipeline:
        emitter, process = pipeline.emitter, pipeline.store_process
        assert process is not None and process.pid is not None
        killed = process.pid
        for number in range(300):
            emitter.emit(request_event(number))
        await flush_all(emitter)
        for number in range(300, 600):
            emitter.emit(request_event(number))
        flushing = asyncio.ensure_future(emitter.flush())
        await asyncio.sleep(0)  # the batch is on its way when the store dies
        os.kill(killed, signal.SIGKILL)
        with contextlib.suppress(TransportError):
            await flushing
        for number in range(600, 900):
            emitter.emit(request_event(number))

        async def restarted() -> bool:
            return process.pid != killed and process.url is not None

        await wait_for(restarted, "the store process to be restarted")
        await flush_all(emitter)
        assert process.restarts == 1
        assert emitter.stats().dropped_total == 0
        async with reading(settings) as store:
            assert await scalar(store, "SELECT count() FROM apicat.requests") == 900
            assert await scalar(store, DUPLICATES) == 0


class AnswerLostOnce:
    """Transport whose first batch is stored but answered with an error, as if the answer
    were lost; ``meanwhile`` runs before that error (events emitted during the send)."""

    name = "embedded"

    def __init__(self, inner: StoreProcessTransport, meanwhile: object) -> None:
        self._inner = inner
        self._meanwhile = meanwhile
        self.lost = 0

    async def send(self, batch: Sequence[bytes]) -> None:
        await self._inner.send(batch)
        if not self.lost:
            self.lost = len(batch)
            assert callable(self._meanwhile)
            self._meanwhile()
            raise TransportError("answer lost")

    async def aclose(self) -> None:
        await self._inner.aclose()


async def test_batch_whose_answer_was_lost_is_replayed_without_duplicates(
    tmp_path: Path,
) -> None:
    settings = embedded_settings(tmp_path)
    async with running_pipeline(settings) as pipeline:
        assert pipeline.store_process is not None
        process = pipeline.store_process
        emitter: BufferedEmitter

        def emit_more() -> None:
            for number in range(25, 55):
                emitter.emit(request_event(number))

        transport = AnswerLostOnce(StoreProcessTransport(lambda: process.url), emit_more)
        emitter = BufferedEmitter(transport, tmp_path / "journal", EmitterPolicy(batch_size=40))
        try:
            for number in range(25):
                emitter.emit(request_event(number))
            with pytest.raises(TransportError):
                await emitter.flush()
            # The stored batch and the events emitted meanwhile are replayed as one batch:
            # another deduplication token, so the store's window of recent ids drops them.
            assert emitter.stats().journal_pending == 55
            await flush_all(emitter)
        finally:
            await emitter.aclose()
        assert transport.lost == 25
        async with reading(settings) as store:
            assert await scalar(store, "SELECT count() FROM apicat.requests") == 55
            assert await scalar(store, DUPLICATES) == 0


async def test_batch_stored_by_a_store_process_that_then_died_is_not_stored_again(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    process = StoreProcess(data, 0, data / EMBEDDED_URL_FILE, restart_initial_s=0.05)
    await process.start()
    transport = StoreProcessTransport(lambda: process.url)
    try:
        first = [encode_record(request_event(number)) for number in range(50)]
        more = [encode_record(request_event(number)) for number in range(50, 80)]
        await transport.send(first)  # stored; the store dies before the sender hears back
        killed = process.pid
        assert killed is not None
        os.kill(killed, signal.SIGKILL)

        async def restarted() -> bool:
            return process.pid != killed and process.url is not None

        await wait_for(restarted, "the store process to be restarted")
        await transport.send(first + more)  # the sender's replay, regrouped
        async with reading(embedded_settings(tmp_path)) as store:
            assert await scalar(store, "SELECT count() FROM apicat.requests") == 80
            assert await scalar(store, DUPLICATES) == 0
    finally:
        await transport.aclose()
        await process.aclose()


async def test_prober_sends_to_the_store_process_of_a_running_gateway(tmp_path: Path) -> None:
    settings = embedded_settings(tmp_path)
    async with (
        running_pipeline(settings) as gateway,
        running_pipeline(settings, "prober") as prober,
    ):
        assert prober.store_process is None
        assert prober.query_url == gateway.query_url
        prober.emitter.emit(request_event(1))
        gateway.emitter.emit(request_event(2))
        await flush_all(prober.emitter)
        await flush_all(gateway.emitter)
        async with reading(settings) as store:
            assert await scalar(store, "SELECT count() FROM apicat.requests") == 2


@contextlib.contextmanager
def serving(
    tmp_path: Path,
) -> Iterator[tuple[str, dict[str, str], subprocess.Popen[bytes]]]:
    """``apicat serve --demo`` with its own data dir; yields (base URL, env, process)."""
    env = {
        **os.environ,
        "APICAT_DATA_DIR": str(tmp_path / "data"),
        "APICAT_EMBEDDED_CLICKHOUSE_PORT": "0",
        "APICAT_LOG_LEVEL": "WARNING",
    }
    port = free_port()
    command = [sys.executable, "-c", "from gateway.cli import main; main()", "serve", "--demo"]
    process = subprocess.Popen(
        [*command, "--port", str(port), "--demo-port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        for _ in range(20):  # the banner is a handful of lines
            line = process.stdout.readline().decode()
            if line.startswith("events:") or not line:
                break
        assert line.startswith("events:"), f"serve did not start: {line!r}"
        yield f"http://127.0.0.1:{port}", env, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def apicat(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from gateway.cli import main; main()", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_apicat_query_reads_the_store_while_serve_holds_it(tmp_path: Path) -> None:
    with serving(tmp_path) as (base, env, _process):
        with httpx.Client(base_url=base, timeout=10, trust_env=False) as client:
            for number in range(5):
                client.get("/api/v1/anime-terbaru", params={"category": "drakor", "n": number})
            health = client.get("/health").json()
        assert health["checks"]["events"]["transport"] == "embedded"
        # The flusher runs every second; poll the store (bounded) rather than guess.
        rows: list[dict[str, object]] = []
        for _ in range(50):
            result = apicat(
                env, "query", "SELECT count() AS n FROM apicat.requests", "--format", "json"
            )
            assert result.returncode == 0, result.stderr
            rows = json.loads(result.stdout)
            if rows[0]["n"] == 5:
                break
        assert rows == [{"n": 5}]
        csv = apicat(env, "query", "SELECT 1 AS one, 'x' AS two", "--format", "csv")
        assert csv.stdout.splitlines() == ["one,two", "1,x"] or csv.stdout.splitlines() == [
            '"one","two"',
            '1,"x"',
        ]
        table = apicat(env, "query", "SELECT 42 AS answer")
        assert "answer" in table.stdout and "42" in table.stdout
        bad = apicat(env, "query", "SELECT * FROM apicat.no_such_table")
        assert bad.returncode == 1
        assert "no_such_table" in bad.stderr
        assert "Traceback" not in bad.stderr


def test_serve_exits_2_when_the_store_is_held_by_another_process(tmp_path: Path) -> None:
    data = tmp_path / "data"
    holder = subprocess.Popen(
        [sys.executable, "-m", "consumers.store_server", "--data-dir", str(data), "--port", "0"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().startswith(b"apicat store listening on ")
        env = {**os.environ, "APICAT_DATA_DIR": str(data), "APICAT_EMBEDDED_CLICKHOUSE_PORT": "0"}
        command = [sys.executable, "-c", "from gateway.cli import main; main()", "serve"]
        result = subprocess.run(
            [*command, "--demo", "--port", str(free_port()), "--demo-port", "0"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        assert holder.stdin is not None
        holder.stdin.close()  # end of stdin stops the store process
        holder.wait(timeout=30)
        if holder.stdout is not None:
            holder.stdout.close()
    assert result.returncode == 2, result.stderr
    assert "error: cannot open the event store" in result.stderr
    assert "one process per data dir" in result.stderr
    assert "Traceback" not in result.stderr
    assert holder.returncode == 0


def test_store_process_stops_when_serve_is_killed(tmp_path: Path) -> None:
    with serving(tmp_path) as (_base, env, process):
        url = (Path(env["APICAT_DATA_DIR"]) / EMBEDDED_URL_FILE).read_text().strip()
        store_pid = httpx.get(url + "/_apicat/store", trust_env=False).json()["pid"]
        process.kill()
        process.wait(timeout=10)
        deadline = 30.0
        while _alive(store_pid):
            assert deadline > 0, "the store process outlived apicat serve"
            deadline -= 0.05
            time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_signal_to_the_process_group_still_stores_the_last_events(tmp_path: Path) -> None:
    with serving(tmp_path) as (base, env, process):
        with httpx.Client(base_url=base, timeout=10, trust_env=False) as client:
            for number in range(5):
                client.get("/api/v1/anime-terbaru", params={"category": "drakor", "n": number})
        # Within the emitter's linger: the events are still buffered in the gateway, and
        # the store process receives the same SIGTERM.
        os.killpg(process.pid, signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    result = apicat(env, "query", "SELECT count() AS n FROM apicat.requests", "--format", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [{"n": 5}]


async def test_store_process_runs_below_the_gateways_priority(tmp_path: Path) -> None:
    # Its inserts and merges must not steal the CPU from request serving on a small machine.
    async with running_pipeline(embedded_settings(tmp_path)) as pipeline:
        process = pipeline.store_process
        assert process is not None and process.pid is not None
        store_niceness = os.getpriority(os.PRIO_PROCESS, process.pid)
        assert store_niceness == min(os.getpriority(os.PRIO_PROCESS, 0) + STORE_NICENESS, 19)
