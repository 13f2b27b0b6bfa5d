"""Health-aware routing end to end: probes mark an upstream Down, traffic goes around it, and
one good probe brings it back; /health reports each dependency's state."""

from __future__ import annotations

import contextlib
from pathlib import Path

from gateway.emitter import BufferedEmitter, EmitterPolicy, TransportError
from health.prober import Prober
from health.targets import probe_targets
from tests.support.gateway import Source, build_config, gateway_settings, running_gateway
from tests.support.upstreams import DemoUpstreams

MOVIE = "/api/v1/movie?category=anime&page={}"


async def test_probed_down_primary_is_routed_around_and_comes_back_after_one_good_probe(
    upstreams: DemoUpstreams, tmp_path: Path
) -> None:
    upstreams.set_knobs("alpha")
    upstreams.set_knobs("alpha-mirror")
    config = build_config(upstreams, {"anime": [Source("alpha", 1, fallbacks=["alpha-mirror"])]})
    async with running_gateway(config, gateway_settings(tmp_path)) as gw:
        prober = Prober(
            lambda: probe_targets(config, 600),
            gw.container.fetcher,
            gw.container.probe_status,
            gw.events,
            holder="test",
            instance="test",
            down_after=2,
            on_status=lambda new, previous: gw.container.health.mark(new.url, new.up),
        )
        (alpha,) = [t for t in probe_targets(config, 600) if t.base_url.endswith("/alpha/v1")]

        upstreams.set_knobs("alpha", error_rate=1.0)
        first, second = await prober.probe(alpha), await prober.probe(alpha)
        assert (first.up, second.up) == (True, False), "Down after two failed probes"
        upstreams.reset()
        upstreams.set_knobs("alpha")
        upstreams.set_knobs("alpha-mirror")

        around = await gw.get(MOVIE.format(1))
        assert around.headers["X-Fallback-Depth"] == "1"
        assert upstreams.calls("alpha") == 0, "a Down primary is tried after its healthy mirror"
        degraded = (await gw.get("/health")).json()
        assert degraded["status"] == "degraded"
        assert degraded["checks"]["upstreams"]["probed_down"] == 1
        listed = (await gw.get("/health/upstreams")).json()["upstreams"]
        (alpha_row,) = [row for row in listed if row["url"] == alpha.base_url]
        assert (alpha_row["status"], alpha_row["up"], alpha_row["routed_as_down"]) == (
            "Error",
            False,
            True,
        )
        assert alpha_row["consecutive_failures"] == 2

        assert (await prober.probe(alpha)).up
        back = await gw.get(MOVIE.format(2))
        assert back.headers["X-Fallback-Depth"] == "0"
        assert (await gw.get("/health")).json()["status"] == "healthy"


class DownTransport:
    name = "down"

    async def send(self, batch: object) -> None:
        raise TransportError("broker unreachable")

    async def aclose(self) -> None:
        return None


async def test_health_is_degraded_while_the_event_transport_is_down(
    upstreams: DemoUpstreams, tmp_path: Path
) -> None:
    upstreams.set_knobs("alpha")
    config = build_config(upstreams, {"anime": [Source("alpha", 1)]})
    emitter = BufferedEmitter(DownTransport(), tmp_path / "journal", EmitterPolicy())
    async with running_gateway(config, gateway_settings(tmp_path)) as gw:
        gw.container.emitter = emitter
        await gw.get("/api/v1/home?category=anime")
        with contextlib.suppress(TransportError):
            await emitter.flush()
        health = (await gw.get("/health")).json()
    events = health["checks"]["events"]
    assert health["status"] == "degraded"
    assert events["status"] == "degraded"
    assert events["journal_pending"] >= 1
    assert events["dropped_total"] == 0
    await emitter.aclose()
