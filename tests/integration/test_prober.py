"""The prober against real loopback upstreams: verdicts, Up/Down, events, schedule and leases."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.events import MemoryEmitter
from gateway.upstream import AiohttpUpstreamClient
from health.cli import prober as prober_command
from health.prober import Prober
from health.schedule import probe_offset_s
from health.status import MemoryStatusStore, StatusStoreError, UpstreamStatus
from health.targets import ProbeTarget, probe_targets
from schemas.endpoints import EndpointKey
from schemas.events import HealthProbeEvent, ProbeStatus
from tests.support.gateway import Source, build_config
from tests.support.net import free_port
from tests.support.upstreams import DemoUpstreams

HOME = "/api/v1/home"


@pytest.fixture
async def fetcher() -> AsyncIterator[AiohttpUpstreamClient]:
    client = AiohttpUpstreamClient(
        max_body_bytes=5 * 1024 * 1024, max_connections=20, user_agent="apicat-test"
    )
    yield client
    await client.aclose()


def home_targets(upstreams: DemoUpstreams, *sources: Source) -> list[ProbeTarget]:
    for source in sources:
        for name in (source.name, *source.fallbacks):
            upstreams.set_knobs(name)  # an unknown name becomes a clean source
    config = build_config(upstreams, {"anime": list(sources)}, paths=(HOME,))
    return probe_targets(config, default_interval_s=600)


class Recorder:
    """Collects ``on_status`` calls: (new, previous) pairs and the time each arrived."""

    def __init__(self) -> None:
        self.calls: list[tuple[UpstreamStatus, UpstreamStatus | None]] = []

    def __call__(self, new: UpstreamStatus, previous: UpstreamStatus | None) -> None:
        self.calls.append((new, previous))


def make_prober(
    targets: Sequence[ProbeTarget] | Callable[[], Sequence[ProbeTarget]],
    fetcher: AiohttpUpstreamClient,
    store: MemoryStatusStore | None = None,
    *,
    holder: str = "prober-1",
    on_status: Recorder | None = None,
) -> tuple[Prober, MemoryStatusStore, MemoryEmitter]:
    store = store or MemoryStatusStore()
    emitter = MemoryEmitter()
    prober = Prober(
        targets if callable(targets) else lambda: targets,
        fetcher,
        store,
        emitter,
        holder=holder,
        instance=f"test-{holder}",
        down_after=2,
        on_status=on_status,
        max_jitter_s=0.0,
    )
    return prober, store, emitter


async def test_failing_upstream_goes_down_after_two_probes_and_recovers_on_one_ok(
    upstreams: DemoUpstreams, fetcher: AiohttpUpstreamClient
) -> None:
    [target] = home_targets(upstreams, Source("alpha", 1))
    recorder = Recorder()
    prober, store, emitter = make_prober([target], fetcher, on_status=recorder)

    ok = await prober.probe(target)
    upstreams.set_knobs("alpha", error_rate=1.0)
    first_error = await prober.probe(target)
    second_error = await prober.probe(target)
    upstreams.set_knobs("alpha", error_rate=0.0)
    recovered = await prober.probe(target)

    assert [(s.status, s.up, s.consecutive_failures) for s in (ok, first_error, second_error)] == [
        (ProbeStatus.OK, True, 0),
        (ProbeStatus.ERROR, True, 1),
        (ProbeStatus.ERROR, False, 2),
    ]
    assert (recovered.status, recovered.up) == (ProbeStatus.OK, True)
    assert second_error.detail == "HTTP 503"
    assert second_error.changed_at > ok.changed_at
    assert recovered.changed_at > second_error.changed_at
    assert await store.get_all() == {target.base_url: recovered}
    assert upstreams.calls("alpha", "home") == 4
    # The callback sees each transition with the status it replaced.
    assert [(new.up, prev.up if prev else None) for new, prev in recorder.calls] == [
        (True, None),
        (True, True),
        (False, True),
        (True, False),
    ]
    events = emitter.of_type(HealthProbeEvent)
    assert [(e.status, e.status_code) for e in events] == [
        (ProbeStatus.OK, 200),
        (ProbeStatus.ERROR, 503),
        (ProbeStatus.ERROR, 503),
        (ProbeStatus.OK, 200),
    ]
    event = events[1]
    assert (event.upstream_url, event.category, event.endpoint, event.source_name) == (
        target.base_url,
        "anime",
        HOME,
        "alpha",
    )
    assert event.instance == "test-prober-1"
    assert event.detail == "HTTP 503"
    assert event.latency_ms > 0


async def test_upstream_slower_than_the_probe_timeout_is_timeout(
    upstreams: DemoUpstreams, fetcher: AiohttpUpstreamClient
) -> None:
    [target] = home_targets(upstreams, Source("alpha", 1))
    target = dataclasses.replace(target, timeout_s=0.3)
    upstreams.set_knobs("alpha", timeout_rate=1.0)
    prober, _, emitter = make_prober([target], fetcher)

    started = time.monotonic()
    status = await prober.probe(target)

    assert time.monotonic() - started < 2.0
    assert (status.status, status.up) == (ProbeStatus.TIMEOUT, True)
    assert "0.3s" in status.detail
    [event] = emitter.of_type(HealthProbeEvent)
    assert (event.status, event.status_code) == (ProbeStatus.TIMEOUT, None)


@pytest.mark.parametrize("knob", ["invalid_schema_rate", "low_confidence_rate", "non_json_rate"])
async def test_answer_that_fails_validation_is_invalid(
    upstreams: DemoUpstreams, fetcher: AiohttpUpstreamClient, knob: str
) -> None:
    [target] = home_targets(upstreams, Source("alpha", 1))
    upstreams.set_knobs("alpha", **{knob: 1.0})
    prober, _, emitter = make_prober([target], fetcher)

    status = await prober.probe(target)

    assert status.status is ProbeStatus.INVALID
    assert status.detail  # "path: rule" or the JSON error
    [event] = emitter.of_type(HealthProbeEvent)
    assert (event.status, event.status_code, event.detail) == (
        ProbeStatus.INVALID,
        200,
        status.detail,
    )


async def test_unreachable_upstream_is_error(fetcher: AiohttpUpstreamClient) -> None:
    port = free_port()  # nobody listens on it
    target = ProbeTarget(
        "anime", "gone", f"http://127.0.0.1:{port}/v1", f"http://127.0.0.1:{port}/v1/home",
        EndpointKey.HOME, 600.0, 2.0, (), 0.5,
    )  # fmt: skip
    prober, _, _ = make_prober([target], fetcher)
    status = await prober.probe(target)
    assert status.status is ProbeStatus.ERROR
    assert "Connect" in status.detail


def short_interval(targets: Sequence[ProbeTarget], interval_s: float) -> list[ProbeTarget]:
    return [dataclasses.replace(target, interval_s=interval_s) for target in targets]


def rounds_probed(recorder: Recorder, interval_s: float) -> dict[str, list[int]]:
    """Base URL → the phase index (round) of every probe the recorder saw."""
    rounds: dict[str, list[int]] = {}
    for status, _ in recorder.calls:
        offset = probe_offset_s(f"{status.category}|{status.url}", interval_s)
        # A probe lands just after its phase point (no jitter here; latency is ms).
        rounds.setdefault(status.url, []).append(round((status.checked_at - offset) / interval_s))
    return rounds


async def wait_until(condition: object, timeout_s: float) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_two_probers_sharing_a_store_probe_each_upstream_once_per_round(
    upstreams: DemoUpstreams, fetcher: AiohttpUpstreamClient
) -> None:
    interval_s = 0.5
    targets = short_interval(
        home_targets(upstreams, Source("alpha", 1, ("beta",)), Source("gamma", 2)), interval_s
    )
    shared = MemoryStatusStore()
    recorder = Recorder()
    first, _, _ = make_prober(targets, fetcher, shared, holder="one", on_status=recorder)
    second, _, _ = make_prober(targets, fetcher, shared, holder="two", on_status=recorder)
    stop = asyncio.Event()
    runs = [asyncio.create_task(p.run(stop)) for p in (first, second)]
    try:
        await wait_until(
            lambda: (
                all(len(r) >= 4 for r in rounds_probed(recorder, interval_s).values())
                and len(rounds_probed(recorder, interval_s)) == len(targets)
            ),
            timeout_s=5,
        )
    finally:
        stop.set()
        await asyncio.gather(*runs)

    for url, rounds in rounds_probed(recorder, interval_s).items():
        assert rounds == list(range(rounds[0], rounds[0] + len(rounds))), url
    # Every request the upstreams saw is one recorded probe: nobody probed a round twice.
    stats = upstreams.stats()["sources"]
    assert sum(stats[name]["total"] for name in ("alpha", "beta", "gamma")) == len(recorder.calls)


async def test_run_stops_at_once_even_with_a_probe_due_in_ten_minutes(
    upstreams: DemoUpstreams, fetcher: AiohttpUpstreamClient
) -> None:
    targets = home_targets(upstreams, Source("alpha", 1))
    prober, _, _ = make_prober(targets, fetcher)
    stop = asyncio.Event()
    task = asyncio.create_task(prober.run(stop))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    stop.set()
    await asyncio.wait_for(task, timeout=1)
    assert time.monotonic() - started < 0.5


class FlakyStore(MemoryStatusStore):
    """A store whose every call fails, like Redis during an outage."""

    async def try_lease(self, key: str, slot: int, holder: str, ttl_s: float) -> bool:
        raise StatusStoreError("connection refused")

    async def put(self, status: UpstreamStatus) -> None:
        raise StatusStoreError("connection refused")

    async def get(self, url: str) -> UpstreamStatus | None:
        raise StatusStoreError("connection refused")


async def test_store_outage_means_probe_anyway_and_keep_counting_locally(
    upstreams: DemoUpstreams, fetcher: AiohttpUpstreamClient
) -> None:
    interval_s = 0.3
    targets = short_interval(home_targets(upstreams, Source("alpha", 1)), interval_s)
    upstreams.set_knobs("alpha", error_rate=1.0)
    recorder = Recorder()
    prober, _, emitter = make_prober(targets, fetcher, FlakyStore(), on_status=recorder)
    stop = asyncio.Event()
    task = asyncio.create_task(prober.run(stop))
    try:
        await wait_until(lambda: len(emitter.of_type(HealthProbeEvent)) >= 2, timeout_s=5)
    finally:
        stop.set()
        await task
    # Without the store the previous status comes from this prober's own memory.
    assert [s.consecutive_failures for s, _ in recorder.calls[:2]] == [1, 2]
    assert recorder.calls[1][0].up is False


async def test_new_targets_are_picked_up_without_a_restart(
    upstreams: DemoUpstreams, fetcher: AiohttpUpstreamClient
) -> None:
    interval_s = 0.3
    current = short_interval(home_targets(upstreams, Source("alpha", 1)), interval_s)
    added = short_interval(home_targets(upstreams, Source("beta", 1)), interval_s)
    recorder = Recorder()
    prober, store, _ = make_prober(lambda: current, fetcher, on_status=recorder)
    stop = asyncio.Event()
    task = asyncio.create_task(prober.run(stop))
    try:
        await wait_until(lambda: len(recorder.calls) >= 1, timeout_s=3)
        current = current + added
        await wait_until(lambda: added[0].base_url in {s.url for s, _ in recorder.calls}, 3)
    finally:
        stop.set()
        await task
    assert set((await store.get_all()).keys()) == {t.base_url for t in current}


async def test_removed_upstreams_are_forgotten_by_the_status_store(
    upstreams: DemoUpstreams, fetcher: AiohttpUpstreamClient
) -> None:
    interval_s = 0.3
    kept = short_interval(home_targets(upstreams, Source("alpha", 1)), interval_s)
    removed = short_interval(home_targets(upstreams, Source("beta", 1)), interval_s)
    # A status left by an earlier config, before this prober started.
    gone = short_interval(home_targets(upstreams, Source("gamma", 1)), interval_s)
    earlier, store, _ = make_prober(gone, fetcher, holder="earlier")
    leftover = await earlier.probe(gone[0])
    current = kept + removed
    recorder = Recorder()
    prober, _, _ = make_prober(lambda: current, fetcher, store, on_status=recorder)
    stop = asyncio.Event()
    task = asyncio.create_task(prober.run(stop))
    try:
        await wait_until(lambda: len({s.url for s, _ in recorder.calls}) >= 2, timeout_s=3)
        assert leftover.url not in await store.get_all()
        current = kept
        seen = len(recorder.calls)
        # Two rounds of the kept upstream: the second began in a loop cycle after the edit,
        # whose pruning comes before its probes.
        kept_url = kept[0].base_url
        await wait_until(
            lambda: sum(1 for new, _ in recorder.calls[seen:] if new.url == kept_url) >= 2, 3
        )
    finally:
        stop.set()
        await task
    assert set(await store.get_all()) == {kept[0].base_url}


def test_prober_command_rejects_a_bad_config_naming_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"categories": [{"name": "anime", "probe": {"interval_seconds": 1}}]}')
    result = CliRunner().invoke(prober_command, ["--config", str(bad)])
    assert result.exit_code == 2
    assert "categories[0].probe.interval_seconds" in result.output
    assert "Traceback" not in result.output
