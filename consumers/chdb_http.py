"""A ClickHouse-HTTP-compatible endpoint over one chDB session (clickhouse-connect speaks to it).

It lets anything that speaks ClickHouse's HTTP interface (``ClickHouseStore``, Grafana's
ClickHouse datasource, ``curl``, ``apicat query`` while ``serve`` runs) use the embedded chDB
store, and it is the "server" side of the ClickHouse tests. It has no authentication, so it
binds to loopback only.

Supported subset of https://clickhouse.com/docs/interfaces/http:

* ``GET``/``HEAD /ping`` and ``/replicas_status`` → ``Ok.``; ``GET /`` without a query too.
* ``GET``/``POST /``: the SQL is the ``query`` parameter, the body, or the parameter followed
  by the body (joined by a newline, as ClickHouse does, so ``INSERT ... FORMAT Native`` in the
  parameter with binary data in the body works). Data inline in the body after
  ``FORMAT <name>`` is passed through unchanged to the engine, which accepts every format
  ClickHouse does (clickhouse-connect's ``insert`` sends ``Native``; the event stores send
  ``JSONCompactEachRow``).
* Parameters: ``database``, ``default_format`` (else ``TabSeparated``), ``query_id``,
  ``param_<name>`` (``{name:Type}`` query parameters); every other parameter is a ClickHouse
  setting for this query (``insert_deduplication_token``, ``date_time_input_format``, ...),
  except HTTP-transport ones that are accepted and ignored (``session_id``,
  ``client_protocol_version``, ``enable_http_compression``, ...; see ``_IGNORED``).
* Request bodies may be compressed (``Content-Encoding``: gzip, deflate, zstd, lz4);
  responses never are (no ``Content-Encoding``, which every client must accept).
* Headers: ``X-ClickHouse-Query-Id``, ``-Format``, ``-Timezone``, ``-Server-Display-Name``,
  ``-Summary``; errors are HTTP 500 with ``X-ClickHouse-Exception-Code`` and ClickHouse's
  ``Code: N. DB::Exception: ...`` text.

Not supported: sessions (each request is stateless, like ClickHouse without ``session_id``:
``SET``/``USE`` statements do nothing), ``compress=1``/``decompress=1`` (ClickHouse's native
block compression), multipart bodies (external tables, form-encoded queries), progress
headers, read-only enforcement of ``GET``, streaming (a whole result is built in memory).
Requests run one at a time on the shared session (see ``ChdbStore``).
"""

from __future__ import annotations

import gzip
import ipaddress
import logging
import re
import uuid
import zlib
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import orjson

from consumers.store import ChdbResult, ChdbStore, StoreError, error_code
from gateway.asgi import ASGIApp, BodyTooLarge, Receive, Scope, Send, answer_lifespan, read_body
from gateway.server import listen, serve_app

__all__ = ["ChdbHttpApp", "serve_chdb_http"]

log = logging.getLogger("apicat.chdb_http")


# Parameters that configure the HTTP exchange rather than the query; clickhouse-connect sends
# several of them on every request. (``compress``/``decompress`` are refused, not ignored.)
_IGNORED = frozenset(
    {
        "session_id",
        "session_timeout",
        "session_check",
        "client_protocol_version",
        "buffer_size",
        "wait_end_of_query",
        "quota_key",
        "role",
        "user",
        "password",
        "enable_http_compression",
        "http_zlib_compression_level",
        "send_progress_in_http_headers",
        "http_headers_progress_interval_ms",
        "http_response_buffer_size",
        "http_wait_end_of_query",
        "cancel_http_readonly_queries_on_client_close",
        "add_http_cors_header",
    }
)
_FORMAT_CLAUSE = re.compile(rb"\bFORMAT\s+([A-Za-z0-9_]+)\s*;?\s*$", re.I)
_INSERT = re.compile(rb"^\s*INSERT\b", re.I)
_CONTENT_TYPES = {
    "TabSeparated": b"text/tab-separated-values; charset=UTF-8",
    "CSV": b"text/csv; charset=UTF-8; header=absent",
    "CSVWithNames": b"text/csv; charset=UTF-8; header=present",
}
_BAD_ARGUMENTS = 36
_UNKNOWN_EXCEPTION = 1002
_ERROR_NAMES = {_BAD_ARGUMENTS: "BAD_ARGUMENTS", 1: "UNSUPPORTED_METHOD", 307: "TOO_LARGE_STRING"}
_GRACEFUL_TIMEOUT_S = 5


