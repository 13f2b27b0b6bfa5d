"""Embedded event pipeline: every attempt lands in chDB exactly once, queryable while serving."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import httpx
import orjson
import pytest

from consumers.embedded import EmbeddedTransport
from consumers.migrate import migrate
from consumers.store import ChdbStore, StoreError
from gateway.app import create_app
from gateway.container import Container
from gateway.emitter import BufferedEmitter, TransportError
from schemas.events import AttemptOutcome, UpstreamAttemptEvent
from tests.support.gateway import Source, build_config, gateway_settings
from tests.support.net import free_port
from tests.support.upstreams import DemoUpstreams

pytestmark = pytest.mark.clickhouse


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[ChdbStore]:
    opened = ChdbStore(tmp_path / "chdb")
    try:
        await migrate(opened)
        yield opened
    finally:
        await opened.aclose()


async def count(store: ChdbStore, sql: str) -> int:
    rows = orjson.loads(b"[" + b",".join((await store.query(sql)).splitlines()) + b"]")
    return int(next(iter(rows[0].values())))


class FailingFirst:
    """Store wrapper whose first ``failures`` inserts fail as if the store were down."""

    def __init__(self, inner: ChdbStore, failures: int) -> None:
        self._inner = inner
        self.failures_left = failures

    async def insert(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[object]], token: str
    ) -> None:
        if self.failures_left > 0:
            self.failures_left -= 1
            raise StoreError("store is down", retriable=True)
        await self._inner.insert(table, columns, rows, token)

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


async def drive(
    upstreams: DemoUpstreams, tmp_path: Path, transport: EmbeddedTransport, requests: int
) -> list[UpstreamAttemptEvent]:
    """Send ``requests`` distinct requests through a gateway whose events go to ``transport``."""
    upstreams.set_knobs("alpha", invalid_schema_rate=0.3, seed=7)
    upstreams.set_knobs("alpha-mirror")
    upstreams.set_knobs("beta", latency={"kind": "fixed", "median_ms": 5})
    config = build_config(
        upstreams,
        {"anime": [Source("alpha", 1, fallbacks=["alpha-mirror"]), Source("beta", 2)]},
    )
    emitter = BufferedEmitter(transport, tmp_path / "journal")
    seen: list[UpstreamAttemptEvent] = []
    container = Container(gateway_settings(tmp_path, retry_attempts=1), config, emitter=emitter)
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
        for _ in range(10):  # bounded: each failed flush journals, the next replays
            try:
                await emitter.flush()
                break
            except TransportError:
                continue
    # Leaving test_app closed the container, which flushed the emitter.
    assert emitter.stats().dropped_total == 0
    return seen


async def test_every_request_and_attempt_is_stored_exactly_once(
    upstreams: DemoUpstreams, tmp_path: Path, store: ChdbStore
) -> None:
    attempts = await drive(upstreams, tmp_path, EmbeddedTransport(store), requests=25)
    assert await count(store, "SELECT count() FROM apicat.requests") == 25
    for source in ("alpha", "alpha-mirror", "beta"):
        sent = sum(
            1
            for a in attempts
            if a.source_name == (source if source != "alpha-mirror" else "alpha")
            and (a.depth == 1) == (source == "alpha-mirror")
        )
        stored = await count(
            store,
            "SELECT count() FROM apicat.upstream_attempts "
            f"WHERE source_name = '{source.removesuffix('-mirror')}' "
            f"AND depth = {1 if source.endswith('-mirror') else 0}",
        )
        assert stored == sent
    http_calls = sum(1 for a in attempts if a.outcome is not AttemptOutcome.CIRCUIT_OPEN)
    received = sum(upstreams.calls(name) for name in ("alpha", "alpha-mirror", "beta"))
    assert http_calls == received, "one attempt event per HTTP call the upstreams received"
    invalid = sum(1 for a in attempts if a.outcome is AttemptOutcome.INVALID_SCHEMA)
    assert invalid > 0
    assert await count(store, "SELECT count() FROM apicat.validation_failures") == invalid
    assert await count(store, "SELECT count() - uniqExact(event_id) FROM apicat.requests") == 0


async def test_store_outage_is_journaled_and_replayed_without_loss_or_duplicates(
    upstreams: DemoUpstreams, tmp_path: Path, store: ChdbStore
) -> None:
    flaky = FailingFirst(store, failures=3)
    await drive(upstreams, tmp_path, EmbeddedTransport(flaky), requests=10)  # type: ignore[arg-type]
    assert flaky.failures_left == 0
    assert (await count(store, "SELECT count() FROM apicat.requests")) == 10
    assert await count(store, "SELECT count() FROM apicat.requests") == 10
    assert await count(store, "SELECT count() - uniqExact(event_id) FROM apicat.requests") == 0


@contextlib.contextmanager
def serving(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """``apicat serve --demo`` in a subprocess with its own data dir; yields (base URL, env)."""
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
    )
    try:
        assert process.stdout is not None
        for _ in range(20):  # the banner is a handful of lines
            line = process.stdout.readline().decode()
            if line.startswith("events:") or not line:
                break
        assert line.startswith("events:"), f"serve did not start: {line!r}"
        yield f"http://127.0.0.1:{port}", env
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
    with serving(tmp_path) as (base, env):
        with httpx.Client(base_url=base, timeout=10, trust_env=False) as client:
            for number in range(5):
                client.get("/api/v1/anime-terbaru", params={"category": "drakor", "n": number})
            health = client.get("/health").json()
        assert health["checks"]["events"]["transport"] == "embedded"
        # The flusher runs every 200 ms; poll the store (bounded) rather than guess.
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
