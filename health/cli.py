"""``apicat prober``: a standalone prober process (several may share one Redis)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path

import click

from consumers.store import StoreError
from gateway.container import USER_AGENT
from gateway.logs import configure_logging
from gateway.pipeline import start_pipeline
from gateway.server import install_shutdown_signals
from gateway.settings import Settings
from gateway.upstream import AiohttpUpstreamClient
from health.prober import OnStatus, Prober
from health.status import MemoryStatusStore, RedisStatusStore, StatusStore
from health.targets import ProbeTarget, probe_targets

EXIT_USAGE = 2


@click.command("prober")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="PRD-format JSON config whose upstreams to probe.",
)
def prober(config_path: Path) -> None:
    """Probe every active upstream on its interval until SIGINT/SIGTERM.

    With APICAT_REDIS_URL, statuses go to Redis and any number of probers split the work
    (one probe per upstream per interval); without it, statuses stay in this process.
    """
    # Imported here: gateway.cli registers this command, so a module-level import would be
    # circular for `python -m health`.
    from gateway.cli import load_config, load_settings

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    config = load_config(config_path)
    targets = probe_targets(config, settings.probe_interval_seconds)
    asyncio.run(_main(settings, lambda: targets))


async def _main(settings: Settings, targets: Callable[[], Sequence[ProbeTarget]]) -> None:
    stop = asyncio.Event()
    install_shutdown_signals(stop)
    try:
        await run_prober(settings, targets, stop)
    except StoreError as exc:
        click.echo(f"error: cannot open the event store\n  {exc.message}", err=True)
        raise SystemExit(EXIT_USAGE) from exc


async def run_prober(
    settings: Settings,
    targets: Callable[[], Sequence[ProbeTarget]],
    stop: asyncio.Event,
    *,
    on_status: OnStatus | None = None,
) -> None:
    """Run one prober with this process's real parts until ``stop`` is set, then close them.

    The fetcher is the gateway's aiohttp client (same timeouts and body cap), the status
    store is Redis when ``settings.redis_url`` is set, and events go through the process's
    event pipeline (role ``prober``).

    Args:
        settings: the process settings.
        targets: the current probe targets (re-read every loop cycle).
        stop: set it to stop probing.
        on_status: passed to :class:`~health.prober.Prober`.

    Raises:
        StoreError: when the embedded event store cannot be opened.
    """
    store: StatusStore = (
        RedisStatusStore(settings.redis_url) if settings.redis_url else MemoryStatusStore()
    )
    fetcher = AiohttpUpstreamClient(
        max_body_bytes=settings.max_upstream_body_bytes,
        max_connections=settings.max_upstream_connections,
        user_agent=USER_AGENT,
    )
    try:
        pipeline = await start_pipeline(settings, "prober")
    except BaseException:
        await fetcher.aclose()
        await store.aclose()
        raise
    pipeline.emitter.start()
    click.echo(
        f"prober {settings.instance} probing {len(targets())} upstreams "
        f"(status store: {'redis' if settings.redis_url else 'memory'})"
    )
    try:
        await Prober(
            targets,
            fetcher,
            store,
            pipeline.emitter,
            holder=settings.instance,
            instance=settings.instance,
            down_after=settings.probe_down_after,
            on_status=on_status,
        ).run(stop)
    finally:
        stop.set()
        await pipeline.emitter.aclose()
        await pipeline.aclose()
        await store.aclose()
        await fetcher.aclose()
