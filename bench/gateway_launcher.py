"""Run the gateway the way ``apicat serve --config`` does, with events on or off (bench only).

``python -m bench.gateway_launcher --config FILE --port N --events on|off``

* ``on``: the real pipeline of ``apicat serve`` (``gateway.pipeline.start_pipeline``): embedded
  when ``APICAT_KAFKA_BOOTSTRAP_SERVERS`` is unset (a child store process with chDB in
  ``APICAT_DATA_DIR`` and its ClickHouse HTTP endpoint, whose URL is written to
  ``<data dir>/clickhouse.url``), Kafka otherwise.
* ``off``: ``gateway.events.NullEmitter``, so requests build their events and drop them.

Everything else is ``gateway.cli._serve`` without ``--demo``: same settings (from the
environment), ``Container`` + ``create_app``, ``gc.freeze()``, ``gateway.server.serve_app``
(uvicorn) on a uvloop loop, SIGINT/SIGTERM stop it. The only difference between the two
modes is the emitter, which is what section (e) of ``make bench`` compares.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
from pathlib import Path

from gateway.app import create_app
from gateway.config_file import load_config_file
from gateway.container import Container
from gateway.events import EventEmitter, NullEmitter
from gateway.logs import configure_logging
from gateway.pipeline import Pipeline, start_pipeline
from gateway.server import install_shutdown_signals, listen, serve_app
from gateway.settings import Settings

READY_PREFIX = "bench gateway listening on "


async def _serve(settings: Settings, config_path: Path, host: str, port: int, events: str) -> None:
    config = load_config_file(config_path)
    stop = asyncio.Event()
    install_shutdown_signals(stop)

    async def stopped() -> None:
        await stop.wait()

    pipeline: Pipeline | None = None
    emitter: EventEmitter = NullEmitter()
    if events == "on":
        pipeline = await start_pipeline(settings, "gateway")
        emitter = pipeline.emitter
    container = Container(settings, config, emitter=emitter)
    app = create_app(container)
    query_url = pipeline.query_url if pipeline is not None else None
    print(f"{READY_PREFIX}http://{host}:{port} events={events} query={query_url}", flush=True)
    gc.freeze()  # as `apicat serve` does once everything long-lived is allocated
    try:
        await serve_app(app, listen(host, port), stopped)
    finally:
        stop.set()
        if pipeline is not None:
            await pipeline.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway_launcher", description=__doc__)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--events", choices=("on", "off"), required=True)
    args = parser.parse_args(argv)
    settings = Settings.from_environ(os.environ)
    configure_logging(settings.log_level, settings.log_format)
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        runner = asyncio.Runner()
    with runner:
        runner.run(_serve(settings, args.config, args.host, args.port, args.events))
    return 0


if __name__ == "__main__":
    sys.exit(main())
