"""``GET /metrics``: Prometheus text read live from the gateway, the same numbers as /health."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.app import create_app
from gateway.container import Container
from gateway.emitter import BufferedEmitter, EmitterPolicy, EmitterStats, TransportError
from gateway.metrics import ConsumerCollector, metrics_asgi_app, new_registry
from gateway.store_transport import StoreProcessTransport
from tests.integration.test_edge import anime
from tests.integration.test_pipeline_embedded import embedded_settings, running_pipeline
from tests.support.gateway import gateway_settings, running_gateway
from tests.support.metrics import Scrape
from tests.support.net import served
from tests.support.pipeline import wait_for
from tests.support.upstreams import DemoUpstreams
from tests.unit.test_metrics import Progress

HOME = "/api/v1/home?category=anime&page={}"

# /health's event-pipeline fields and the /metrics samples that must carry the same number.
HEALTH_TO_METRIC = {
    "emitted_total": "apicat_events_emitted_total",
    "sent_total": "apicat_events_sent_total",
    "spilled_total": "apicat_events_spilled_total",
    "replayed_total": "apicat_events_replayed_total",
    "dropped_total": "apicat_events_dropped_total",
    "buffered": "apicat_events_buffered",
    "journal_pending": "apicat_events_journal_pending",
    "transport_up": "apicat_event_transport_up",
}


async def test_metrics_is_prometheus_text_whose_event_count_follows_the_requests(
    upstreams: DemoUpstreams, tmp_path: Path
) -> None:
    async with running_gateway(anime(upstreams), gateway_settings(tmp_path)) as gw:
        before = await gw.get("/metrics")
        for page in range(3):
            await gw.get(HOME.format(page))
        after = await gw.get("/metrics")
        health = (await gw.get("/health")).json()
        emitted = len(gw.events.events)
    assert before.status == after.status == 200
    assert after.headers["Content-Type"] == CONTENT_TYPE_LATEST
    assert after.headers["X-Request-Id"]
    assert (
        Scrape.parse(before.body.decode()).value("apicat_events_emitted_total", transport="memory")
        == 0
    )
    scrape = Scrape.parse(after.body.decode())
    assert emitted == 6, "three request events and three upstream attempts"
    assert scrape.value("apicat_events_emitted_total", transport="memory") == emitted
    assert health["checks"]["events"]["emitted_total"] == emitted


async def test_metrics_is_not_rate_limited_like_health(
    upstreams: DemoUpstreams, tmp_path: Path
) -> None:
    settings = gateway_settings(tmp_path, rate_limit="1/minute")
    async with running_gateway(anime(upstreams), settings) as gw:
        allowed = await gw.get(HOME.format(1))
        scrapes = [await gw.get("/metrics") for _ in range(3)]
        limited = await gw.get(HOME.format(2))
    assert allowed.status == 200
    assert [scrape.status for scrape in scrapes] == [200, 200, 200]
    assert limited.status == 429, "the API's one request a minute is used up"


async def test_metrics_is_documented_with_the_operations_routes(
    upstreams: DemoUpstreams, tmp_path: Path
) -> None:
    async with running_gateway(anime(upstreams), gateway_settings(tmp_path)) as gw:
        spec = (await gw.get("/openapi.json")).json()
    assert spec["paths"]["/metrics"]["get"]["tags"] == ["operations"]
    assert spec["paths"]["/health"]["get"]["tags"] == ["operations"]


async def test_open_circuits_show_in_metrics_as_in_health(
    upstreams: DemoUpstreams, tmp_path: Path
) -> None:
    config = anime(upstreams)
    upstreams.set_knobs("alpha", error_rate=1.0)
    settings = gateway_settings(tmp_path, breaker_failure_threshold=1, retry_attempts=1)
    async with running_gateway(config, settings) as gw:
        failed = await gw.get(HOME.format(1))
        scrape = Scrape.parse((await gw.get("/metrics")).body.decode())
        upstream_check = (await gw.get("/health")).json()["checks"]["upstreams"]
    assert failed.status == 503
    assert scrape.value("apicat_upstream_circuits", state="open") == 1
    assert scrape.value("apicat_upstream_circuits", state="closed") == 0
    assert upstream_check["circuits_not_closed"] == 1


class SwitchableTransport:
    """The real store-process transport, with an outage switch in front of it."""

    def __init__(self, inner: StoreProcessTransport) -> None:
        self._inner = inner
        self.name = inner.name
        self.down = False

    async def send(self, batch: Sequence[bytes]) -> None:
        if self.down:
            raise TransportError("outage switched on by the test")
        await self._inner.send(batch)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def scrape_both(client: httpx.AsyncClient) -> tuple[Scrape, dict[str, Any]]:
    """``/metrics`` and ``/health``'s event check, over real HTTP."""
    metrics = await client.get("/metrics")
    assert metrics.headers["content-type"] == CONTENT_TYPE_LATEST
    health = (await client.get("/health")).json()
    return Scrape.parse(metrics.text), health["checks"]["events"]


