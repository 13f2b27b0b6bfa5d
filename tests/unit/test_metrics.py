"""Metrics collectors: live reads of the container's parts, formatted as Prometheus text."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, generate_latest

from gateway.config_file import parse_config
from gateway.container import Container
from gateway.emitter import BufferedEmitter, EmitterPolicy, TransportError
from gateway.events import EventEmitter
from gateway.metrics import ConsumerCollector, GatewayCollector, new_registry
from gateway.settings import Settings
from tests.support.metrics import Scrape
from tests.unit.test_config_model import PRD_EXAMPLE
from tests.unit.test_emitter import FlakyTransport, event


def container(tmp_path: Path, emitter: EventEmitter | None = None, **settings: object) -> Container:
    """A real gateway container for the PRD example config; no server, no connection."""
    return Container(
        Settings.from_environ({}, data_dir=tmp_path, **settings),
        parse_config(PRD_EXAMPLE, "prd.json"),
        emitter=emitter,
    )


async def test_gateway_metrics_are_read_from_the_container_at_scrape_time(tmp_path: Path) -> None:
    gateway = container(tmp_path, breaker_failure_threshold=1)
    registry = new_registry(GatewayCollector(gateway))
    before = Scrape.of(registry)

    gateway.breakers.record_failure("http://down.example/v1", now=0.0)  # opens: threshold 1
    gateway.breakers.record_success("http://up.example/v1")
    gateway.health.mark("http://probed.example/v1", up=False)
    gateway.limiter.errors += 2
    gateway.service.cache_errors += 3
    after = Scrape.of(registry)
    await gateway.aclose()

    assert before.value("apicat_events_emitted_total", transport="memory") == 0
    assert before.value("apicat_upstream_circuits", state="open") == 0
    # The circuit change is an event: the memory emitter's counter moved with it.
    assert after.value("apicat_events_emitted_total", transport="memory") == 1
    assert after.value("apicat_upstream_circuits", state="open") == 1
    assert after.value("apicat_upstream_circuits", state="closed") == 1
    assert after.value("apicat_upstream_circuits", state="half_open") == 0
    assert after.value("apicat_upstreams_probed_down") == 1
    assert after.value("apicat_rate_limit_errors_total", backend="memory") == 2
    assert after.value("apicat_cache_errors_total", backend="memory") == 3
    assert after.value("apicat_routing_active_categories") == 1


async def test_buffered_emitter_counters_are_exported_with_their_transport(
    tmp_path: Path,
) -> None:
    transport = FlakyTransport()
    emitter = BufferedEmitter(transport, tmp_path / "journal", EmitterPolicy(batch_size=2))
    gateway = container(tmp_path, emitter)
    registry = new_registry(GatewayCollector(gateway))
    transport.up = False
    for number in range(3):
        emitter.emit(event(number))
    with pytest.raises(TransportError):
        await emitter.flush()
    during = Scrape.of(registry)
    transport.up = True
    await emitter.flush()
    emitter.emit(event(3))
    after = Scrape.of(registry)
    await gateway.aclose()

    assert during.value("apicat_events_spilled_total", transport="fake") == 3
    assert during.value("apicat_events_journal_pending", transport="fake") == 3
    assert during.value("apicat_events_sent_total", transport="fake") == 0
    assert {
        name: after.value(name, transport="fake")
        for name in (
            "apicat_events_emitted_total",
            "apicat_events_sent_total",
            "apicat_events_spilled_total",
            "apicat_events_replayed_total",
            "apicat_events_dropped_total",
            "apicat_events_buffered",
            "apicat_events_journal_pending",
            "apicat_event_transport_up",
        )
    } == {
        "apicat_events_emitted_total": 4,
        "apicat_events_sent_total": 3,
        "apicat_events_spilled_total": 3,
        "apicat_events_replayed_total": 3,
        "apicat_events_dropped_total": 0,
        "apicat_events_buffered": 1,
        "apicat_events_journal_pending": 0,
        "apicat_event_transport_up": 1,
    }


@dataclass
class Progress:
    rows_written: int = 0
    dead_lettered: int = 0
    batches: int = 0
    held_events: int = 0


def test_consumer_metrics_follow_the_consumers_progress() -> None:
    progress = Progress()
    registry = new_registry(ConsumerCollector(progress))
    progress.rows_written, progress.dead_lettered, progress.batches = 120, 2, 3
    progress.held_events = 40
    scrape = Scrape.of(registry)
    assert scrape.value("apicat_consumer_rows_written_total") == 120
    assert scrape.value("apicat_consumer_dead_lettered_total") == 2
    assert scrape.value("apicat_consumer_batches_total") == 3
    assert scrape.value("apicat_consumer_held_events") == 40


async def test_every_apicat_family_is_documented_next_to_process_metrics(tmp_path: Path) -> None:
    gateway = container(tmp_path)
    scrape = Scrape.of(new_registry(GatewayCollector(gateway)))
    await gateway.aclose()
    ours = {name: family for name, family in scrape.families.items() if name.startswith("apicat_")}
    assert len(ours) >= 6
    assert all(len(family.documentation) > 20 for family in ours.values()), "HELP says what"
    assert all(
        sample.name.endswith("_total")
        for family in ours.values()
        if family.type == "counter"
        for sample in family.samples
    )
    assert {"python_info", "python_gc_collections"} <= set(scrape.families)


async def test_each_app_has_its_own_registry_and_the_global_one_stays_empty(
    tmp_path: Path,
) -> None:
    first, second = container(tmp_path / "a"), container(tmp_path / "b")
    first.service.cache_errors = 5
    one = Scrape.of(new_registry(GatewayCollector(first)))
    other = Scrape.of(new_registry(GatewayCollector(second)))
    await first.aclose()
    await second.aclose()
    assert one.value("apicat_cache_errors_total", backend="memory") == 5
    assert other.value("apicat_cache_errors_total", backend="memory") == 0
    assert b"apicat_" not in generate_latest(REGISTRY)
