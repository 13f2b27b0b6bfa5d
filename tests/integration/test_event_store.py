"""The event store against the real engine: chDB in-process, and clickhouse-connect over HTTP.

Every ``store`` test runs twice: on ``ChdbStore`` and on ``ClickHouseStore`` talking to a
``chdb_http`` server started on port 0 in the test. chDB hosts one engine per process bound to
one data path, so each test opens its store on its own ``tmp_path`` and closes it at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from consumers.chdb_http import serve_chdb_http
from consumers.migrate import migrate, split_statements
from consumers.query import run_query
from consumers.rows import COLUMNS, event_to_row
from consumers.store import (
    ChdbStore,
    ClickHouseStore,
    EventStore,
    StoreError,
    clean_error_message,
    qualified_table,
)
from schemas.events import EventEnvelope, RequestEvent, UpstreamAttemptEvent
from tests.conftest import service_missing
from tests.unit.test_rows import SAMPLES

try:
    import chdb  # noqa: F401  (only probing that the engine is installed)
except ImportError:  # pragma: no cover - depends on the environment
    CHDB_MISSING = True
else:
    CHDB_MISSING = False

pytestmark = pytest.mark.clickhouse

# Recent enough to survive the tables' TTL, whole milliseconds as DateTime64(3) stores them.
NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
TOPIC = "apicat.events"


@contextlib.asynccontextmanager
async def chdb_http(store: ChdbStore) -> AsyncIterator[str]:
    """A chdb_http server on a free loopback port; yields its URL."""
    stop = asyncio.Event()
    port: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    server = asyncio.create_task(serve_chdb_http(store, "127.0.0.1", 0, stop.wait, port.set_result))
    await asyncio.wait({server, port}, return_when=asyncio.FIRST_COMPLETED)
    if server.done():
        server.result()  # raises why it could not start
    try:
        yield f"http://127.0.0.1:{port.result()}/"
    finally:
        stop.set()
        await server


@pytest.fixture
async def chdb_store(tmp_path: Path) -> AsyncIterator[ChdbStore]:
    if CHDB_MISSING:
        service_missing("chDB", "install it: .venv/bin/pip install chdb")
    store = ChdbStore(tmp_path / "chdb")
    try:
        yield store
    finally:
        await store.aclose()


@pytest.fixture(params=["chdb", "clickhouse-http"])
async def store(request: pytest.FixtureRequest, chdb_store: ChdbStore) -> AsyncIterator[EventStore]:
    """A migrated, empty store: chDB directly, or clickhouse-connect → chdb_http → chDB."""
    if request.param == "chdb":
        await migrate(chdb_store)
        yield chdb_store
        return
    async with chdb_http(chdb_store) as url:
        remote = ClickHouseStore(url)
        try:
            await migrate(remote)
            yield remote
        finally:
            await remote.aclose()


def rows_of(
    *events: EventEnvelope, partition: int = 0, first_offset: int = 0
) -> tuple[str, tuple[str, ...], list[tuple[object, ...]]]:
    """(table, columns, rows) of same-type events, as the consumer builds an insert."""
    rows = []
    table = ""
    for offset, event in enumerate(events, start=first_offset):
        table, row = event_to_row(event.model_dump(mode="json"), TOPIC, partition, offset)
        rows.append(tuple(row[column] for column in COLUMNS[table]))
    return table, COLUMNS[table], rows


async def insert(store: EventStore, *events: EventEnvelope, token: str = "t1", **kw: int) -> str:
    table, columns, rows = rows_of(*events, **kw)
    await store.insert(table, columns, rows, token)
    return table


async def select(store: EventStore, sql: str) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = orjson.loads(await run_query(store, sql, "json"))
    return rows


def attempt(source: str = "s1", outcome: str = "ok", latency_ms: float = 10.0) -> EventEnvelope:
    return UpstreamAttemptEvent(
        ts=NOW,
        category="anime",
        endpoint="/api/v1/home",
        source_name=source,
        role="primary",
        depth=0,
        url="http://a/v1/home",
        status_code=200,
        latency_ms=latency_ms,
        outcome=outcome,
        bytes=100,
    )


def request_event(fallback_depth: int | None, latency_ms: float) -> EventEnvelope:
    return RequestEvent(
        ts=NOW,
        category="anime",
        endpoint="/api/v1/home",
        path="/api/v1/home",
        status=200,
        cache_status="MISS",
        source_name="s1",
        fallback_depth=fallback_depth,
        latency_ms=latency_ms,
    )


async def test_migrate_twice_applies_every_file_once(chdb_store: ChdbStore) -> None:
    assert await migrate(chdb_store) == ["001_events.sql", "002_rollups.sql"]
    assert await migrate(chdb_store) == []

    tables = (await chdb_store.query("SHOW TABLES FROM apicat", "TabSeparated")).split()
    assert {t.decode() for t in tables} >= {*COLUMNS, "attempts_per_minute", "requests_per_minute"}


@pytest.mark.parametrize("event_type", sorted(SAMPLES))
async def test_each_event_type_reads_back_equal(store: EventStore, event_type: str) -> None:
    sample = SAMPLES[event_type].model_copy(update={"ts": NOW + timedelta(milliseconds=123)})
    table, row = event_to_row(sample.model_dump(mode="json"), TOPIC, 2, 7)
    await store.insert(table, COLUMNS[table], [tuple(row[c] for c in COLUMNS[table])], "t")

    stored = await select(store, f"SELECT * FROM apicat.{table}")

    expected = {**row, "ts": (NOW + timedelta(milliseconds=123)).strftime("%Y-%m-%d %H:%M:%S.123")}
    assert stored == [expected]


async def test_repeated_insert_with_the_same_token_is_stored_once(store: EventStore) -> None:
    events = [attempt(), attempt()]
    await insert(store, *events, token="batch-1")
    await insert(store, *events, token="batch-1")

    assert await select(store, "SELECT count() AS n FROM apicat.upstream_attempts") == [{"n": 2}]


async def test_insert_with_another_token_is_stored_again(store: EventStore) -> None:
    events = [attempt()]
    await insert(store, *events, token="batch-1")
    await insert(store, *events, token="batch-2")

    assert await select(store, "SELECT count() AS n FROM apicat.upstream_attempts") == [{"n": 2}]
    # ReplacingMergeTree collapses the duplicate event once merged (FINAL merges on read).
    final = "SELECT count() AS n FROM apicat.upstream_attempts FINAL"
    assert await select(store, final) == [{"n": 1}]


async def test_large_batch_is_stored_completely(store: EventStore) -> None:
    # One body of 5,000 rows, values varied, must arrive whole through either store.
    events = [attempt(source=f"s{i % 7}", latency_ms=i * 1.37) for i in range(5000)]
    await insert(store, *events, token="big")

    rows = await select(
        store, "SELECT count() AS n, max(_offset) AS o FROM apicat.upstream_attempts"
    )
    assert rows == [{"n": 5000, "o": 4999}]


async def test_max_offsets_reports_the_highest_offset_per_partition(store: EventStore) -> None:
    await insert(store, attempt(), attempt(), partition=0, first_offset=5, token="a")
    await insert(store, attempt(), partition=1, first_offset=3, token="b")

    assert await store.max_offsets("upstream_attempts", TOPIC) == {0: 6, 1: 3}
    assert await store.max_offsets("upstream_attempts", "apicat.other") == {}
    assert await store.max_offsets("requests", TOPIC) == {}


async def test_attempt_rollup_counts_and_summarises_latency(store: EventStore) -> None:
    await insert(store, *(attempt(latency_ms=float(ms)) for ms in range(1, 101)), token="a")
    await insert(store, attempt(source="s2", outcome="timeout", latency_ms=15000.0), token="b")

    rows = await select(
        store,
        "SELECT source_name, outcome, sum(attempts) AS attempts, sum(latency_ms_sum) AS total,"
        " quantilesTDigestMerge(0.5, 0.99)(latency_ms_quantiles) AS q"
        " FROM apicat.attempts_per_minute GROUP BY source_name, outcome ORDER BY source_name",
    )

    assert [(r["source_name"], r["outcome"], r["attempts"], r["total"]) for r in rows] == [
        ("s1", "ok", 100, 5050.0),
        ("s2", "timeout", 1, 15000.0),
    ]
    quantiles = rows[0]["q"]
    assert isinstance(quantiles, list)
    p50, p99 = quantiles
    assert 45 <= p50 <= 55 and 95 <= p99 <= 100


async def test_request_rollup_counts_fallbacks(store: EventStore) -> None:
    events = [request_event(0, 5.0), request_event(1, 7.0), request_event(None, 9.0)]
    await insert(store, *events)

    rows = await select(
        store,
        "SELECT minute, sum(requests) AS requests, sum(fallbacks) AS fallbacks"
        " FROM apicat.requests_per_minute GROUP BY minute",
    )

    assert rows == [
        {"minute": NOW.strftime("%Y-%m-%d %H:%M:00"), "requests": 3, "fallbacks": 1},
    ]


async def test_validation_failure_rollup_counts_each_failed_rule(store: EventStore) -> None:
    await insert(store, SAMPLES["validation_failure"].model_copy(update={"ts": NOW}))

    rows = await select(
        store,
        "SELECT rule, sum(failed_fields) AS n FROM apicat.validation_failures_per_minute"
        " GROUP BY rule ORDER BY rule",
    )

    assert rows == [{"rule": "placeholder", "n": 1}, {"rule": "required", "n": 1}]


async def test_retried_insert_is_not_counted_twice_by_rollups(store: EventStore) -> None:
    await insert(store, attempt(), token="same")
    await insert(store, attempt(), token="same")

    rows = await select(store, "SELECT sum(attempts) AS n FROM apicat.attempts_per_minute")
    assert rows == [{"n": 1}]


async def test_distinct_batches_with_identical_rollup_rows_are_both_counted(
    store: EventStore,
) -> None:
    # The rollup tables deduplicate too; only a retry of the same source block may be dropped.
    await insert(store, attempt(), token="first")
    await insert(store, attempt(), token="second")

    rows = await select(store, "SELECT sum(attempts) AS n FROM apicat.attempts_per_minute")
    assert rows == [{"n": 2}]


async def test_run_query_renders_json_csv_and_table(store: EventStore) -> None:
    await insert(store, attempt(source="s1"), attempt(source="s2"))
    sql = "SELECT source_name, bytes FROM apicat.upstream_attempts ORDER BY source_name"

    json_rows = await run_query(store, sql, "json")
    csv_text = await run_query(store, sql, "csv")
    table_text = await run_query(store, sql, "table")

    # UInt64 comes back as a JSON number, not ClickHouse's quoted string.
    assert orjson.loads(json_rows) == [
        {"source_name": "s1", "bytes": 100},
        {"source_name": "s2", "bytes": 100},
    ]
    assert csv_text == '"source_name","bytes"\n"s1",100\n"s2",100\n'
    header, first, second = table_text.splitlines()[:3]
    assert "source_name" in header and "bytes" in header
    assert "s1" in first and "s2" in second
    assert len({len(line) for line in table_text.splitlines()}) == 1  # aligned


async def test_run_query_json_of_a_statement_without_rows_is_an_empty_array(
    store: EventStore,
) -> None:
    assert await run_query(store, "SELECT 1 AS x WHERE 0", "json") == "[]"


@pytest.mark.parametrize(
    ("sql", "names"),
    [
        ("SELECT * FROM apicat.no_such_table", "UNKNOWN_TABLE"),
        ("SELEC 1", "Syntax error"),
        ("SELECT no_such_column FROM apicat.requests", "UNKNOWN_IDENTIFIER"),
    ],
)
async def test_bad_sql_raises_clickhouse_message_without_stack_trace(
    store: EventStore, sql: str, names: str
) -> None:
    with pytest.raises(StoreError) as caught:
        await run_query(store, sql, "table")

    assert caught.value.retriable is False
    assert caught.value.message.startswith("Code: ")
    assert names in caught.value.message
    assert "Stack trace" not in caught.value.message and "(version" not in caught.value.message


async def test_insert_into_a_missing_table_is_not_retriable(store: EventStore) -> None:
    with pytest.raises(StoreError) as caught:
        await store.insert("no_such_table", ("a",), [(1,)], "t")

    assert caught.value.retriable is False


async def test_set_and_use_statements_leave_no_state_behind(store: EventStore) -> None:
    await store.command("SET max_result_rows = 1")
    await store.command("USE system")

    assert len(await select(store, "SELECT number FROM numbers(3)")) == 3
    assert await select(store, "SELECT currentDatabase() AS db") == [{"db": "default"}]


async def test_ping_answers(store: EventStore) -> None:
    await store.ping()


async def test_chdb_http_speaks_clickhouse_http(chdb_store: ChdbStore) -> None:
    def get(url: str) -> tuple[int, dict[str, str], bytes]:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, dict(error.headers), error.read()

    async with chdb_http(chdb_store) as url:
        ping = await asyncio.to_thread(get, url + "ping")
        ok = await asyncio.to_thread(get, url + "?query=SELECT+1+AS+x+FORMAT+JSONEachRow")
        bad = await asyncio.to_thread(get, url + "?query=SELECT+*+FROM+nope")

    assert ping[0] == 200 and ping[2] == b"Ok.\n"
    assert ok[0] == 200 and ok[2] == b'{"x":1}\n'
    assert ok[1]["x-clickhouse-format"] == "JSONEachRow"
    assert ok[1]["x-clickhouse-timezone"]
    assert "read_rows" in orjson.loads(ok[1]["x-clickhouse-summary"])
    assert bad[0] == 500 and bad[1]["x-clickhouse-exception-code"] == "60"
    assert bad[2].startswith(b"Code: 60. DB::Exception: ") and b"(version " in bad[2]


async def test_chdb_http_takes_clickhouse_connects_native_inserts(chdb_store: ChdbStore) -> None:
    # Our stores send JSON rows, but other clients (clickhouse-connect's own insert, Grafana
    # tools) send Native: binary bodies with arbitrary bytes, once cut short by the engine.
    import clickhouse_connect

    await migrate(chdb_store)
    rows = [
        [f"e{i}", f"s{i % 7}", i * 1.37, bytes(range(i % 256)).decode("latin-1")]
        for i in range(3000)
    ]
    async with chdb_http(chdb_store) as url:

        def insert_and_count() -> object:
            client = clickhouse_connect.get_client(dsn=url, autogenerate_session_id=False)
            try:
                client.insert(
                    "apicat.config_changes",
                    [[row[0], NOW, row[1], "edit", "t", row[3], str(row[2])] for row in rows],
                    column_names=["event_id", "ts", "actor", "action", "target", "before", "after"],
                )
                return client.query(
                    "SELECT count(), uniqExact(before) FROM apicat.config_changes"
                ).result_rows
            finally:
                client.close()

        counted = await asyncio.to_thread(insert_and_count)
    assert counted == [(3000, 256)]


async def test_chdb_http_refuses_a_non_loopback_address(chdb_store: ChdbStore) -> None:
    with pytest.raises(ValueError, match="loopback"):
        await serve_chdb_http(chdb_store, "0.0.0.0", 0, asyncio.Event().wait)


async def test_second_chdb_path_in_one_process_fails_until_the_first_closes(
    chdb_store: ChdbStore, tmp_path: Path
) -> None:
    await chdb_store.ping()
    same_path = ChdbStore(chdb_store.path)
    other_path = ChdbStore(tmp_path / "other")
    try:
        await same_path.ping()  # another session on the same path coexists
        with pytest.raises(StoreError) as caught:
            await other_path.ping()
        assert caught.value.code == 36  # BAD_ARGUMENTS: the engine is bound to another path

        await same_path.aclose()
        await chdb_store.aclose()
        await other_path.ping()  # every session of the first path closed: now it opens
    finally:
        await other_path.aclose()
        await same_path.aclose()


async def test_closed_store_refuses_calls(chdb_store: ChdbStore) -> None:
    await chdb_store.aclose()

    with pytest.raises(StoreError, match="closed"):
        await chdb_store.ping()


@pytest.mark.parametrize("bad", ["a;DROP", "a.b.c", "`x`", ""])
def test_table_names_are_validated(bad: str) -> None:
    with pytest.raises(StoreError, match="invalid table name"):
        qualified_table(bad)


def test_error_message_keeps_clickhouse_text_only() -> None:
    raw = (
        "Received ClickHouse exception, code: 60, server response: Code: 60. DB::Exception: "
        "Unknown table apicat.x. (UNKNOWN_TABLE) (version 26.9.2.1) (for url http://h:1)"
    )
    assert clean_error_message(raw) == (
        "Code: 60. DB::Exception: Unknown table apicat.x. (UNKNOWN_TABLE)"
    )
    assert clean_error_message("Code: 1. DB::Exception: x\nStack trace:\n0. f()") == (
        "Code: 1. DB::Exception: x"
    )


def test_statements_split_on_line_ending_semicolons_ignoring_comments() -> None:
    text = "-- a comment; with a semicolon;\nCREATE TABLE a (x UInt8);\n\nSELECT ';'\n;\n"
    assert split_statements(text) == ["CREATE TABLE a (x UInt8)", "SELECT ';'"]
