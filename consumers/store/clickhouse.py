"""``ClickHouseStore``: the ``EventStore`` on a ClickHouse server through clickhouse-connect."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from consumers.store.errors import StoreError, clean_error_message, store_error
from consumers.store.sql import (
    DEDUP_VIEWS,
    ROWS_FORMAT,
    ROWS_SETTINGS,
    encode_rows,
    offsets_query,
    parse_offsets,
    qualified_table,
)

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

T = TypeVar("T")


class ClickHouseStore:
    """``EventStore`` on a ClickHouse server over HTTP(S) with clickhouse-connect.

    ``url`` is a DSN such as ``http://user:password@host:8123/``. The synchronous client runs
    in worker threads; it is shared without a ClickHouse session (``session_id``), which is
    what makes concurrent calls safe. It connects on first use. Inserts send their rows as
    JSON (``sql.encode_rows``), which the server parses; no per-table type lookup is needed.
    """

    def __init__(self, url: str, *, compress: bool | str = True, timeout_s: int = 30) -> None:
        self.url = url
        self._compress = compress
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._client: Client | None = None
        self._closed = False

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
            raise store_error(str(exc), exc.code) from None
        except OSError as exc:
            raise StoreError(str(exc), retriable=True) from None

    async def _run(self, work: Callable[[Client], T]) -> T:
        return await asyncio.to_thread(self._call, work)

    async def insert(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[object]], dedup_token: str
    ) -> None:
        if not rows:
            return
        settings = {**ROWS_SETTINGS, "insert_deduplication_token": dedup_token, DEDUP_VIEWS: 1}

        def send(client: Client) -> None:
            # The rows as JSON (sql.encode_rows), not clickhouse-connect's row-to-column
            # conversion for its Native format: that conversion ran in Python under the GIL,
            # at several µs a row, on the consumer's critical path (bench (d2)).
            client.raw_insert(
                qualified_table(table),
                list(columns),
                insert_block=encode_rows(rows),
                settings=settings,
                fmt=ROWS_FORMAT,
            )

        await self._run(send)

    async def query(self, sql: str, fmt: str = "JSONEachRow") -> bytes:
        return await self._run(lambda client: client.raw_query(sql, fmt=fmt))

    async def command(self, sql: str) -> None:
        await self._run(lambda client: client.command(sql))

    async def max_offsets(self, table: str, topic: str) -> dict[int, int]:
        return parse_offsets(await self.query(offsets_query(table, topic), "TabSeparated"))

    async def ping(self) -> None:
        if not await self._run(lambda client: client.ping()):
            raise StoreError(f"ClickHouse at {self.url} does not answer", retriable=True)

    async def aclose(self) -> None:
        with self._lock:
            client, self._client, self._closed = self._client, None, True
        if client is not None:
            await asyncio.to_thread(client.close)
