"""The event store seam: ``EventStore`` and its chDB and ClickHouse-server implementations."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar, cast

import orjson

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

DATABASE = "apicat"
_MAX_MESSAGE = 1000
# ClickHouse error codes worth retrying: overload, timeouts, network trouble, read-only
# replicas, unknown insert status. Everything else (bad SQL, unknown table, bad data) is not.
_RETRIABLE_CODES = frozenset(
    {3, 32, 159, 164, 202, 203, 209, 210, 236, 241, 242, 252, 279, 285, 319, 394, 425, 999}
)
_CODE = re.compile(r"Code: (\d+)\. DB::Exception: ")
_TRAILERS = re.compile(r"(?:\s*\((?:version [^)]*|for url [^)]*)\))+\s*$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LEADING_COMMENTS = re.compile(r"^(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*", re.S)
_SESSION_STATEMENT = re.compile(r"(?:SET|USE)\b", re.I)
# INSERT ... FORMAT <name>, then (as ClickHouse reads it) blanks, an optional CRLF, the data.
_INLINE_INSERT = re.compile(
    rb"(?P<head>\s*INSERT\b.*?)\bFORMAT[ \t\r\n]+(?P<format>[A-Za-z0-9_]+)[ \t\f]*\r?\n?",
    re.I | re.S,
)

# Recent engines also deduplicate a retried block in the rollup tables by themselves (their
# own deduplication window); older servers need this setting for it.
_DEDUP_VIEWS = "deduplicate_blocks_in_dependent_materialized_views"

T = TypeVar("T")


class StoreError(Exception):
    """The store refused or failed a call; ``retriable`` says whether trying again may help."""

    def __init__(self, message: str, retriable: bool, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retriable = retriable
        self.code = code


class EventStore(Protocol):
    """Where events are stored and analysed.

    Both implementations run the same SQL (schemas/clickhouse/) and raise the same
    ``StoreError``s, so the embedded mode (``ChdbStore``, chDB in the data dir) and the
    scale-out mode (``ClickHouseStore``, a server through clickhouse-connect) are
    interchangeable. Unqualified table names are in ``DATABASE``.
    """

    async def insert(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[object]], dedup_token: str
    ) -> None:
        """Insert ``rows`` as one block; the same ``dedup_token`` again is stored only once."""

    async def query(self, sql: str, fmt: str = "JSONEachRow") -> bytes:
        """Run ``sql`` and return its output in ClickHouse format ``fmt``."""

    async def command(self, sql: str) -> None:
        """Run a statement whose output is not needed (DDL, mutations)."""

    async def max_offsets(self, table: str, topic: str) -> dict[int, int]:
        """Partition → highest ``_offset`` stored in ``table`` from ``topic``."""

    async def ping(self) -> None:
        """Raise ``StoreError`` unless the store answers."""

    async def aclose(self) -> None:
        """Release the store; idempotent."""


def clean_error_message(text: str) -> str:
    """ClickHouse's own error text from a driver or engine message, without the noise.

    Keeps ``Code: N. DB::Exception: ... (NAME)``; drops driver prefixes, the stack trace and
    the ``(version ...)``/``(for url ...)`` trailers, and caps the length.
    """
    match = _CODE.search(text)
    if match:
        text = text[match.start() :]
    text = text.split("\nStack trace:", 1)[0].split(", Stack trace", 1)[0]
    text = _TRAILERS.sub("", text.strip())
    if len(text) > _MAX_MESSAGE:
        text = text[: _MAX_MESSAGE - 3].rstrip() + "..."
    return text


def error_code(text: str) -> int | None:
    """The ClickHouse error code in ``text`` (``Code: N.``), if any."""
    match = _CODE.search(text)
    return int(match.group(1)) if match else None


def _store_error(text: str, code: int | None = None) -> StoreError:
    code = error_code(text) if code is None else code
    return StoreError(clean_error_message(text), retriable=code in _RETRIABLE_CODES, code=code)


def quote_identifier(name: str) -> str:
    """``name`` as a back-quoted ClickHouse identifier (``failures.path`` stays one name)."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def quote_literal(value: str) -> str:
    """``value`` as a ClickHouse string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def qualified_table(table: str) -> str:
    """``db.table`` for a plain or qualified table name; rejects anything else (no injection)."""
    parts = table.split(".")
    if len(parts) == 1:
        parts = [DATABASE, *parts]
    if len(parts) != 2 or not all(_IDENTIFIER.match(part) for part in parts):
        raise StoreError(f"invalid table name {table!r}", retriable=False)
    return ".".join(parts)


def _offsets_query(table: str, topic: str) -> str:
    return (
        f"SELECT _partition, max(_offset) FROM {qualified_table(table)} "
        f"WHERE _topic = {quote_literal(topic)} GROUP BY _partition"
    )


def _parse_offsets(tsv: bytes) -> dict[int, int]:
    offsets: dict[int, int] = {}
    for line in tsv.splitlines():
        partition, offset = line.split(b"\t")
        offsets[int(partition)] = int(offset)
    return offsets


def is_session_statement(sql: str | bytes) -> bool:
    """``SET``/``USE``: session state, which a stateless call must not leave behind."""
    head = sql[:4096].decode(errors="replace") if isinstance(sql, bytes) else sql[:4096]
    comments = _LEADING_COMMENTS.match(head)
    return bool(_SESSION_STATEMENT.match(head, comments.end() if comments else 0))


@dataclass(frozen=True, slots=True)
class ChdbResult:
    """Output and counters of one chDB statement (what an HTTP summary header reports)."""

    data: bytes
    rows_read: int = 0
    bytes_read: int = 0
    rows_written: int = 0
    bytes_written: int = 0
    elapsed_s: float = 0.0


class _Result(Protocol):
    def bytes(self) -> bytes: ...
    def rows_read(self) -> int: ...
    def bytes_read(self) -> int: ...
    def rows_written(self) -> int: ...
    def bytes_written(self) -> int: ...
    def elapsed(self) -> float: ...


class _InsertResult(Protocol):
    rows_written: int
    bytes_written: int
    elapsed: float


class _Inserter(Protocol):
    def __enter__(self) -> _Inserter: ...
    def __exit__(self, *exc_info: object) -> None: ...
    def append(self, data: bytes) -> None: ...
    def finish(self) -> _InsertResult: ...


class _Session(Protocol):
    def query(
        self, sql: str | bytes, fmt: str = ..., params: Mapping[str, str] | None = ...
    ) -> _Result: ...
    def send_insert(self, query: str, fmt: str) -> _Inserter: ...
    def close(self) -> None: ...


def _stream_insert(session: _Session, inline: re.Match[bytes], sql: bytes) -> ChdbResult:
    # Inline data goes through chDB's streaming inserter, not the query text: the engine's
    # query path cut some binary (Native) bodies short ("Cannot read all data"), depending on
    # the bytes they contained. Leaving the block without finish() cancels the insert.
    with session.send_insert(inline["head"].decode(), inline["format"].decode()) as inserter:
        data = sql[inline.end() :]
        if data:
            inserter.append(data)
        done = inserter.finish()
    return ChdbResult(
        b"",
        rows_written=done.rows_written,
        bytes_written=done.bytes_written,
        elapsed_s=done.elapsed,
    )


class ChdbStore:
    """``EventStore`` on one embedded chDB session whose data lives in ``path``.

    Concurrency: every call runs in a worker thread (``asyncio.to_thread``) under one
    ``threading.Lock``, so calls on one store never overlap. chDB sessions are not safe to
    share between concurrent calls (an open streaming insert blocks the connection, and older
    chDB releases had no internal locking at all), and this one also carries per-call state
    (settings and current database of ``execute``) that must not interleave. A thread lock,
    not an asyncio one, keeps the store usable from any event loop and from plain threads.

    chDB hosts one engine per process, bound to one data path: a second ``ChdbStore`` on a
    *different* path in the same process fails (``StoreError``, code 36) until every session
    of the first is closed; several stores on the *same* path coexist. The session opens on
    first use and closes in ``aclose``.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._session: _Session | None = None
        self._closed = False
        self._settings: dict[str, str] = {}
        self._database = "default"

    def _open(self) -> _Session:
        if self._closed:
            raise StoreError("the event store is closed", retriable=False)
        if self._session is None:
            from chdb import session as chdb_session

            self.path.mkdir(parents=True, exist_ok=True)
            factory = cast(Callable[[str], _Session], chdb_session.Session)
            try:
                self._session = factory(str(self.path))
            except RuntimeError as exc:
                # One engine per process, one process per data dir: say which dir and why.
                error = _store_error(str(exc))
                raise StoreError(
                    f"cannot open chDB in {self.path} (one data dir per process, and only one "
                    f"process per data dir): {error.message}",
                    retriable=False,
                    code=error.code,
                ) from None
        return self._session

    def _prepare(self, session: _Session, settings: Mapping[str, str], database: str) -> None:
        # SET only what differs from the previous call, so a stream of calls with the same
        # settings (clickhouse-connect sends its defaults every time) costs no extra statement.
        changes = [f"{name} = DEFAULT" for name in self._settings if name not in settings]
        changes += [
            f"{name} = {quote_literal(value)}"
            for name, value in settings.items()
            if self._settings.get(name) != value
        ]
        if changes:
            if not all(_IDENTIFIER.match(name) for name in settings):
                raise StoreError("Code: 115. DB::Exception: invalid setting name", False, 115)
            try:
                session.query("SET " + ", ".join(changes))
            except RuntimeError as exc:
                # Unknown state now: put back every setting this store may have touched.
                for name in {*self._settings, *settings}:
                    try:
                        session.query(f"SET {name} = DEFAULT")
                    except RuntimeError:
                        continue  # an unknown setting name was never applied
                self._settings = {}
                raise _store_error(str(exc)) from None
            self._settings = dict(settings)
        if database != self._database:
            try:
                session.query(f"USE {quote_identifier(database)}")
            except RuntimeError as exc:
                raise _store_error(str(exc)) from None
            self._database = database

    def execute(
        self,
        sql: str | bytes,
        fmt: str = "TabSeparated",
        *,
        settings: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        database: str | None = None,
    ) -> ChdbResult:
        """Run one statement now, in the calling thread (blocking; takes the store's lock).

        Stateless like a ClickHouse HTTP call without a session: ``settings`` and
        ``database`` apply to this statement only, and ``SET``/``USE`` statements are
        accepted and do nothing. An INSERT may carry its data inline after ``FORMAT <name>``.

        Args:
            sql: the statement (bytes when inline insert data is binary).
            fmt: output format, unless the statement has its own ``FORMAT`` clause.
            settings: ClickHouse settings for this statement.
            params: values for ``{name:Type}`` query parameters.
            database: the current database for unqualified names (default ``default``).

        Returns:
            The output and counters.

        Raises:
            StoreError: with ClickHouse's message and code.
        """
        with self._lock:
            session = self._open()
            if is_session_statement(sql):
                return ChdbResult(b"")
            self._prepare(session, settings or {}, database or "default")
            try:
                raw = sql if isinstance(sql, bytes) else sql.encode()
                inline = _INLINE_INSERT.match(raw[:65536])
                if inline:
                    return _stream_insert(session, inline, raw)
                result = session.query(sql, fmt, params=dict(params) if params else None)
            except RuntimeError as exc:
                raise _store_error(str(exc)) from None
            return ChdbResult(
                data=result.bytes(),
                rows_read=result.rows_read(),
                bytes_read=result.bytes_read(),
                rows_written=result.rows_written(),
                bytes_written=result.bytes_written(),
                elapsed_s=result.elapsed(),
            )

    async def run(
        self,
        sql: str | bytes,
        fmt: str = "TabSeparated",
        *,
        settings: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        database: str | None = None,
    ) -> ChdbResult:
        """``execute`` in a worker thread (same arguments)."""
        return await asyncio.to_thread(
            lambda: self.execute(sql, fmt, settings=settings, params=params, database=database)
        )

    async def insert(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[object]], dedup_token: str
    ) -> None:
        if not rows:
            return
        statement = (
            f"INSERT INTO {qualified_table(table)} "
            f"({', '.join(quote_identifier(c) for c in columns)}) "
            f"SETTINGS insert_deduplication_token = {quote_literal(dedup_token)}, "
            f"{_DEDUP_VIEWS} = 1, date_time_input_format = 'best_effort' "
            "FORMAT JSONCompactEachRow\n"
        ).encode()
        await asyncio.to_thread(self._insert, statement, rows)

    def _insert(self, statement: bytes, rows: Sequence[Sequence[object]]) -> None:
        # One orjson call for the whole batch is ~6x faster than one per row; its outer
        # brackets are cut off because JSONCompactEachRow takes comma-separated rows.
        try:
            body = orjson.dumps(
                rows if isinstance(rows, list | tuple) else list(rows),
                option=orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z,
            )[1:-1]
        except TypeError as exc:
            raise StoreError(f"cannot encode rows: {exc}", retriable=False) from None
        self.execute(statement + body)

    async def query(self, sql: str, fmt: str = "JSONEachRow") -> bytes:
        return (await self.run(sql, fmt)).data

    async def command(self, sql: str) -> None:
        await self.run(sql)

    async def max_offsets(self, table: str, topic: str) -> dict[int, int]:
        return _parse_offsets((await self.run(_offsets_query(table, topic))).data)

    async def ping(self) -> None:
        await self.run("SELECT 1")

    def close(self) -> None:
        """Close the session now (blocking); idempotent."""
        with self._lock:
            self._closed = True
            if self._session is not None:
                self._session.close()
                self._session = None

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)


