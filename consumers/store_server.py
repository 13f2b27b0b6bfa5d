"""The embedded event store process: chDB in the data dir, served to the emitters and to readers.

``python -m consumers.store_server --data-dir D --port P`` owns chDB in ``D/chdb`` (one
process per data dir), applies the migrations, and serves on 127.0.0.1:

* ``POST /_apicat/events``: a batch of the emitter's wire records
  (``schemas.wire.encode_record``) joined by newlines (event JSON never holds a raw newline).
  Converted and inserted by ``consumers.embedded.EmbeddedTransport`` — the same conversion,
  deduplication tokens and window of recent ids as in-process — and answered 200 only once
  every insert is acknowledged; 503 (retriable store error) or 500 with the message
  otherwise; 400 when a line is not a wire record (nothing is stored). The first batch of
  each sender (``X-Apicat-Sender``) is checked against the store, so a batch that an earlier
  store process inserted without answering is not stored twice when it is re-sent.
* ``GET /_apicat/store``: who this is (pid, chDB directory), for ``gateway.pipeline``.
* everything else: ClickHouse's HTTP interface (``consumers.chdb_http``), for ``apicat
  query``, any ClickHouse client and Grafana.

With its supervisor (``gateway.store_process``) it speaks through stdio: one stdout line,
``READY_PREFIX`` + the URL once it listens, or ``FAILED_PREFIX`` + the reason before exiting
with status 2. It stops gracefully (in-flight inserts finish, chDB is closed) when its
stdin, held open by the supervisor, ends: when the supervisor stops it, and also when the
supervisor dies, however that happens. SIGTERM or SIGINT stop it too, but only after up to
``SIGNAL_GRACE_S`` more while stdin stays open: it shares the supervisor's process group,
so a signal to the group (Ctrl-C, ``kill -- -PGID``, a service manager) reaches both, and
the gateway's last events must still find the store.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import threading
from pathlib import Path

import orjson

from consumers.chdb_http import ChdbHttpApp, serve_chdb_http
from consumers.embedded import EmbeddedTransport
from consumers.gc_policy import tune_for_batches
from consumers.migrate import migrate
from consumers.store import ChdbStore, StoreError
from gateway.asgi import BodyTooLarge, Receive, Scope, Send, read_body
from gateway.emitter import TransportError
from gateway.logs import configure_logging
from gateway.server import install_shutdown_signals
from schemas.wire import MalformedRecord, decode_record

INGEST_PATH = "/_apicat/events"
IDENTITY_PATH = "/_apicat/store"
SENDER_HEADER = "x-apicat-sender"
READY_PREFIX = "apicat store listening on "
FAILED_PREFIX = "apicat store failed: "
HOST = "127.0.0.1"
SIGNAL_GRACE_S = 5.0
STORE_NICENESS = 10
"""Added to the supervisor's niceness: background work yields the CPU to serving (``main``)."""

log = logging.getLogger("apicat.store_server")


