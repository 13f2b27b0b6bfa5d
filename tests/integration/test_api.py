"""The public API contract (SPEC §4): bodies, headers and errors a client depends on."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.config import GatewayConfig
from tests.support.gateway import (
    Source,
    build_config,
    gateway_settings,
    running_gateway,
)
from tests.support.upstreams import DemoUpstreams


def two_categories(upstreams: DemoUpstreams) -> GatewayConfig:
    return build_config(
        upstreams,
        {"anime": [Source("alpha", 1)], "drakor": [Source("delta", 1)]},
    )


async def test_query_and_day_path_are_forwarded_without_category(
    upstreams: DemoUpstreams, tmp_path: Path
) -> None:
    upstreams.set_knobs("alpha")
    config = build_config(upstreams, {"anime": [Source("alpha", 1)]})
    async with running_gateway(config, gateway_settings(tmp_path)) as gw:
        search = await gw.get("/api/v1/search?q=naruto&category=anime&page=2")
        day = await gw.get("/api/v1/jadwal-rilis/Senin?category=anime")
        urls = [a.url for a in gw.attempts()]
    assert search.status == 200
    assert "naruto" in search.body.decode().lower()
    assert urls == [
        upstreams.source_url("alpha") + "/search?q=naruto&page=2",
        upstreams.source_url("alpha") + "/jadwal-rilis/senin",
    ]
    assert day.status == 200
    assert upstreams.calls("alpha", "jadwal-rilis/senin") == 1


async def test_every_answer_carries_a_request_id_and_keeps_a_client_one(
    upstreams: DemoUpstreams, tmp_path: Path
) -> None:
    upstreams.set_knobs("alpha")
    config = build_config(upstreams, {"anime": [Source("alpha", 1)]})
    async with running_gateway(config, gateway_settings(tmp_path)) as gw:
        mine = await gw.get("/api/v1/home?category=anime", {"X-Request-Id": "client-42"})
        generated = await gw.get("/api/v1/nope")
        events = gw.requests()
    assert mine.headers["X-Request-Id"] == "client-42"
    assert len(generated.headers["X-Request-Id"]) == 32
    assert generated.json()["request_id"] == generated.headers["X-Request-Id"]
    assert events[0].request_id == "client-42"


async def test_category_all_answers_each_category_and_reports_the_failing_one(
    upstreams: DemoUpstreams, tmp_path: Path
) -> None:
    upstreams.set_knobs("alpha")
    upstreams.set_knobs("delta", status_override=404)
    async with running_gateway(two_categories(upstreams), gateway_settings(tmp_path)) as gw:
        response = await gw.get("/api/v1/home?category=all")
    body = response.json()
    assert response.status == 200
    assert list(body["categories"]) == ["anime"]
    assert body["categories"]["anime"]["source"] == "alpha"
    assert body["errors"]["drakor"]["code"] == "all_sources_failed"
    assert response.headers["X-Cache"] == "anime=MISS"


async def test_category_all_is_503_when_every_category_fails(
    upstreams: DemoUpstreams, tmp_path: Path
) -> None:
    upstreams.set_knobs("alpha", status_override=404)
    upstreams.set_knobs("delta", status_override=404)
    async with running_gateway(two_categories(upstreams), gateway_settings(tmp_path)) as gw:
        response = await gw.get("/api/v1/home?category=all")
    assert response.status == 503
    assert set(response.json()["errors"]) == {"anime", "drakor"}


async def test_503_names_each_source_tried_without_internal_urls(
    upstreams: DemoUpstreams, tmp_path: Path
) -> None:
    upstreams.set_knobs("alpha", status_override=500)
    upstreams.set_knobs("alpha-mirror", non_json_rate=1.0)
    config = build_config(upstreams, {"anime": [Source("alpha", 1, fallbacks=["alpha-mirror"])]})
    async with running_gateway(config, gateway_settings(tmp_path, retry_attempts=1)) as gw:
        response = await gw.get("/api/v1/home?category=anime")
    body = response.json()
    assert response.status == 503
    assert body["code"] == "all_sources_failed"
    tried = [(a["source"], a["depth"], a["outcome"]) for a in body["attempts"]]
    assert tried == [("alpha", 0, "http_5xx"), ("alpha", 1, "invalid_json")]
    assert "127.0.0.1" not in response.body.decode()


async def test_503_includes_urls_only_when_the_admin_setting_allows(
    upstreams: DemoUpstreams, tmp_path: Path
) -> None:
    upstreams.set_knobs("alpha", status_override=500)
    config = build_config(upstreams, {"anime": [Source("alpha", 1)]})
    settings = gateway_settings(tmp_path, retry_attempts=1, expose_upstream_urls=True)
    async with running_gateway(config, settings) as gw:
        response = await gw.get("/api/v1/home?category=anime")
    attempt = response.json()["attempts"][0]
    assert attempt["url"] == upstreams.source_url("alpha") + "/home"


@pytest.mark.parametrize(
    ("path", "status", "code", "listed"),
    [
        ("/api/v1/home", 400, "missing_category", "valid_categories"),
        ("/api/v1/home?category=manga", 404, "unknown_category", "valid_categories"),
        ("/api/v1/search?category=anime", 400, "invalid_parameter", "required_parameters"),
        ("/api/v1/jadwal-rilis/someday?category=anime", 400, "invalid_day", "valid_days"),
        ("/api/v1/nope?category=anime", 404, "unknown_endpoint", "valid_endpoints"),
        ("/api/v1/home?category=anime&q=" + "x" * 201, 400, "invalid_parameter", "parameter"),
    ],
)
async def test_bad_requests_get_json_errors_naming_the_valid_choices(
    upstreams: DemoUpstreams, tmp_path: Path, path: str, status: int, code: str, listed: str
) -> None:
    async with running_gateway(two_categories(upstreams), gateway_settings(tmp_path)) as gw:
        response = await gw.get(path)
    body = response.json()
    assert response.status == status
    assert response.headers["Content-Type"] == "application/json"
    assert body["code"] == code
    assert body[listed]
    assert body["message"]
    assert upstreams.calls("alpha") == 0, "a bad request never reaches an upstream"


async def test_missing_category_lists_the_configured_categories(
    upstreams: DemoUpstreams, tmp_path: Path
) -> None:
    async with running_gateway(two_categories(upstreams), gateway_settings(tmp_path)) as gw:
        response = await gw.get("/api/v1/movie")
    assert response.json()["valid_categories"] == ["anime", "drakor", "all"]


async def test_rate_limit_answers_429_with_retry_after_and_ratelimit_headers(
    upstreams: DemoUpstreams, tmp_path: Path
) -> None:
    upstreams.set_knobs("alpha")
    config = build_config(upstreams, {"anime": [Source("alpha", 1)]})
    async with running_gateway(config, gateway_settings(tmp_path, rate_limit="2/minute")) as gw:
        ok = [await gw.get("/api/v1/home?category=anime") for _ in range(2)]
        limited = await gw.get("/api/v1/home?category=anime")
        other_client = await gw.get(
            "/api/v1/home?category=anime", {"X-Forwarded-For": "203.0.113.7"}
        )
        health = await gw.get("/health")
    assert [r.status for r in ok] == [200, 200]
    assert ok[1].headers["RateLimit-Remaining"] == "0"
    assert limited.status == 429
    assert limited.json()["code"] == "rate_limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert limited.headers["RateLimit-Limit"] == "2"
    assert other_client.status == 429, "X-Forwarded-For is ignored from untrusted peers"
    assert health.status == 200, "operational endpoints are not rate limited"


async def test_trusted_proxy_forwarded_address_is_limited_separately(
    upstreams: DemoUpstreams, tmp_path: Path
) -> None:
    upstreams.set_knobs("alpha")
    config = build_config(upstreams, {"anime": [Source("alpha", 1)]})
    settings = gateway_settings(tmp_path, rate_limit="1/minute", trusted_proxies=("127.0.0.0/8",))
    async with running_gateway(config, settings) as gw:
        first = await gw.get("/api/v1/home?category=anime", {"X-Forwarded-For": "203.0.113.1"})
        second = await gw.get("/api/v1/home?category=anime", {"X-Forwarded-For": "203.0.113.2"})
        again = await gw.get("/api/v1/home?category=anime", {"X-Forwarded-For": "203.0.113.1"})
    assert (first.status, second.status, again.status) == (200, 200, 429)


async def test_openapi_documents_every_endpoint_and_docs_work_offline(
    upstreams: DemoUpstreams, tmp_path: Path
) -> None:
    async with running_gateway(two_categories(upstreams), gateway_settings(tmp_path)) as gw:
        spec = (await gw.get("/openapi.json")).json()
        page = await gw.get("/docs")
        script = await gw.get("/docs/assets/swagger-ui-bundle.js")
        css = await gw.get("/docs/assets/swagger-ui.css")
    paths = spec["paths"]
    assert {
        "/api/v1/home",
        "/api/v1/jadwal-rilis",
        "/api/v1/jadwal-rilis/{day}",
        "/api/v1/anime-terbaru",
        "/api/v1/movie",
        "/api/v1/anime-detail",
        "/api/v1/episode-detail",
        "/api/v1/search",
    } <= set(paths)
    search_params = {p["name"] for p in paths["/api/v1/search"]["get"]["parameters"]}
    assert {"category", "q"} <= search_params
    assert "503" in paths["/api/v1/home"]["get"]["responses"]
    assert page.status == 200
    html = page.body.decode()
    assert "/docs/assets/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower()
    assert script.status == 200 and len(script.body) > 100_000
    assert css.status == 200


async def test_health_is_healthy_with_checks_and_probes_answer(
    upstreams: DemoUpstreams, tmp_path: Path
) -> None:
    async with running_gateway(two_categories(upstreams), gateway_settings(tmp_path)) as gw:
        health = await gw.get("/health")
        ready = await gw.get("/readyz")
        live = await gw.get("/livez")
    body = health.json()
    assert health.status == 200
    assert body["status"] == "healthy"
    assert {"config", "cache", "upstreams", "rate_limit"} <= set(body["checks"])
    assert (ready.status, live.status) == (200, 200)


async def test_health_is_unhealthy_503_when_no_category_is_active(
    upstreams: DemoUpstreams, tmp_path: Path
) -> None:
    config = build_config(upstreams, {})
    async with running_gateway(config, gateway_settings(tmp_path)) as gw:
        health = await gw.get("/health")
        ready = await gw.get("/readyz")
    assert health.status == 503
    assert health.json()["checks"]["config"]["status"] == "unhealthy"
    assert ready.status == 503


async def test_wrong_method_and_unknown_paths_answer_json_not_html(
    upstreams: DemoUpstreams, tmp_path: Path
) -> None:
    async with running_gateway(two_categories(upstreams), gateway_settings(tmp_path)) as gw:
        posted = await gw.client.post("/api/v1/home?category=anime")
        elsewhere = await gw.get("/favicon.ico")
    assert posted.status_code == 405
    assert (await posted.get_json())["code"] == "method_not_allowed"
    assert elsewhere.status == 404
    assert elsewhere.json()["code"] == "not_found"
