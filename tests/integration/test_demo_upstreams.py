"""The demo upstreams over real loopback HTTP: knobs change answers, control API, CLI."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from click.testing import CliRunner

from demo.catalog import DEFAULT_SOURCES
from demo.cli import demo_upstreams
from demo.knobs import Knobs
from demo.server import serve_demo_upstreams
from gateway.server import ServerStartupError
from schemas.endpoints import EndpointKey
from schemas.validation import validate_payload
from tests.support.upstreams import DemoUpstreams, DemoUpstreamsError


@pytest.fixture
def http(upstreams: DemoUpstreams) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=upstreams.base_url, timeout=10.0, trust_env=False) as client:
        yield client


def test_a_clean_source_serves_a_valid_payload_naming_itself(
    upstreams: DemoUpstreams, http: httpx.Client
) -> None:
    upstreams.set_knobs("alpha")

    response = http.get("/alpha/v1/home")

    assert response.status_code == 200
    assert response.json()["source"] == "alpha"
    assert validate_payload(EndpointKey.HOME, response.json(), 0.5).ok


@pytest.mark.parametrize(
    ("rest", "endpoint"),
    [
        ("jadwal-rilis/senin", EndpointKey.JADWAL_RILIS_DAY),
        ("search?q=naruto", EndpointKey.SEARCH),
        ("anime-detail?slug=one-piece", EndpointKey.ANIME_DETAIL),
        ("episode-detail/?slug=one-piece-episode-3", EndpointKey.EPISODE_DETAIL),
        ("movie/", EndpointKey.MOVIE),
    ],
)
def test_every_route_serves_its_endpoints_payload(
    upstreams: DemoUpstreams, http: httpx.Client, rest: str, endpoint: EndpointKey
) -> None:
    upstreams.set_knobs("alpha")

    response = http.get(f"/alpha/v1/{rest}")

    assert response.status_code == 200
    assert validate_payload(endpoint, response.json(), 0.5).ok


def test_error_rate_one_answers_503(upstreams: DemoUpstreams, http: httpx.Client) -> None:
    upstreams.set_knobs("alpha", error_rate=1.0)

    assert [http.get("/alpha/v1/home").status_code for _ in range(3)] == [503, 503, 503]


def test_error_status_sets_the_injected_error(upstreams: DemoUpstreams, http: httpx.Client) -> None:
    upstreams.set_knobs("alpha", error_rate=1.0, error_status=502)

    assert http.get("/alpha/v1/home").status_code == 502


def test_status_override_answers_that_status(upstreams: DemoUpstreams, http: httpx.Client) -> None:
    upstreams.set_knobs("alpha", status_override=404)

    response = http.get("/alpha/v1/search?q=naruto")

    assert response.status_code == 404
    assert response.json()["code"] == "demo_fault"


def test_non_json_rate_answers_an_html_page_with_200(
    upstreams: DemoUpstreams, http: httpx.Client
) -> None:
    upstreams.set_knobs("alpha", non_json_rate=1.0)

    response = http.get("/alpha/v1/home")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    with pytest.raises(ValueError):
        orjson.loads(response.content)


def test_low_confidence_rate_answers_confidence_0_1(
    upstreams: DemoUpstreams, http: httpx.Client
) -> None:
    upstreams.set_knobs("alpha", low_confidence_rate=1.0)

    result = validate_payload(EndpointKey.HOME, http.get("/alpha/v1/home").json(), 0.5)

    assert result.confidence == 0.1
    assert result.low_confidence


@pytest.mark.parametrize("knob", ["invalid_schema_rate", "placeholder_rate"])
def test_schema_fault_knobs_serve_json_the_validator_rejects(
    upstreams: DemoUpstreams, http: httpx.Client, knob: str
) -> None:
    upstreams.set_knobs("alpha", **{knob: 1.0})

    response = http.get("/alpha/v1/anime-terbaru")

    assert response.status_code == 200
    result = validate_payload(EndpointKey.ANIME_TERBARU, response.json(), 0.5)
    assert not result.ok
    assert not result.low_confidence


def test_timeout_rate_hangs_past_the_client_timeout(
    upstreams: DemoUpstreams, http: httpx.Client
) -> None:
    upstreams.set_knobs("alpha", timeout_rate=1.0, hang_seconds=5)

    with pytest.raises(httpx.ReadTimeout):
        http.get("/alpha/v1/home", timeout=0.3)


def test_fixed_latency_delays_the_answer(upstreams: DemoUpstreams, http: httpx.Client) -> None:
    upstreams.set_knobs("alpha", latency={"kind": "fixed", "median_ms": 200})

    started = time.perf_counter()
    http.get("/alpha/v1/home")

    assert time.perf_counter() - started >= 0.2


def test_the_same_request_sequence_gets_the_same_outcomes(
    upstreams: DemoUpstreams, http: httpx.Client
) -> None:
    def run() -> list[int]:
        upstreams.set_knobs("alpha", error_rate=0.5, seed=11)
        statuses = [http.get("/alpha/v1/home").status_code for _ in range(20)]
        upstreams.reset()
        return statuses

    first = run()

    assert first == run()
    assert set(first) == {200, 503}


def test_stats_count_requests_per_source_and_path(
    upstreams: DemoUpstreams, http: httpx.Client
) -> None:
    upstreams.set_knobs("alpha", error_rate=1.0)
    upstreams.set_knobs("beta")
    for path in ("/alpha/v1/home", "/alpha/v1/home/", "/alpha/v1/search?q=x", "/beta/v1/movie"):
        http.get(path)
    http.get("/nobody/v1/home")

    stats = upstreams.stats()

    assert stats["sources"]["alpha"] == {"total": 3, "paths": {"home": 2, "search": 1}}
    assert (upstreams.calls("beta"), upstreams.calls("beta", "movie")) == (1, 1)
    assert (stats["total"], stats["not_found"]) == (5, 1)


def test_reset_restores_startup_knobs_and_zeroes_counters(
    upstreams: DemoUpstreams, http: httpx.Client
) -> None:
    startup = upstreams.knobs()
    changed = next(iter(startup))
    upstreams.set_knobs(changed, status_override=500)
    upstreams.set_knobs("added-by-test")
    http.get(f"/{changed}/v1/home")

    upstreams.reset()

    assert upstreams.knobs() == startup
    assert upstreams.stats()["total"] == 0


def test_put_on_a_new_name_adds_a_clean_source(
    upstreams: DemoUpstreams, http: httpx.Client
) -> None:
    knobs = upstreams.set_knobs("brand-new", seed=4)

    assert knobs == Knobs(seed=4).model_dump(mode="json")
    assert http.get("/brand-new/v1/home").status_code == 200


def test_the_default_sources_start_when_no_knobs_are_given() -> None:
    with DemoUpstreams.start() as server:
        names = set(server.knobs())

    assert names == set(DEFAULT_SOURCES)


def test_a_bad_knob_is_refused_with_400_naming_field_and_reason(
    upstreams: DemoUpstreams, http: httpx.Client
) -> None:
    upstreams.set_knobs("alpha", error_rate=0.5)

    response = http.put("/_demo/knobs/alpha", json={"error_rate": 2, "hang_secs": 1})

    assert response.status_code == 400
    assert response.json()["errors"] == [
        "error_rate: Input should be less than or equal to 1",
        "hang_secs: unknown knob; expected one of: latency, error_rate, error_status, "
        "timeout_rate, hang_seconds, invalid_schema_rate, low_confidence_rate, "
        "placeholder_rate, non_json_rate, status_override, seed",
    ]
    assert upstreams.knobs()["alpha"]["error_rate"] == 0.5, "a refused update changes nothing"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "body is not valid JSON: "),
        (b"[1, 2]", "body must be a JSON object of knob fields, got array"),
    ],
)
def test_a_knobs_body_that_is_not_an_object_is_refused_with_400(
    http: httpx.Client, body: bytes, message: str
) -> None:
    response = http.put("/_demo/knobs/alpha", content=body)

    assert response.status_code == 400
    assert response.json()["message"].startswith(message)


def test_an_unknown_source_answers_404_naming_the_known_ones(
    upstreams: DemoUpstreams, http: httpx.Client
) -> None:
    upstreams.set_knobs("alpha")

    response = http.get("/nobody/v1/home")

    assert response.status_code == 404
    assert response.json()["code"] == "unknown_source"
    assert "alpha" in response.json()["message"]


@pytest.mark.parametrize("path", ["/alpha/v1/nope", "/alpha/v2/home", "/alpha"])
def test_an_unknown_path_of_a_known_source_answers_404(
    upstreams: DemoUpstreams, http: httpx.Client, path: str
) -> None:
    upstreams.set_knobs("alpha")

    response = http.get(path)

    assert (response.status_code, response.json()["code"]) == (404, "not_found")


def test_an_unknown_day_answers_404(upstreams: DemoUpstreams, http: httpx.Client) -> None:
    upstreams.set_knobs("alpha")

    assert http.get("/alpha/v1/jadwal-rilis/someday").status_code == 404


def test_a_missing_required_parameter_answers_400(
    upstreams: DemoUpstreams, http: httpx.Client
) -> None:
    upstreams.set_knobs("alpha")

    response = http.get("/alpha/v1/anime-detail")

    assert (response.status_code, response.json()["message"]) == (
        400,
        "missing query parameter 'slug'",
    )


def test_healthz_answers_ok(http: httpx.Client) -> None:
    assert http.get("/_demo/healthz").json()["status"] == "ok"


def test_a_startup_failure_reports_the_servers_stderr() -> None:
    with pytest.raises(
        DemoUpstreamsError, match=r"(?s)exited with 2.*alpha\.seed: Input should be greater"
    ):
        DemoUpstreams.start({"alpha": {"seed": -1}}, with_defaults=False)


def test_the_server_stops_cleanly_on_sigterm() -> None:
    server = DemoUpstreams.start({"alpha": {}}, with_defaults=False)

    assert server.close() == 0


def test_the_cli_refuses_a_bad_knobs_file_with_exit_code_2(tmp_path: Path) -> None:
    knobs_file = tmp_path / "knobs.json"
    knobs_file.write_text('{"samehadaku": {"latency": {"kind": "lognormal", "median_ms": 9}}}')

    result = CliRunner().invoke(demo_upstreams, ["--knobs", str(knobs_file)])

    assert result.exit_code == 2
    assert f"{knobs_file}: samehadaku.latency: lognormal latency needs p99_ms" in result.output
    assert "Traceback" not in result.output


def test_the_cli_refuses_a_knobs_file_that_is_not_json(tmp_path: Path) -> None:
    knobs_file = tmp_path / "knobs.json"
    knobs_file.write_text("samehadaku: {}")

    result = CliRunner().invoke(demo_upstreams, ["--knobs", str(knobs_file)])

    assert result.exit_code == 2
    assert f"{knobs_file}: not valid JSON" in result.output


async def test_in_process_server_reports_its_port_and_stops_on_trigger() -> None:
    bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    server = asyncio.create_task(
        serve_demo_upstreams(
            "127.0.0.1", 0, {"alpha": Knobs()}, shutdown_trigger=stop.wait, ready=bound.set_result
        )
    )
    port = await asyncio.wait_for(bound, 10)
    async with httpx.AsyncClient(trust_env=False) as client:
        response = await client.get(f"http://127.0.0.1:{port}/alpha/v1/home")

    stop.set()
    await asyncio.wait_for(server, 10)

    assert response.json()["source"] == "alpha"


async def test_a_failing_ready_callback_fails_startup_and_frees_the_port() -> None:
    ports: list[int] = []

    def refuse(port: int) -> None:
        ports.append(port)
        raise RuntimeError("the host is not ready")

    with pytest.raises(ServerStartupError):
        await asyncio.wait_for(
            serve_demo_upstreams(
                "127.0.0.1",
                0,
                {"alpha": Knobs()},
                shutdown_trigger=asyncio.Event().wait,
                ready=refuse,
            ),
            10,
        )

    # The listening socket was closed: the same port binds again.
    socket.create_server(("127.0.0.1", ports[0])).close()
