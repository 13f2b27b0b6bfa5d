"""Assembling the event pipeline of one process from settings (embedded or scale-out).

* ``APICAT_KAFKA_BOOTSTRAP_SERVERS`` set → the emitter ships to Kafka; ``apicat consumer``
  processes write to ClickHouse.
* unset (embedded) → the emitter writes through the embedded transport into chDB in the data
  dir, and the same chDB is served over ClickHouse's HTTP interface on loopback
  (``APICAT_EMBEDDED_CLICKHOUSE_PORT``) so ``apicat query``, any ClickHouse client and Grafana
  can read it while ``apicat serve`` holds the store (chDB allows one process per data dir).
  Its address is written to ``<data dir>/clickhouse.url`` for ``apicat query`` to find.

Store resolution for the tools (``query``, ``migrate``, ``consumer``): ``APICAT_CLICKHOUSE_URL``,
else the running embedded endpoint, else chDB opened directly on the data dir.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from consumers.chdb_http import serve_chdb_http
from consumers.embedded import EmbeddedTransport
from consumers.migrate import migrate
from consumers.store import ChdbStore, ClickHouseStore, EventStore, StoreError
from gateway.emitter import BufferedEmitter, EventTransport
from gateway.kafka_transport import KafkaTransport
from gateway.settings import Settings

log = logging.getLogger("apicat.pipeline")
EMBEDDED_URL_FILE = "clickhouse.url"


def chdb_dir(settings: Settings) -> Path:
    return settings.data_dir / "chdb"


def journal_dir(settings: Settings, role: str) -> Path:
    return settings.data_dir / "journal" / role


@dataclass
class Pipeline:
    """The parts a serving process runs for its events; ``aclose`` after the container."""

    emitter: BufferedEmitter
    store: EventStore | None = None
    query_url: str | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    url_file: Path | None = None

    async def aclose(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.url_file is not None:
            self.url_file.unlink(missing_ok=True)
        if self.store is not None:
            await self.store.aclose()


async def start_pipeline(
    settings: Settings,
    role: str,
    shutdown_trigger: Callable[[], Awaitable[object]],
) -> Pipeline:
    """Build the emitter (and, embedded, the store and its HTTP endpoint) for one process.

    Args:
        settings: the process settings.
        role: names the emitter's journal directory (``gateway``, ``prober``...).
        shutdown_trigger: returns when the process stops (ends the HTTP endpoint).
    """
    journal = journal_dir(settings, role)
    if settings.kafka_bootstrap_servers:
        transport: EventTransport = KafkaTransport(
            settings.kafka_bootstrap_servers, settings.instance, settings.kafka_topic_prefix
        )
        return Pipeline(BufferedEmitter(transport, journal))
    store = ChdbStore(chdb_dir(settings))
    await migrate(store)
    emitter = BufferedEmitter(EmbeddedTransport(store), journal)
    bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        serve_chdb_http(
            store,
            "127.0.0.1",
            settings.embedded_clickhouse_port,
            shutdown_trigger,
            ready=bound.set_result,
        )
    )
    port = await bound
    url = f"http://127.0.0.1:{port}"
    url_file = settings.data_dir / EMBEDDED_URL_FILE
    url_file.write_text(url + "\n")
    return Pipeline(emitter, store, url, [task], url_file)


async def open_store(settings: Settings) -> EventStore:
    """The event store the tools should use (see the module docstring), connected."""
    if settings.clickhouse_url:
        return ClickHouseStore(settings.clickhouse_url)
    url_file = settings.data_dir / EMBEDDED_URL_FILE
    if url_file.exists():
        store = ClickHouseStore(url_file.read_text().strip(), compress=False)
        try:
            await store.ping()
            return store
        except StoreError:
            await store.aclose()
            # A stale file from a process that died: fall through to the directory itself.
            with contextlib.suppress(OSError):
                url_file.unlink()
    return ChdbStore(chdb_dir(settings))
