"""The ``apicat`` command line: config errors are precise, the PRD example config serves."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from gateway.cli import main
from tests.support.net import free_port
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
def _serving(args: list[str], port: int) -> Iterator[httpx.Client]:
    env = {**os.environ, "APICAT_LOG_LEVEL": "WARNING"}
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
                if client.get("/livez").status_code == 200:
                    break
            time.sleep(0.1)
        else:
            stderr = process.stderr.read().decode() if process.stderr else ""
            pytest.fail(f"apicat serve did not come up: {stderr}")
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