class _RequestError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = (
            f"Code: {code}. DB::Exception: {message}. ({_ERROR_NAMES.get(code, 'ERROR')})"
        )


def _content_type(fmt: str) -> bytes:
    if fmt in _CONTENT_TYPES:
        return _CONTENT_TYPES[fmt]
    if fmt.startswith("JSON"):
        return b"application/json; charset=UTF-8"
    if fmt.startswith(("Pretty", "Vertical", "Markdown", "TSV", "TabSeparated", "CSV")):
        return b"text/plain; charset=UTF-8"
    return b"application/octet-stream"


def _decompress(body: bytes, encoding: str) -> bytes:
    # clickhouse-connect compresses each insert block separately and sends the frames back to
    # back, so every decoder here reads concatenated frames, not just the first one.
    encoding = encoding.strip().lower()
    try:
        if encoding in ("", "identity"):
            return body
        if encoding in ("gzip", "x-gzip"):
            return gzip.decompress(body)  # reads every gzip member
        if encoding == "deflate":
            return _frames(body, zlib.decompressobj)
        if encoding == "zstd":
            from backports import zstd  # type: ignore[import-not-found,unused-ignore]

            return bytes(zstd.decompress(body))  # reads every zstd frame
        if encoding == "lz4":
            import lz4.frame  # type: ignore[import-untyped,unused-ignore]

            return _frames(body, lz4.frame.LZ4FrameDecompressor)
    except Exception as exc:  # each codec has its own error class; all mean a bad body
        raise _RequestError(_BAD_ARGUMENTS, f"cannot decompress {encoding} body: {exc}") from None
    raise _RequestError(1, f"unsupported Content-Encoding {encoding!r}")


