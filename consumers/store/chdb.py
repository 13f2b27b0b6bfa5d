"""``ChdbStore``: the ``EventStore`` on an embedded chDB session, and its statement runner."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, cast

from consumers.store.errors import StoreError, store_error
from consumers.store.sql import (
    DEDUP_VIEWS,
    IDENTIFIER,
    ROWS_FORMAT,
    ROWS_SETTINGS,
    encode_rows,
    is_session_statement,
    offsets_query,
    parse_offsets,
    qualified_table,
    quote_identifier,
    quote_literal,
)

# INSERT ... FORMAT <name>, then (as ClickHouse reads it) blanks, an optional CRLF, the data.
_INLINE_INSERT = re.compile(
    rb"(?P<head>\s*INSERT\b.*?)\bFORMAT[ \t\r\n]+(?P<format>[A-Za-z0-9_]+)[ \t\f]*\r?\n?",
    re.I | re.S,
)


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
                error = store_error(str(exc))
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
            if not all(IDENTIFIER.match(name) for name in settings):
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
                raise store_error(str(exc)) from None
            self._settings = dict(settings)
        if database != self._database:
            try:
                session.query(f"USE {quote_identifier(database)}")
            except RuntimeError as exc:
                raise store_error(str(exc)) from None
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
                raise store_error(str(exc)) from None
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
        settings = {**ROWS_SETTINGS, "insert_deduplication_token": dedup_token, DEDUP_VIEWS: "1"}
        statement = (
            f"INSERT INTO {qualified_table(table)} "
            f"({', '.join(quote_identifier(c) for c in columns)}) "
            f"SETTINGS {', '.join(f'{k} = {quote_literal(v)}' for k, v in settings.items())} "
            f"FORMAT {ROWS_FORMAT}\n"
        ).encode()
        await asyncio.to_thread(lambda: self.execute(statement + encode_rows(rows)))

    async def query(self, sql: str, fmt: str = "JSONEachRow") -> bytes:
        return (await self.run(sql, fmt)).data

    async def command(self, sql: str) -> None:
        await self.run(sql)

    async def max_offsets(self, table: str, topic: str) -> dict[int, int]:
        return parse_offsets((await self.run(offsets_query(table, topic))).data)

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
