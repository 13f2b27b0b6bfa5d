"""Prometheus metrics: one registry per app, read live from the process's parts at scrape time.

Nothing here counts anything. The collectors read the counters the parts already keep (the
emitter's ``stats()``, the service's cache errors, the limiter's errors, the breakers'
states, the consumer's progress) when Prometheus scrapes, so ``/metrics`` and ``/health``
report the same numbers from one source. No global ``REGISTRY``: every gateway app (and the
consumer) builds its own, so several gateways in one process (tests) never share a series.
Collecting never does I/O beyond the process collector's read of ``/proc/self``.

Metric names carry the ``apicat_`` prefix; counters end in ``_total``; a count of things is
named after the things (``_events``, ``_rows``, ``_categories``...).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
    make_asgi_app,
)
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from quart import Quart, Response
from quart_schema import tag

from gateway.asgi import ASGIApp, Receive, Scope, Send, answer_lifespan
from gateway.breaker import CircuitState
from gateway.container import Container
from gateway.emitter import BufferedEmitter
from gateway.events import EventEmitter, MemoryEmitter

METRICS_PATH = "/metrics"

_EMITTED_HELP = "Events handed to the emitter by this process (requests, attempts, circuits...)."


def _counter(name: str, help_text: str, value: float, labels: Mapping[str, str]) -> Metric:
    family = CounterMetricFamily(name, help_text, labels=list(labels))
    family.add_metric(list(labels.values()), value)
    return family


def _gauge(name: str, help_text: str, value: float, labels: Mapping[str, str]) -> Metric:
    family = GaugeMetricFamily(name, help_text, labels=list(labels))
    family.add_metric(list(labels.values()), value)
    return family


def event_families(emitter: EventEmitter) -> list[Metric]:
    """The event emitter's counters, labelled with its transport (``kafka``, ``embedded``...).

    Args:
        emitter: the process's emitter; a ``BufferedEmitter`` reports its whole pipeline, a
            ``MemoryEmitter`` only what was emitted, anything else nothing.

    Returns:
        Metric families read from the emitter now (the same numbers ``/health`` shows).
    """
    if isinstance(emitter, MemoryEmitter):
        return [
            _counter(
                "apicat_events_emitted",
                _EMITTED_HELP,
                emitter.emitted_total,
                {"transport": "memory"},
            )
        ]
    if not isinstance(emitter, BufferedEmitter):
        return []
    stats = emitter.stats()
    transport = {"transport": stats.transport}
    return [
        _counter("apicat_events_emitted", _EMITTED_HELP, stats.emitted_total, transport),
        _counter(
            "apicat_events_sent",
            "Events the transport accepted, straight from the buffer or replayed from the journal.",
            stats.sent_total,
            transport,
        ),
        _counter(
            "apicat_events_spilled",
            "Events written to the durable journal because the transport failed or the buffer "
            "was full; they are replayed, not lost.",
            stats.spilled_total,
            transport,
        ),
        _counter(
            "apicat_events_replayed",
            "Journaled events the transport accepted once it was back (also counted as sent).",
            stats.replayed_total,
            transport,
        ),
        _counter(
            "apicat_events_dropped",
            "Events lost because the journal could not be written (disk failure); should be 0.",
            stats.dropped_total,
            transport,
        ),
        _gauge(
            "apicat_events_buffered",
            "Events waiting in memory for the next batch.",
            stats.buffered,
            transport,
        ),
        _gauge(
            "apicat_events_journal_pending",
            "Journaled events not yet replayed (a backlog after a transport outage).",
            stats.journal_pending,
            transport,
        ),
        _gauge(
            "apicat_event_transport_up",
            "1 while the event transport accepts batches, 0 while it is down and events are "
            "journaled.",
            1 if stats.transport_up else 0,
            transport,
        ),
    ]


def gateway_families(container: Container) -> list[Metric]:
    """Every gateway metric, read from ``container`` now; pure reads, no I/O.

    Args:
        container: the gateway's runtime parts.

    Returns:
        The event pipeline's families (see ``event_families``), then routing, cache, rate
        limit and upstream families.
    """
    families = event_families(container.emitter)
    families.append(
        _gauge(
            "apicat_routing_active_categories",
            "Categories the current routing config serves (0 makes /health unhealthy).",
            len(container.routing.category_names),
            {},
        )
    )
    families.append(
        _counter(
            "apicat_cache_errors",
            "Cache store operations that failed (get, set, fill lock); the request was served "
            "without the cache (a failed read is a miss).",
            container.service.cache_errors,
            {"backend": container.cache.backend},
        )
    )
    families.append(
        _counter(
            "apicat_rate_limit_errors",
            "Rate-limit store failures; each one let its request through (fail open).",
            container.limiter.errors,
            {"backend": container.limiter.backend},
        )
    )
    states = list(container.breakers.states().values())
    circuits = GaugeMetricFamily(
        "apicat_upstream_circuits",
        "Upstream base URLs whose circuit breaker is in each state (open ones are skipped).",
        labels=["state"],
    )
    for state in CircuitState:
        circuits.add_metric([state.value], states.count(state))
    families.append(circuits)
    families.append(
        _gauge(
            "apicat_upstreams_probed_down",
            "Upstream base URLs the health probes mark Down (tried last in their chains).",
            len(container.health.down),
            {},
        )
    )
    return families


class GatewayCollector:
    """Collects ``gateway_families`` of one container per scrape (a prometheus ``Collector``)."""

    def __init__(self, container: Container) -> None:
        self._container = container

    def collect(self) -> Iterable[Metric]:
        return gateway_families(self._container)


class ConsumerProgress(Protocol):
    """What ``apicat consumer``'s ``EventConsumer`` counts; read-only here."""

    @property
    def rows_written(self) -> int: ...

    @property
    def dead_lettered(self) -> int: ...

    @property
    def batches(self) -> int: ...

    @property
    def held_events(self) -> int: ...


