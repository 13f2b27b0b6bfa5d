"""Suite-wide fixtures: the service guard, real-service fixtures, and gateway builders.

Unmarked tests must not touch PostgreSQL, Redis, Kafka or ClickHouse: the guard makes any
connection to those services' ports fail loudly (Snuba's ``block_clickhouse_db`` pattern).
Marked tests get the real service; when it is missing they skip locally with how to start it,
and fail under ``CI=true``.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import stamina

SERVICE_MARKERS = ("redis", "postgres", "kafka", "clickhouse")
_DEFAULT_SERVICE_PORTS = {6379, 6390, 5432, 9092, 19092, 8123, 9000}
DEFAULT_KAFKA_BOOTSTRAP = "127.0.0.1:19092"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _service_ports() -> set[int]:
    ports = set(_DEFAULT_SERVICE_PORTS)
    for variable in ("APICAT_TEST_REDIS_URL", "APICAT_TEST_DATABASE_URL"):
        url = os.environ.get(variable)
        if url and urlsplit(url).port:
            ports.add(urlsplit(url).port or 0)
    for server in os.environ.get("APICAT_TEST_KAFKA_BOOTSTRAP_SERVERS", "").split(","):
        port = server.strip().rpartition(":")[2]
        if port.isdigit():
            ports.add(int(port))
    return ports


@pytest.fixture(autouse=True)
def _block_services_for_unmarked_tests(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    if any(request.node.get_closest_marker(name) for name in SERVICE_MARKERS):
        return
    blocked = _service_ports()
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def _check(address: object) -> None:
        if isinstance(address, tuple) and len(address) >= 2 and address[1] in blocked:
            raise AssertionError(
                f"unmarked test connected to service port {address[1]}; mark it with one of "
                f"{', '.join('@pytest.mark.' + m for m in SERVICE_MARKERS)}"
            )

    def guarded_connect(self: socket.socket, address: object) -> None:
        _check(address)
        real_connect(self, address)  # type: ignore[arg-type]

    def guarded_connect_ex(self: socket.socket, address: object) -> int:
        _check(address)
        return real_connect_ex(self, address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)


@pytest.fixture(autouse=True)
def _no_retry_backoff() -> Iterator[None]:
    """Retries still happen, but without real backoff sleeps (stamina's testing switch)."""
    stamina.set_testing(True, attempts=10, cap=True)
    yield
    stamina.set_testing(False)


def service_missing(what: str, how_to_start: str) -> None:
    message = f"{what} is not reachable; {how_to_start}"
    if IN_CI:
        pytest.fail(f"CI=true and {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def redis_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A real, empty Redis database (``APICAT_TEST_REDIS_URL``)."""
    assert request.node.get_closest_marker("redis"), "tests using redis_url need @pytest.mark.redis"
    import redis

    url = os.environ.get("APICAT_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError:
        client.close()
        service_missing(
            f"Redis at {url}",
            "run `make services` (needs `apt-get install redis-server`) or set "
            "APICAT_TEST_REDIS_URL",
        )
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


async def _kafka_serves_metadata(bootstrap: str, within_s: float) -> bool:
    """Quick, bounded check: a TCP connect, then a real metadata fetch with aiokafka."""
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=1):
            pass
    except (OSError, ValueError):
        return False
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        async with asyncio.timeout(within_s):
            await admin.start()
            cluster = await admin.describe_cluster()
        return bool(cluster["brokers"])
    except (KafkaError, OSError, TimeoutError):
        return False
    finally:
        await admin.close()


@pytest.fixture
async def kafka_bootstrap(request: pytest.FixtureRequest) -> str:
    """A real Kafka broker's bootstrap servers (``APICAT_TEST_KAFKA_BOOTSTRAP_SERVERS``).

    The broker is shared: use fresh, unique topic and group names in every test.
    """
    assert request.node.get_closest_marker("kafka"), (
        "tests using kafka_bootstrap need @pytest.mark.kafka"
    )
    bootstrap = os.environ.get("APICAT_TEST_KAFKA_BOOTSTRAP_SERVERS", DEFAULT_KAFKA_BOOTSTRAP)
    if not await _kafka_serves_metadata(bootstrap, within_s=5):
        service_missing(
            f"Kafka at {bootstrap}",
            "run `make services` or `scripts/kafka.sh start` (needs java and mvn: "
            "`apt-get install default-jre-headless maven`) or set "
            "APICAT_TEST_KAFKA_BOOTSTRAP_SERVERS",
        )
    return bootstrap
