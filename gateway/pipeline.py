"""Assembling the event pipeline of one process from settings (embedded or scale-out).

* ``APICAT_KAFKA_BOOTSTRAP_SERVERS`` set → the emitter ships to Kafka; ``apicat consumer``
  processes write to ClickHouse.
* unset (embedded) → ``apicat serve`` starts and supervises the embedded store process
  (``consumers.store_server``, see ``gateway.store_process``): it owns chDB in the data dir,
  stores the batches the emitter posts to it on loopback (``gateway.store_transport``) and
  serves the same chDB over ClickHouse's HTTP interface (``APICAT_EMBEDDED_CLICKHOUSE_PORT``),
  so ``apicat query``, any ClickHouse client and Grafana can read it while ``apicat serve``
  runs (chDB allows one process per data dir). Inserts and queries run there, not on the
  gateway's event loop or under its GIL. Its address is written to
  ``<data dir>/clickhouse.url``; another embedded role (``apicat prober``) sends to the store
  named there when it answers, and only starts its own otherwise.

Store resolution for the tools (``query``, ``migrate``, ``consumer``): ``APICAT_CLICKHOUSE_URL``,
else the running embedded endpoint, else chDB opened directly on the data dir.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson

from consumers.store import ChdbStore, ClickHouseStore, EventStore, StoreError
from consumers.store_server import IDENTITY_PATH
from gateway.emitter import BufferedEmitter, EmitterPolicy, EventTransport
from gateway.kafka_transport import KafkaTransport
from gateway.settings import Settings
from gateway.store_process import StoreProcess
from gateway.store_transport import StoreProcessTransport

EMBEDDED_URL_FILE = "clickhouse.url"
EMBEDDED_POLICY = EmitterPolicy(linger_s=1.0, batch_size=5_000)
"""Each insert costs the store tens of milliseconds whatever its size: fewer, larger batches."""


def chdb_dir(settings: Settings) -> Path:
    return settings.data_dir / "chdb"


def journal_dir(settings: Settings, role: str) -> Path:
    return settings.data_dir / "journal" / role


@dataclass
class Pipeline:
    """The parts a process runs for its events; ``aclose`` after the emitter is closed."""

    emitter: BufferedEmitter
    query_url: str | None = None
    store_process: StoreProcess | None = None

    async def aclose(self) -> None:
        """Stop the store process this pipeline started, if any (after the emitter's last send)."""
        if self.store_process is not None:
            await self.store_process.aclose()


async def start_pipeline(settings: Settings, role: str) -> Pipeline:
    """Build the emitter (and, embedded, start the store process) for one process.

    Args:
        settings: the process settings.
        role: names the emitter's journal directory (``gateway``, ``prober``...). Roles other
            than ``gateway`` send to a running store process of the data dir if there is one.

    Raises:
        StoreError: the embedded store process could not start (e.g. chDB in the data dir
            is held by another process), with its reason.
    """
    journal = journal_dir(settings, role)
    if settings.kafka_bootstrap_servers:
        transport: EventTransport = KafkaTransport(
            settings.kafka_bootstrap_servers, settings.instance, settings.kafka_topic_prefix
        )
        return Pipeline(BufferedEmitter(transport, journal))
    url_file = settings.data_dir / EMBEDDED_URL_FILE
    if role != "gateway":
        running = await running_store_url(settings)
        if running is not None:
            # The owner rewrites the file when its store restarts elsewhere: read it per batch.
            def current() -> str | None:
                return _read_url(url_file) or running

            transport = StoreProcessTransport(current)
            return Pipeline(BufferedEmitter(transport, journal, EMBEDDED_POLICY), running)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    process = StoreProcess(
        settings.data_dir,
        settings.embedded_clickhouse_port,
        url_file,
        log_level=settings.log_level,
        log_format=settings.log_format,
    )
    url = await process.start()
    emitter = BufferedEmitter(StoreProcessTransport(lambda: process.url), journal, EMBEDDED_POLICY)
    return Pipeline(emitter, url, process)


def _read_url(url_file: Path) -> str | None:
    try:
        return url_file.read_text().strip() or None
    except OSError:
        return None


async def running_store_url(settings: Settings) -> str | None:
    """The URL of a live store process serving this data dir's chDB, if there is one."""
    url = _read_url(settings.data_dir / EMBEDDED_URL_FILE)
    if url is None:
        return None
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
            session.get(url + IDENTITY_PATH) as response,
        ):
            identity = orjson.loads(await response.read()) if response.status == 200 else {}
    except (aiohttp.ClientError, TimeoutError, OSError, orjson.JSONDecodeError):
        return None
    if not isinstance(identity, dict):
        return None
    return url if identity.get("chdb_dir") == str(chdb_dir(settings).resolve()) else None


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
