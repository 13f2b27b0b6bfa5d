"""Live config reload: a valid file takes effect at once, an invalid one changes nothing."""

from __future__ import annotations

from pathlib import Path

import orjson

from gateway.reload import reload_config
from schemas.events import ConfigChangeEvent
from tests.support.gateway import Source, build_config, gateway_settings, running_gateway
from tests.support.upstreams import DemoUpstreams


async def test_reload_adds_a_category_live_and_records_a_config_change(
    upstreams: DemoUpstreams, tmp_path: Path
) -> None:
    upstreams.set_knobs("alpha")
    upstreams.set_knobs("delta")
    before = build_config(upstreams, {"anime": [Source("alpha", 1)]})
    after = build_config(upstreams, {"anime": [Source("alpha", 1)], "drakor": [Source("delta", 1)]})
    path = tmp_path / "config.json"
    path.write_bytes(orjson.dumps(after.model_dump(mode="json")))
    async with running_gateway(before, gateway_settings(tmp_path)) as gw:
        assert (await gw.get("/api/v1/home?category=drakor")).status == 404
        assert reload_config(gw.container, path, actor="test") == []
        served = await gw.get("/api/v1/home?category=drakor")
        (change,) = gw.events.of_type(ConfigChangeEvent)
    assert served.status == 200
    assert served.headers["X-Source"] == "delta"
    assert (change.actor, change.action, change.target) == ("test", "reload", str(path))
    assert "drakor" not in change.before and "drakor" in change.after


async def test_an_invalid_file_is_rejected_and_the_old_config_keeps_serving(
    upstreams: DemoUpstreams, tmp_path: Path
) -> None:
    upstreams.set_knobs("alpha")
    config = build_config(upstreams, {"anime": [Source("alpha", 1)]})
    path = tmp_path / "config.json"
    path.write_text('{"categories": [{"name": "all"}]}')
    async with running_gateway(config, gateway_settings(tmp_path)) as gw:
        problems = reload_config(gw.container, path)
        still = await gw.get("/api/v1/home?category=anime")
        changes = gw.events.of_type(ConfigChangeEvent)
    assert problems == ["categories[0].name: 'all' is reserved (category=all means every category)"]
    assert still.status == 200
    assert changes == []
