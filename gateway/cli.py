"""The ``apicat`` command line: serve, demo upstreams, and config checks."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Literal

import click
from pydantic import ValidationError

from consumers.gc_policy import tune_for_batches
from consumers.kafka_consumer import EventConsumer
from consumers.migrate import migrate as run_migrations
from consumers.query import run_query
from consumers.store import StoreError
from gateway.app import create_app
from gateway.config_file import ConfigFileError, load_config_file
from gateway.container import Container
from gateway.logs import configure_logging
from gateway.metrics import ConsumerCollector, metrics_asgi_app, new_registry
from gateway.pipeline import chdb_dir, open_store, start_pipeline
from gateway.probing import run_probing
from gateway.reload import reload_config
from gateway.server import ServerStartupError, install_shutdown_signals, listen, serve_app
from gateway.settings import ENV_PREFIX, Settings
from schemas.config import GatewayConfig

EXIT_USAGE = 2


def _fail(lines: list[str], title: str) -> None:
    click.echo(f"error: {title}", err=True)
    for line in lines:
        click.echo(f"  {line}", err=True)
    sys.exit(EXIT_USAGE)


def _cannot_listen(host: str, port: int, exc: OSError) -> None:
    _fail([f"{host}:{port}: {exc.strerror or exc}"], "cannot listen")


def load_settings(**overrides: object) -> Settings:
    """Settings from the process environment, or exit 2 naming every bad variable."""
    try:
        return Settings.from_environ(os.environ, **overrides)
    except ValidationError as exc:
        lines = [
            f"{ENV_PREFIX}{'.'.join(str(p) for p in e['loc']).upper()}: "
            f"{e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors(include_url=False)
        ]
        _fail(lines, "invalid settings")
        raise AssertionError("unreachable") from None


def load_config(path: Path) -> GatewayConfig:
    """A config file, or exit 2 listing every bad field as ``path: reason``."""
    try:
        return load_config_file(path)
    except ConfigFileError as exc:
        _fail(exc.problems, f"config {exc.source} is invalid")
        raise AssertionError("unreachable") from None


def _run(main: asyncio.Future[None] | object) -> None:
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # uvloop is optional on platforms without it
        runner = asyncio.Runner()
    with runner:
        runner.run(main)  # type: ignore[arg-type]


@click.group()
def main() -> None:
    """apicategorywithfallback: a category API gateway with validated fallback."""


@main.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="PRD-format JSON config to load at start.",
)
@click.option("--demo", is_flag=True, help="Also start demo upstreams (and their config).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--demo-port", default=8090, show_default=True, type=click.IntRange(0, 65535),
    help="Port of the demo upstreams (with --demo).",
)  # fmt: skip
def serve(config_path: Path | None, demo: bool, host: str, port: int, demo_port: int) -> None:
    """All-in-one gateway (embedded stores), optionally with demo upstreams."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    file_config = load_config(config_path) if config_path else None
    if file_config is None and not demo:
        _fail(["pass --config FILE (PRD JSON format) or --demo"], "no routing config")
    _run(_serve(settings, file_config, demo, host, port, demo_port, config_path))


async def _serve(
    settings: Settings,
    file_config: GatewayConfig | None,
    demo: bool,
    host: str,
    port: int,
    demo_port: int,
    config_path: Path | None = None,
) -> None:
    stop = asyncio.Event()
    install_shutdown_signals(stop)

    async def stopped() -> None:
        await stop.wait()

    tasks: list[asyncio.Task[None]] = []
    config = file_config
    if demo:
        from demo.catalog import DEFAULT_SOURCES, demo_gateway_config
        from demo.server import serve_demo_upstreams

        bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        tasks.append(
            asyncio.create_task(
                serve_demo_upstreams(
                    host,
                    demo_port,
                    DEFAULT_SOURCES,
                    shutdown_trigger=stopped,
                    ready=bound.set_result,
                )
            )
        )
        upstream_port = await bound
        upstream_base = f"http://{host}:{upstream_port}"
        click.echo(f"demo upstreams on {upstream_base} (knobs: {upstream_base}/_demo/knobs)")
        config = config or demo_gateway_config(upstream_base)
    assert config is not None
    try:
        listener = listen(host, port)
    except OSError as exc:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        _cannot_listen(host, port, exc)
    port = listener.getsockname()[1]
    try:
        pipeline = await start_pipeline(settings, "gateway")
    except StoreError as exc:
        stop.set()
        listener.close()
        await asyncio.gather(*tasks, return_exceptions=True)
        _fail([exc.message], "cannot open the event store")
    container = Container(settings, config, emitter=pipeline.emitter)
    app = create_app(container)
    click.echo(
        f"gateway on http://{host}:{port}  (docs: /docs, health: /health); "
        f"categories: {', '.join(container.routing.category_names) or 'none'}"
    )
    if pipeline.query_url:
        click.echo(
            f'events: chDB in {chdb_dir(settings)}; query with `apicat query "SQL"` '
            f"or any ClickHouse client at {pipeline.query_url}"
        )
    else:
        click.echo(f"events: Kafka at {settings.kafka_bootstrap_servers}")
    # Everything allocated so far lives as long as the process: move it out of the GC's view
    # so full collections stay short under load.
    gc.freeze()
    tasks.append(asyncio.create_task(serve_app(app, listener, stopped)))
    tasks.append(asyncio.create_task(run_probing(container, pipeline.emitter, stop)))
    if config_path is not None:
        asyncio.get_running_loop().add_signal_handler(
            signal.SIGHUP, reload_config, container, config_path
        )
    try:
        await asyncio.gather(*tasks)
    except ServerStartupError as exc:
        _fail([str(exc)], "the gateway did not start")
    finally:
        stop.set()
        await pipeline.aclose()