def _frames(body: bytes, decompressor: Callable[[], Any]) -> bytes:
    out: list[bytes] = []
    while body:
        frame = decompressor()
        out.append(frame.decompress(body))
        if not frame.eof:
            raise ValueError("truncated frame")
        body = frame.unused_data
    return b"".join(out)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ChdbHttpApp:
    """The ASGI application; one instance serves one ``ChdbStore``."""

    def __init__(
        self,
        store: ChdbStore,
        *,
        display_name: str = "apicat-chdb",
        max_body_bytes: int = 256 * 1024 * 1024,
    ) -> None:
        self._store = store
        self._display_name = display_name.encode()
        self._max_body_bytes = max_body_bytes
        self._engine: tuple[bytes, bytes] | None = None  # (version, timezone)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        params = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        if path in ("/ping", "/replicas_status") or (
            path == "/" and method in ("GET", "HEAD") and not any(k == "query" for k, _ in params)
        ):
            body = b"" if method == "HEAD" else b"Ok.\n"
            await _respond(send, 200, body, [(b"content-type", b"text/plain; charset=UTF-8")])
            return
        if path != "/":
            await _respond(send, 404, f"There is no handle {path}\n".encode(), [])
            return
        if method not in ("GET", "POST"):
            await _respond(send, 405, b"Method not allowed\n", [(b"allow", b"GET, POST")])
            return
        query_id = dict(params).get("query_id") or str(uuid.uuid4())
        headers = [(b"x-clickhouse-query-id", query_id.encode())]
        try:
            body = await self._read_body(scope, receive)
            status, data, more_headers = await self._execute(params, body)
        except (StoreError, _RequestError) as exc:
            code = exc.code if exc.code is not None else error_code(exc.message)
            status, data, more_headers = await self._error(exc.message, code)
        except Exception as exc:  # a bug here must still answer the way ClickHouse would
            log.exception("chdb_http request failed")
            status, data, more_headers = await self._error(repr(exc), None)
        await _respond(send, status, data, headers + more_headers)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        try:
            body = await read_body(receive, self._max_body_bytes)
        except BodyTooLarge as exc:
            raise _RequestError(307, str(exc)) from None
        for name, value in scope["headers"]:
            if name == b"content-encoding":
                body = _decompress(body, value.decode("latin-1"))
            elif name == b"content-type" and value.startswith(b"multipart/"):
                raise _RequestError(1, "multipart requests (external data) are not supported")
        return body

    async def _execute(
        self, params: list[tuple[str, str]], body: bytes
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        sql_param, database, fmt = "", None, "TabSeparated"
        settings: dict[str, str] = {}
        query_params: dict[str, str] = {}
        for name, value in params:
            if name == "query":
                sql_param = value
            elif name == "database":
                database = value or None
            elif name == "default_format":
                fmt = value or fmt
            elif name.startswith("param_"):
                query_params[name.removeprefix("param_")] = value
            elif name in ("compress", "decompress"):
                if value not in ("", "0"):
                    raise _RequestError(1, f"{name}=1 (native block compression) is unsupported")
            elif name not in _IGNORED and name != "query_id":
                settings[name] = value
        # As ClickHouse does: the parameter, a newline, then the body (data or more SQL).
        sql = b"\n".join(part for part in (sql_param.encode(), body) if part)
        if not sql.strip():
            raise _RequestError(_BAD_ARGUMENTS, "Empty query")
        if not _INSERT.match(sql[:64]):
            own_format = _FORMAT_CLAUSE.search(sql[-256:])
            if own_format:
                fmt = own_format.group(1).decode()
        result = await self._store.run(
            sql, fmt, settings=settings, params=query_params, database=database
        )
        _, timezone = await self._engine_info()
        return (
            200,
            result.data,
            [
                (b"content-type", _content_type(fmt)),
                (b"x-clickhouse-format", fmt.encode()),
                (b"x-clickhouse-timezone", timezone),
                (b"x-clickhouse-server-display-name", self._display_name),
                (b"x-clickhouse-summary", _summary(result)),
            ],
        )

    async def _engine_info(self) -> tuple[bytes, bytes]:
        if self._engine is None:
            version, timezone = (
                (await self._store.run("SELECT version(), timezone()")).data.strip().split(b"\t")
            )
            self._engine = (version, timezone)
        return self._engine

    async def _error(
        self, message: str, code: int | None
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        code = code or _UNKNOWN_EXCEPTION
        if not message.startswith("Code: "):
            message = f"Code: {code}. DB::Exception: {message}"
        try:
            version = (await self._engine_info())[0].decode()
        except StoreError:
            version = "unknown"
        headers = [
            (b"x-clickhouse-exception-code", str(code).encode()),
            (b"content-type", b"text/plain; charset=UTF-8"),
        ]
        return 500, f"{message} (version {version})\n".encode(), headers


def _summary(result: ChdbResult) -> bytes:
    # ClickHouse sends every counter as a string.
    return orjson.dumps(
        {
            "read_rows": str(result.rows_read),
            "read_bytes": str(result.bytes_read),
            "written_rows": str(result.rows_written),
            "written_bytes": str(result.bytes_written),
            "total_rows_to_read": str(result.rows_read),
            "result_rows": "0",
            "result_bytes": str(len(result.data)),
            "elapsed_ns": str(int(result.elapsed_s * 1e9)),
        }
    )


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def serve_chdb_http(
    store: ChdbStore,
    host: str,
    port: int,
    shutdown_trigger: Callable[[], Awaitable[object]],
    ready: Callable[[int], None] | None = None,
    app: ASGIApp | None = None,
) -> None:
    """Serve ``store`` over ClickHouse's HTTP interface until ``shutdown_trigger`` returns.

    Args:
        store: the chDB store to expose.
        host: a loopback address (the endpoint has no authentication).
        port: the port; 0 picks a free one.
        shutdown_trigger: returns when the server should stop (then it drains gracefully).
        ready: called with the real port once connections are accepted (queued).
        app: an ASGI app to serve instead of ``ChdbHttpApp(store)`` (one that wraps it).

    Raises:
        ValueError: ``host`` is not a loopback address.
        OSError: the address cannot be bound.
    """
    if not _is_loopback(host):
        raise ValueError(f"chdb_http has no authentication; bind it to loopback, not {host!r}")
    # Bound here so that port 0 works and the real port is known before serving.
    listener = listen(host, port)
    if ready is not None:
        try:
            ready(listener.getsockname()[1])
        except BaseException:
            listener.close()
            raise
    served = app if app is not None else ChdbHttpApp(store)
    await serve_app(served, listener, shutdown_trigger, _GRACEFUL_TIMEOUT_S)
