"""HTTP semantics of the ``/api/v1`` edge (``gateway.edge.ApiEdge``) a client relies on.

Through Quart's test client, which takes the same ASGI path as the server, and once through
the real server (``gateway.server``) on loopback.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from gateway.app import create_app
from gateway.container import Container
from gateway.events import MemoryEmitter
from gateway.server import listen, serve_app
from schemas.config import GatewayConfig
from schemas.events import RequestEvent
from tests.support.gateway import Source, build_config, gateway_settings, running_gateway
from tests.support.upstreams import DemoUpstreams


def anime(upstreams: DemoUpstreams) -> GatewayConfig:
    upstreams.set_knobs("alpha")
    return build_config(upstreams, {"anime": [Source("alpha", 1)]})


async def test_head_answers_the_get_headers_without_a_body(
    upstreams: DemoUpstreams, tmp_path: Path
) -> None:
    async with running_gateway(anime(upstreams), gateway_settings(tmp_path)) as gw:
        got = await gw.get("/api/v1/home?category=anime")
        head = await gw.client.head("/api/v1/home?category=anime")
        head_body = await head.get_data(as_text=False)
        events = gw.requests()
    assert head.status_code == 200
    assert head_body == b""
    assert got.status == 200
    assert head.headers["X-Cache"] == "HIT"
    assert head.headers["X-Source"] == "alpha"
    assert [e.status for e in events] == [200, 200], "HEAD is a request like any other"


async def test_other_methods_get_405_with_allow_and_options_lists_them(
    upstreams: DemoUpstreams, tmp_path: Path
) -> None:
    async with running_gateway(anime(upstreams), gateway_settings(tmp_path)) as gw:
        deleted = await gw.client.delete("/api/v1/home?category=anime")
        options = await gw.client.options("/api/v1/home")
        events = gw.requests()
    assert deleted.status_code == 405
    assert deleted.headers["Allow"] == "GET, HEAD, OPTIONS"
    body = await deleted.get_json()
    assert body["code"] == "method_not_allowed"
    assert body["request_id"] == deleted.headers["X-Request-Id"]
    assert options.status_code == 200
    assert options.headers["Allow"] == "GET, HEAD, OPTIONS"
    assert [(e.status, e.error_code) for e in events] == [(405, "method_not_allowed"), (200, None)]
    assert upstreams.calls("alpha") == 0


async def test_api_prefix_boundaries_decide_which_paths_are_api(
    upstreams: DemoUpstreams, tmp_path: Path
) -> None:
    async with running_gateway(anime(upstreams), gateway_settings(tmp_path)) as gw:
        bare = await gw.get("/api/v1?category=anime")
        nested = await gw.get("/api/v1/home/extra?category=anime")
        day_nested = await gw.get("/api/v1/jadwal-rilis/senin/x?category=anime")
        not_api = await gw.get("/api/v10/home?category=anime")
    for response in (bare, nested, day_nested):
        assert response.status == 404
        assert response.json()["code"] == "unknown_endpoint"
        assert "/api/v1/jadwal-rilis/{day}" in response.json()["valid_endpoints"]
    assert not_api.status == 404
    assert not_api.json()["code"] == "not_found", "answered by the app, not the API edge"


async def test_percent_encoded_utf8_queries_are_forwarded_re_encoded(
    upstreams: DemoUpstreams, tmp_path: Path
) -> None:
    async with running_gateway(anime(upstreams), gateway_settings(tmp_path)) as gw:
        encoded = await gw.get("/api/v1/search?category=anime&q=one+piece%20caf%C3%A9")
        urls = [a.url for a in gw.attempts()]
    assert encoded.status == 200
    assert urls == [upstreams.source_url("alpha") + "/search?q=one+piece+caf%C3%A9"]


async def test_a_query_string_with_too_many_fields_is_refused_before_parsing_it_all(
    upstreams: DemoUpstreams, tmp_path: Path
) -> None:
    settings = gateway_settings(tmp_path, max_query_params=3)
    async with running_gateway(anime(upstreams), settings) as gw:
        at_limit = await gw.get("/api/v1/home?category=anime&a=1&b=2&c=3")
        over = await gw.get("/api/v1/home?category=anime&a=1&b=2&c=3&d=4")
        flood = await gw.get("/api/v1/home?category=anime" + "&x=1" * 5000)
    assert at_limit.status == 200
    assert over.status == 400
    assert "at most 3" in over.json()["message"]
    assert flood.status == 400
    assert flood.json()["code"] == "invalid_parameter"
    assert "more than 8 fields" in flood.json()["message"]


async def test_request_events_name_the_endpoint_template_like_attempt_events(
    upstreams: DemoUpstreams, tmp_path: Path
) -> None:
    async with running_gateway(anime(upstreams), gateway_settings(tmp_path)) as gw:
        await gw.get("/api/v1/jadwal-rilis/Senin?category=anime")
        (request,) = gw.requests()
        (attempt,) = gw.attempts()
    assert request.endpoint == attempt.endpoint == "/api/v1/jadwal-rilis/{day}"
    assert request.path == "/api/v1/jadwal-rilis/Senin"


async def test_the_edge_serves_through_the_real_server_with_ops_routes_alongside(
    upstreams: DemoUpstreams, tmp_path: Path
) -> None:
    events = MemoryEmitter()
    container = Container(gateway_settings(tmp_path), anime(upstreams), emitter=events)
    app = create_app(container)
    stop = asyncio.Event()
    listener = listen("127.0.0.1", 0)
    port = listener.getsockname()[1]

    async def stopped() -> None:
        await stop.wait()

    server = asyncio.create_task(serve_app(app, listener, stopped))
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            async with asyncio.timeout(30):
                while True:  # bounded by the timeout: wait for the socket to accept
                    try:
                        async with session.get(f"{base}/livez") as live:
                            break
                    except aiohttp.ClientConnectionError:
                        await asyncio.sleep(0.05)
            async with session.get(f"{base}/api/v1/home?category=anime") as first:
                first_body = await first.read()
            async with session.head(f"{base}/api/v1/home?category=anime") as head:
                head_length = head.headers["Content-Length"]
    finally:
        stop.set()
        await server
    assert live.status == 200
    assert first.status == 200
    assert first.headers["X-Cache"] == "MISS"
    assert head.status == 200
    assert head_length == str(len(first_body))
    assert [e.cache_status.value for e in events.of_type(RequestEvent)] == ["MISS", "HIT"]