@main.group()
def config() -> None:
    """Check routing config files."""


@config.command("validate")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def config_validate(path: Path) -> None:
    """Validate a PRD-format JSON config; exit 2 listing every bad field."""
    loaded = load_config(path)
    endpoints = sum(len(category.endpoints) for category in loaded.categories)
    click.echo(f"ok: {len(loaded.categories)} categories, {endpoints} endpoints")


@main.command()
def migrate() -> None:
    """Create or update the event tables (idempotent; chDB or ClickHouse, same DDL)."""
    settings = load_settings()
    _run(_migrate(settings))


async def _migrate(settings: Settings) -> None:
    store = await open_store(settings)
    try:
        applied = await run_migrations(store)
    except StoreError as exc:
        _fail([exc.message], "migration failed")
    finally:
        await store.aclose()
    click.echo("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))


@main.command()
@click.argument("sql")
@click.option(
    "--format", "output", type=click.Choice(["table", "json", "csv"]), default="table",
    show_default=True, help="json = a JSON array of row objects",
)  # fmt: skip
def query(sql: str, output: Literal["table", "json", "csv"]) -> None:
    """Run SQL on the event store (works while `apicat serve` runs)."""
    settings = load_settings()
    _run(_query(settings, sql, output))


async def _query(settings: Settings, sql: str, output: Literal["table", "json", "csv"]) -> None:
    store = await open_store(settings)
    try:
        text = await run_query(store, sql, output)
    except StoreError as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(1)
    finally:
        await store.aclose()
    click.echo(text, nl=not text.endswith("\n"))


@main.command()
@click.option("--group", default="apicat-clickhouse", show_default=True, help="Consumer group.")
@click.option(
    "--metrics-port", type=click.IntRange(0, 65535), default=None,
    help="Serve Prometheus metrics at /metrics on this port (0 = any free port). Default: off.",
)  # fmt: skip
@click.option(
    "--metrics-host", default="127.0.0.1", show_default=True,
    help="Address of the metrics port (loopback by default: /metrics has no authentication).",
)  # fmt: skip
def consumer(group: str, metrics_port: int | None, metrics_host: str) -> None:
    """Consume events from Kafka into ClickHouse until SIGTERM (several may share a group)."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    if not settings.kafka_bootstrap_servers:
        _fail(["set APICAT_KAFKA_BOOTSTRAP_SERVERS"], "the consumer needs Kafka")
    metrics_listener: socket.socket | None = None
    if metrics_port is not None:
        # Bound before anything starts, so a taken port is exit 2 with nothing to undo.
        try:
            metrics_listener = listen(metrics_host, metrics_port)
        except OSError as exc:
            _cannot_listen(metrics_host, metrics_port, exc)
    tune_for_batches()
    _run(_consume(settings, group, metrics_listener))


async def _consume(
    settings: Settings, group: str, metrics_listener: socket.socket | None = None
) -> None:
    stop = asyncio.Event()
    install_shutdown_signals(stop)
    store = await open_store(settings)
    try:
        await run_migrations(store)
        assert settings.kafka_bootstrap_servers is not None
        worker = EventConsumer(
            settings.kafka_bootstrap_servers,
            store,
            group_id=group,
            topic_prefix=settings.kafka_topic_prefix,
        )
        click.echo(f"consuming {settings.kafka_topic_prefix}* as group {group!r}")
        if metrics_listener is None:
            await worker.run(stop)
        else:
            await _consume_with_metrics(worker, stop, metrics_listener)
    finally:
        await store.aclose()


async def _consume_with_metrics(
    worker: EventConsumer, stop: asyncio.Event, listener: socket.socket
) -> None:
    """Run ``worker`` and its metrics server; either one ending stops the other."""

    async def stopped() -> None:
        await stop.wait()

    host, port = listener.getsockname()[:2]
    host = f"[{host}]" if ":" in host else host  # an IPv6 address in a URL
    registry = new_registry(ConsumerCollector(worker))
    serving = asyncio.create_task(
        serve_app(metrics_asgi_app(registry), listener, stopped, graceful_timeout_s=1),
        name="metrics-server",
    )
    serving.add_done_callback(lambda _: stop.set())
    click.echo(f"metrics on http://{host}:{port}/metrics")
    try:
        await worker.run(stop)
    finally:
        stop.set()
        try:
            await serving
        except ServerStartupError as exc:
            _fail([str(exc)], "the metrics server did not start")


def _register_commands() -> None:
    from demo.cli import demo_upstreams
    from health.cli import prober

    main.add_command(demo_upstreams, "demo-upstreams")
    main.add_command(prober, "prober")


_register_commands()