class StoreServerApp:
    """ASGI app: the ingest and identity routes, then ``ChdbHttpApp`` for everything else.

    Batches are stored one at a time (``EmbeddedTransport`` is not safe for concurrent
    sends; chDB runs one statement at a time anyway). One instance per event loop.
    """

    def __init__(self, store: ChdbStore, *, max_body_bytes: int = 256 * 1024 * 1024) -> None:
        self._store = store
        self._clickhouse = ChdbHttpApp(store)
        self._transport = EmbeddedTransport(store)
        self._lock = asyncio.Lock()
        self._senders: set[str] = set()
        self._max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == INGEST_PATH:
            await self._ingest(scope, receive, send)
        elif scope["type"] == "http" and scope["path"] == IDENTITY_PATH:
            identity = {"pid": os.getpid(), "chdb_dir": str(self._store.path.resolve())}
            await _respond(send, 200, orjson.dumps(identity))
        else:
            await self._clickhouse(scope, receive, send)

    async def _ingest(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await _respond(send, 405, _message("use POST"), [(b"allow", b"POST")])
            return
        try:
            body = await read_body(receive, self._max_body_bytes)
        except BodyTooLarge as exc:
            await _respond(send, 413, _message(str(exc)))
            return
        records = body.split(b"\n") if body else []
        for number, record in enumerate(records, 1):
            try:
                decode_record(record)
            except MalformedRecord as exc:
                await _respond(send, 400, _message(f"line {number}: {exc}"))
                return
        sender = next((v.decode() for k, v in scope["headers"] if k == SENDER_HEADER.encode()), "")
        # Shielded: once started, a batch is stored and remembered even if the sender hangs up,
        # so that its re-send is recognised.
        work = asyncio.ensure_future(self._store_batch(records, sender))
        try:
            stored, dead_letters = await asyncio.shield(work)
        except TransportError as exc:
            cause = exc.__cause__
            retriable = not isinstance(cause, StoreError) or cause.retriable
            log.warning("event batch not stored: %s", exc)
            await _respond(send, 503 if retriable else 500, _message(str(exc)))
            return
        await _respond(send, 200, orjson.dumps({"stored": stored, "dead_letters": dead_letters}))

    async def _store_batch(self, records: list[bytes], sender: str) -> tuple[int, int]:
        async with self._lock:
            rows, dead_letters = self._transport.rows_written, self._transport.dead_letters
            await self._transport.send(records, check_stored=sender not in self._senders)
            self._senders.add(sender)
            return (
                self._transport.rows_written - rows,
                self._transport.dead_letters - dead_letters,
            )


def _message(text: str) -> bytes:
    return orjson.dumps({"message": text})


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    head = [
        *(headers or []),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


def _tell_supervisor(line: str) -> None:
    sys.stdout.write(line.replace("\n", " ") + "\n")
    sys.stdout.flush()


async def _until_stopped() -> None:
    """Return at the end of stdin, or ``SIGNAL_GRACE_S`` after SIGTERM/SIGINT at the latest."""
    loop = asyncio.get_running_loop()
    stdin_closed = asyncio.Event()
    signalled = asyncio.Event()
    install_shutdown_signals(signalled)

    def watch() -> None:
        with open(sys.stdin.fileno(), "rb", buffering=0, closefd=False) as stdin:
            while stdin.read(4096):
                pass
        loop.call_soon_threadsafe(stdin_closed.set)

    threading.Thread(target=watch, name="stdin-watch", daemon=True).start()
    waits = [asyncio.ensure_future(event.wait()) for event in (stdin_closed, signalled)]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if not stdin_closed.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SIGNAL_GRACE_S):
                    await stdin_closed.wait()
    finally:
        for wait in waits:
            wait.cancel()


async def run_store_server(data_dir: Path, port: int) -> int:
    """Serve until stopped (see the module docstring); the process's exit status."""
    store = ChdbStore(data_dir / "chdb")
    try:
        await migrate(store)
        await serve_chdb_http(
            store,
            HOST,
            port,
            _until_stopped,
            ready=lambda bound: _tell_supervisor(f"{READY_PREFIX}http://{HOST}:{bound}"),
            app=StoreServerApp(store),
        )
    except StoreError as exc:
        _tell_supervisor(FAILED_PREFIX + exc.message)
        return 2
    except OSError as exc:
        _tell_supervisor(f"{FAILED_PREFIX}cannot listen on {HOST}:{port}: {exc.strerror or exc}")
        return 2
    finally:
        await store.aclose()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m consumers.store_server", description=__doc__)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--log-format", default="text")
    args = parser.parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    # Background work: inserts, chDB's merges and analysts' queries yield the CPU to the
    # gateway that spawned it. On 2 cores they otherwise landed as 10-25 ms stalls in the
    # gateway's tail latency once a second (bench (b)); under a lower priority they only
    # use what the gateway leaves, and the linger already absorbs a slower flush.
    os.nice(STORE_NICENESS)
    tune_for_batches()  # it converts the gateway's events in bulk, like a consumer
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # uvloop is optional on platforms without it
        runner = asyncio.Runner()
    with runner:
        return runner.run(run_store_server(args.data_dir, args.port))


if __name__ == "__main__":
    sys.exit(main())