def assert_same_numbers(scrape: Scrape, events: dict[str, Any]) -> None:
    transport = str(events["transport"])
    from_metrics = {
        field: scrape.value(name, transport=transport) for field, name in HEALTH_TO_METRIC.items()
    }
    assert from_metrics == {field: float(events[field]) for field in HEALTH_TO_METRIC}


def stats_show(
    emitter: BufferedEmitter, condition: Callable[[EmitterStats], bool]
) -> Callable[[], Awaitable[bool]]:
    """A ``wait_for`` condition on the emitter's stats."""

    async def holds() -> bool:
        return condition(emitter.stats())

    return holds


@pytest.mark.clickhouse
async def test_emitter_counters_move_with_requests_and_outages_and_match_health(
    upstreams: DemoUpstreams, tmp_path: Path
) -> None:
    settings = embedded_settings(tmp_path)
    async with running_pipeline(settings) as pipeline:
        process = pipeline.store_process
        assert process is not None
        transport = SwitchableTransport(StoreProcessTransport(lambda: process.url))
        emitter = BufferedEmitter(
            transport,
            tmp_path / "journal",
            EmitterPolicy(linger_s=0.05, retry_initial_s=0.05, retry_max_s=0.2),
        )

        container = Container(settings, anime(upstreams), emitter=emitter)
        async with served(create_app(container)) as client:
            start, _ = await scrape_both(client)
            for page in range(3):
                assert (await client.get(HOME.format(page))).status_code == 200
            await emitter.flush()
            delivered, delivered_health = await scrape_both(client)

            transport.down = True
            for page in range(3, 5):
                assert (await client.get(HOME.format(page))).status_code == 200
            await wait_for(
                stats_show(emitter, lambda s: not s.transport_up and not s.buffered),
                "the flusher to find the transport down and journal the events",
            )
            outage, outage_health = await scrape_both(client)

            transport.down = False
            await wait_for(
                stats_show(emitter, lambda s: s.transport_up and not s.journal_pending),
                "the journal to be replayed",
            )
            recovered, recovered_health = await scrape_both(client)

    label = {"transport": "embedded"}
    assert start.value("apicat_events_emitted_total", **label) == 0
    assert delivered.value("apicat_events_emitted_total", **label) == 6
    assert delivered.value("apicat_events_sent_total", **label) == 6
    assert_same_numbers(delivered, delivered_health)
    assert outage.value("apicat_events_spilled_total", **label) == 4
    assert outage.value("apicat_events_journal_pending", **label) == 4
    assert outage.value("apicat_event_transport_up", **label) == 0
    assert_same_numbers(outage, outage_health)
    assert recovered.value("apicat_events_replayed_total", **label) == 4
    assert recovered.value("apicat_events_sent_total", **label) == 10
    assert recovered.value("apicat_events_dropped_total", **label) == 0
    assert_same_numbers(recovered, recovered_health)


async def test_metrics_over_the_real_server_parse_with_every_family_documented(
    upstreams: DemoUpstreams, tmp_path: Path
) -> None:
    container = Container(gateway_settings(tmp_path), anime(upstreams))
    async with served(create_app(container)) as client:
        response = await client.get("/metrics")
        head = await client.head("/metrics")
    scrape = Scrape.parse(response.text)
    assert response.status_code == head.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    assert {
        "apicat_events_emitted",
        "apicat_cache_errors",
        "apicat_rate_limit_errors",
        "apicat_upstream_circuits",
        "apicat_upstreams_probed_down",
        "process_cpu_seconds",
        "python_gc_collections",
    } <= set(scrape.families)
    assert all(family.documentation for family in scrape.families.values())


async def test_two_gateways_in_one_process_report_only_their_own_numbers(
    upstreams: DemoUpstreams, tmp_path: Path
) -> None:
    config = anime(upstreams)
    async with (
        running_gateway(config, gateway_settings(tmp_path / "one")) as one,
        running_gateway(config, gateway_settings(tmp_path / "two")) as two,
    ):
        await one.get(HOME.format(1))
        first = Scrape.parse((await one.get("/metrics")).body.decode())
        second = Scrape.parse((await two.get("/metrics")).body.decode())
    assert first.value("apicat_events_emitted_total", transport="memory") == 2
    assert second.value("apicat_events_emitted_total", transport="memory") == 0


async def test_consumer_metrics_app_answers_lifespan_and_only_metrics() -> None:
    progress = Progress(rows_written=7)
    app = metrics_asgi_app(new_registry(ConsumerCollector(progress)))
    async with served(app) as client:
        metrics = await client.get("/metrics")
        elsewhere = await client.get("/")
    assert Scrape.parse(metrics.text).value("apicat_consumer_rows_written_total") == 7
    assert metrics.headers["content-type"].startswith("text/plain")
    assert elsewhere.status_code == 404