class ClickHouseStore:
    """``EventStore`` on a ClickHouse server over HTTP(S) with clickhouse-connect.

    ``url`` is a DSN such as ``http://user:password@host:8123/``. The synchronous client runs
    in worker threads; it is shared without a ClickHouse session (``session_id``), which is
    what makes concurrent calls safe. It connects on first use. Column types of each insert
    table are read once (``DESCRIBE``) and cached, saving a round trip per insert.
    """

    def __init__(self, url: str, *, compress: bool | str = True, timeout_s: int = 30) -> None:
        self.url = url
        self._compress = compress
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._client: Client | None = None
        self._closed = False
        self._types: dict[str, dict[str, str]] = {}

    def _connect(self) -> Client:
        with self._lock:
            if self._closed:
                raise StoreError("the event store is closed", retriable=False)
            if self._client is None:
                import clickhouse_connect

                self._client = clickhouse_connect.get_client(
                    dsn=self.url,
                    compress=self._compress,
                    autogenerate_session_id=False,
                    dedicated_pool=True,
                    connect_timeout=10,
                    send_receive_timeout=self._timeout_s,
                    client_name="apicat",
                )
            return self._client

    def _call(self, work: Callable[[Client], T]) -> T:
        from clickhouse_connect.driver import exceptions

        try:
            return work(self._connect())
        except exceptions.Error as exc:
            if exc.code is None and isinstance(exc, exceptions.OperationalError):
                # Transport trouble (refused, reset, timed out) rather than a ClickHouse error.
                raise StoreError(clean_error_message(str(exc)), True) from None
            raise _store_error(str(exc), exc.code) from None
        except OSError as exc:
            raise StoreError(str(exc), retriable=True) from None

    async def _run(self, work: Callable[[Client], T]) -> T:
        return await asyncio.to_thread(self._call, work)

    async def insert(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[object]], dedup_token: str
    ) -> None:
        if not rows:
            return
        qualified = qualified_table(table)
        types = await self._column_types(qualified)
        try:
            type_names = [types[column] for column in columns]
        except KeyError as exc:
            self._types.pop(qualified, None)  # the table may have changed; look again next time
            raise StoreError(f"no column {exc} in {qualified}", retriable=False) from None
        await self._run(
            lambda client: client.insert(
                qualified,
                rows,
                column_names=list(columns),
                column_type_names=type_names,
                settings={"insert_deduplication_token": dedup_token, _DEDUP_VIEWS: 1},
            )
        )

    async def _column_types(self, qualified: str) -> dict[str, str]:
        if qualified not in self._types:
            rows = await self.query(f"DESCRIBE TABLE {qualified}", "JSONCompactEachRow")
            described = (orjson.loads(line) for line in rows.splitlines())
            self._types[qualified] = {fields[0]: fields[1] for fields in described}
        return self._types[qualified]

    async def query(self, sql: str, fmt: str = "JSONEachRow") -> bytes:
        return await self._run(lambda client: client.raw_query(sql, fmt=fmt))

    async def command(self, sql: str) -> None:
        await self._run(lambda client: client.command(sql))

    async def max_offsets(self, table: str, topic: str) -> dict[int, int]:
        return _parse_offsets(await self.query(_offsets_query(table, topic), "TabSeparated"))

    async def ping(self) -> None:
        if not await self._run(lambda client: client.ping()):
            raise StoreError(f"ClickHouse at {self.url} does not answer", retriable=True)

    async def aclose(self) -> None:
        with self._lock:
            client, self._client, self._closed = self._client, None, True
        if client is not None:
            await asyncio.to_thread(client.close)