def consumer_families(progress: ConsumerProgress) -> list[Metric]:
    """The consumer's counters, read from ``progress`` now.

    Args:
        progress: the running consumer (``consumers.kafka_consumer.EventConsumer``).

    Returns:
        Rows written, messages dead-lettered, batches delivered, events held.
    """
    return [
        _counter(
            "apicat_consumer_rows_written",
            "Event rows inserted into the store (duplicates already skipped).",
            progress.rows_written,
            {},
        ),
        _counter(
            "apicat_consumer_dead_lettered",
            "Messages that could not become rows, sent to the dead-letter topic with a reason.",
            progress.dead_lettered,
            {},
        ),
        _counter(
            "apicat_consumer_batches",
            "Batches delivered (inserted and dead-lettered) before their offsets were committed.",
            progress.batches,
            {},
        ),
        _gauge(
            "apicat_consumer_held_events",
            "Converted events not stored yet: the batch being inserted and those waiting behind "
            "it (grows while the store is slow or down).",
            progress.held_events,
            {},
        ),
    ]


class ConsumerCollector:
    """Collects ``consumer_families`` per scrape (a prometheus ``Collector``)."""

    def __init__(self, progress: ConsumerProgress) -> None:
        self._progress = progress

    def collect(self) -> Iterable[Metric]:
        return consumer_families(self._progress)


def new_registry(collector: Collector) -> CollectorRegistry:
    """A registry of ``collector`` plus the process, platform and garbage-collector metrics.

    Args:
        collector: the app's own collector (``GatewayCollector``, ``ConsumerCollector``).

    Returns:
        A registry nobody else shares (never prometheus_client's global ``REGISTRY``).
    """
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    registry.register(collector)
    return registry


def register_metrics(app: Quart, container: Container) -> CollectorRegistry:
    """Route ``GET /metrics`` on the gateway app; returns its registry.

    ``/metrics`` is outside ``/api/v1``, so, like ``/health``, the edge never rate-limits it.
    """
    registry = new_registry(GatewayCollector(container))

    @app.get(METRICS_PATH)
    @tag(["operations"])
    async def metrics() -> Response:
        """Prometheus text format: event pipeline, cache, rate limit, circuits, process.

        The same numbers as ``/health``, read at scrape time; counters end in ``_total``.
        """
        return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)

    return registry


def metrics_asgi_app(registry: CollectorRegistry) -> ASGIApp:
    """An ASGI app serving ``registry`` at ``/metrics`` (404 elsewhere), for ``serve_app``.

    prometheus_client's ``make_asgi_app`` answers every HTTP path and does not speak the
    lifespan protocol (it asserts an HTTP scope), which ``serve_app`` runs with, so this
    answers the lifespan itself and hands ``/metrics`` to it. The library negotiates the
    format (text 0.0.4 by default, text 1.0.0 or OpenMetrics when the scraper asks, gzip when
    accepted), which Prometheus handles either way.
    """
    exposition: ASGIApp = make_asgi_app(registry)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
        elif scope["type"] == "http" and scope["path"] == METRICS_PATH:
            await exposition(scope, receive, send)
        elif scope["type"] == "http":
            await send(
                {
                    "type": "http.response.start",
                    "status": 404,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8")],
                }
            )
            await send({"type": "http.response.body", "body": b"not found; try /metrics\n"})

    return app
