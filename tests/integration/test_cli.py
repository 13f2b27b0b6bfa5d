"""The ``apicat`` command line: config errors are precise, the PRD example config serves."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from gateway.cli import main
from tests.support.metrics import Scrape
from tests.support.net import free_port
from tests.support.pipeline import produce_events, request_event, unique_group, unique_prefix
from tests.unit.test_config_model import PRD_EXAMPLE

BAD_CONFIG = b"""{"categories": [{"name": "anime", "endpoints": [{"path": "/api/v1/home",
  "timeout_seconds": -1,
  "primary_apis": [{"source_name": "a b", "base_url": "not-a-url", "priority": 1}]}]}]}"""


@pytest.fixture
def prd_file(tmp_path: Path) -> Path:
    path = tmp_path / "prd.json"
    path.write_bytes(PRD_EXAMPLE)
    return path


def test_config_validate_accepts_the_prd_example(prd_file: Path) -> None:
    result = CliRunner().invoke(main, ["config", "validate", str(prd_file)])
    assert result.exit_code == 0, result.output
    assert "ok: 1 categories, 1 endpoints" in result.output


def test_bad_config_exits_2_naming_every_bad_field_without_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(BAD_CONFIG)
    for command in (["config", "validate", str(bad)], ["serve", "--config", str(bad)]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 2
        assert "Traceback" not in result.output
        assert "categories[0].endpoints[0].timeout_seconds" in result.output
        assert "categories[0].endpoints[0].primary_apis[0].source_name" in result.output
        assert "categories[0].endpoints[0].primary_apis[0].base_url" in result.output


def test_bad_setting_exits_2_naming_the_variable(prd_file: Path) -> None:
    result = CliRunner().invoke(
        main, ["serve", "--config", str(prd_file)], env={"APICAT_RATE_LIMIT": "often"}
    )
    assert result.exit_code == 2
    assert "APICAT_RATE_LIMIT: 'often' is not a rate limit" in result.output


def test_serve_without_any_config_explains_what_to_pass() -> None:
    result = CliRunner().invoke(main, ["serve"])
    assert result.exit_code == 2
    assert "--config FILE" in result.output


@contextlib.contextmanager
def _serving(
    args: list[str],
    port: int,
    *,
    ready_path: str = "/livez",
    env: Mapping[str, str] | None = None,
) -> Iterator[httpx.Client]:
    """``apicat ARGS`` in a subprocess, once ``ready_path`` answers 200 on ``port``; stopped
    with SIGTERM afterwards."""
    env = {**os.environ, "APICAT_LOG_LEVEL": "WARNING", **(env or {})}
    process = subprocess.Popen(
        [sys.executable, "-c", "from gateway.cli import main; main()", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5, trust_env=False)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(httpx.TransportError):
                if client.get(ready_path).status_code == 200:
                    break
            time.sleep(0.1)
        else:
            stderr = process.stderr.read().decode() if process.stderr else ""
            pytest.fail(f"apicat {args[0]} did not come up: {stderr}")
        yield client
    finally:
        client.close()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()


def test_serve_loads_the_prd_example_and_answers(prd_file: Path) -> None:
    port = free_port()
    with _serving(["serve", "--config", str(prd_file), "--port", str(port)], port) as client:
        health = client.get("/health").json()
        # /movie is not configured for anime in the PRD example: answered without any upstream.
        movie = client.get("/api/v1/movie", params={"category": "anime"})
    assert health["checks"]["config"]["active_categories"] == 1
    assert movie.status_code == 404
    assert movie.json()["valid_endpoints"] == ["/api/v1/home"]


def test_serve_on_a_taken_port_exits_2_naming_the_address(prd_file: Path, tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        env = {**os.environ, "APICAT_DATA_DIR": str(tmp_path / "data")}
        result = subprocess.run(
            [sys.executable, "-c", "from gateway.cli import main; main()", "serve",
             "--config", str(prd_file), "--port", str(port)],
            capture_output=True, text=True, env=env, timeout=60,
        )  # fmt: skip
    assert result.returncode == 2
    assert "cannot listen" in result.stderr
    assert f"127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data" / "chdb").exists(), "nothing else was started"


@pytest.mark.clickhouse
def test_migrate_is_idempotent_and_says_what_it_applied(tmp_path: Path) -> None:
    env = {"APICAT_DATA_DIR": str(tmp_path)}
    first = CliRunner().invoke(main, ["migrate"], env=env)
    again = CliRunner().invoke(main, ["migrate"], env=env)
    assert first.exit_code == 0, first.output
    assert "001_events.sql" in first.output
    assert again.exit_code == 0
    assert "nothing (up to date)" in again.output


def test_consumer_without_kafka_explains_what_to_set() -> None:
    result = CliRunner().invoke(main, ["consumer"], env={"APICAT_KAFKA_BOOTSTRAP_SERVERS": ""})
    assert result.exit_code == 2
    assert "APICAT_KAFKA_BOOTSTRAP_SERVERS" in result.output


def test_consumer_metrics_on_a_taken_port_exits_2_naming_the_address(tmp_path: Path) -> None:
    env = {"APICAT_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "APICAT_DATA_DIR": str(tmp_path)}
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["consumer", "--metrics-port", str(port)], env=env)
    assert result.exit_code == 2
    assert "cannot listen" in result.output
    assert f"127.0.0.1:{port}" in result.output
    assert not (tmp_path / "chdb").exists(), "nothing else was started"


def test_consumer_metrics_port_out_of_range_exits_2_naming_the_option() -> None:
    env = {"APICAT_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    result = CliRunner().invoke(main, ["consumer", "--metrics-port", "70000"], env=env)
    assert result.exit_code == 2
    assert "--metrics-port" in result.output


@pytest.mark.kafka
@pytest.mark.clickhouse
async def test_consumer_metrics_port_counts_the_rows_it_wrote(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    prefix, events = unique_prefix(), 20
    await produce_events(
        kafka_bootstrap, prefix, [request_event(i) for i in range(events)], tmp_path / "journal"
    )
    port = free_port()
    env = {
        "APICAT_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "APICAT_KAFKA_TOPIC_PREFIX": prefix,
        "APICAT_DATA_DIR": str(tmp_path / "data"),
    }
    args = ["consumer", "--group", unique_group(), "--metrics-port", str(port)]
    with _serving(args, port, ready_path="/metrics", env=env) as client:
        deadline = time.monotonic() + 60
        while True:
            scrape = Scrape.parse(client.get("/metrics").text)
            if scrape.value("apicat_consumer_rows_written_total") >= events:
                break
            assert time.monotonic() < deadline, "the consumer did not write the events in 60 s"
            await asyncio.sleep(0.1)
    assert scrape.value("apicat_consumer_rows_written_total") == events
    assert scrape.value("apicat_consumer_dead_lettered_total") == 0
    assert scrape.value("apicat_consumer_batches_total") >= 1
    assert scrape.value("apicat_consumer_held_events") == 0
    assert "process_resident_memory_bytes" in scrape.families
