"""Health probing inside ``apicat serve``, and following probe results shared through Redis.

Embedded: the in-process prober feeds this instance's ``HealthView`` directly. With Redis,
every ``serve`` instance runs a prober sharing leases (each upstream probed once per interval
across all of them) and follows the shared status hash, so every instance routes on every
probe result, whoever made it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from gateway.container import Container
from gateway.events import EventEmitter
from health.prober import Prober
from health.status import RedisStatusStore, StatusStoreError, UpstreamStatus
from health.targets import ProbeTarget, probe_targets
from schemas.config import GatewayConfig

log = logging.getLogger("apicat.probing")
FOLLOW_EVERY_S = 2.0


class _TargetsOfCurrentConfig:
    """``targets()`` for the prober: recomputed only when the container's config changes."""

    def __init__(self, container: Container) -> None:
        self._container = container
        self._config: GatewayConfig | None = None
        self._targets: list[ProbeTarget] = []

    def __call__(self) -> Sequence[ProbeTarget]:
        config = self._container.config
        if config is not self._config:
            self._config = config
            self._targets = probe_targets(config, self._container.settings.probe_interval_seconds)
        return self._targets


async def run_probing(container: Container, emitter: EventEmitter, stop: asyncio.Event) -> None:
    """Probe upstreams until ``stop``; mark results in ``container.health``."""
    settings = container.settings
    store = container.probe_status

    def on_status(new: UpstreamStatus, previous: UpstreamStatus | None) -> None:
        container.health.mark(new.url, new.up)

    prober = Prober(
        _TargetsOfCurrentConfig(container),
        container.fetcher,
        store,
        emitter,
        holder=settings.instance,
        instance=settings.instance,
        down_after=settings.probe_down_after,
        on_status=on_status,
    )
    tasks = [asyncio.create_task(prober.run(stop), name="prober")]
    if isinstance(store, RedisStatusStore):
        tasks.append(asyncio.create_task(_follow(store, container, stop), name="probe-follower"))
    await asyncio.gather(*tasks)


async def _follow(store: RedisStatusStore, container: Container, stop: asyncio.Event) -> None:
    """Apply probe results other instances stored, each once (by its ``checked_at``)."""
    seen: dict[str, float] = {}
    while not stop.is_set():
        try:
            statuses = await store.get_all()
        except StatusStoreError as exc:
            log.warning("cannot read shared probe status: %s", exc)
            statuses = {}
        known = _configured_urls(container)
        for url, status in statuses.items():
            if url in known and status.checked_at > seen.get(url, 0.0):
                seen[url] = status.checked_at
                container.health.mark(url, status.up)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FOLLOW_EVERY_S):
                await stop.wait()


def _configured_urls(container: Container) -> set[str]:
    return {
        link.base_url
        for endpoints in container.routing.routes.values()
        for route in endpoints.values()
        for chain in route.chains
        for link in chain.links
    }
