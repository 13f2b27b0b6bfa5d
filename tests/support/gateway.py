"""Test harness: build a real gateway app around a config pointing at the demo upstreams."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from quart import Quart
from quart.typing import TestClientProtocol
from werkzeug.datastructures import Headers

from gateway.app import create_app
from gateway.container import Container
from gateway.events import MemoryEmitter
from gateway.settings import Settings
from schemas.config import GatewayConfig
from schemas.endpoints import ENDPOINTS
from schemas.events import (
    AttemptOutcome,
    RequestEvent,
    UpstreamAttemptEvent,
    ValidationFailureEvent,
)
from tests.support.upstreams import DemoUpstreams

ALL_PATHS = tuple(spec.path for spec in ENDPOINTS)


@dataclass(frozen=True)
class Source:
    """A primary for a test config: a demo source name, its priority and fallback sources."""

    name: str
    priority: int
    fallbacks: Sequence[str] = ()
    timeout_seconds: float | None = None


def build_config(
    upstreams: DemoUpstreams,
    categories: Mapping[str, Sequence[Source]],
    *,
    paths: Sequence[str] = ALL_PATHS,
    **endpoint_fields: object,
) -> GatewayConfig:
    """A config whose every category serves ``paths`` from the given demo sources."""
    document = {
        "categories": [
            {
                "name": name,
                "endpoints": [
                    {
                        "path": path,
                        "primary_apis": [
                            {
                                "source_name": source.name,
                                "base_url": upstreams.source_url(source.name),
                                "priority": source.priority,
                                **(
                                    {"timeout_seconds": source.timeout_seconds}
                                    if source.timeout_seconds
                                    else {}
                                ),
                            }
                            for source in sources
                        ],
                        "fallback_apis": {
                            source.name: [upstreams.source_url(f) for f in source.fallbacks]
                            for source in sources
                            if source.fallbacks
                        },
                        **endpoint_fields,
                    }
                    for path in paths
                ],
            }
            for name, sources in categories.items()
        ]
    }
    return GatewayConfig.model_validate(document)


@dataclass
class FakeClock:
    """Wall clock the test moves by hand, so TTL and stale windows need no sleeping."""

    now: float = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class GatewayResponse:
    status: int
    headers: Headers
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Gateway:
    app: Quart
    container: Container
    client: TestClientProtocol
    events: MemoryEmitter
    clock: FakeClock = field(default_factory=FakeClock)

    async def get(self, path: str, headers: Mapping[str, str] | None = None) -> GatewayResponse:
        # Present a loopback peer, as the server (uvicorn) would for a local client.
        response = await self.client.get(
            path, headers=dict(headers or {}), scope_base={"client": ("127.0.0.1", 50000)}
        )
        return GatewayResponse(
            response.status_code, response.headers, await response.get_data(as_text=False)
        )

    def attempts(self) -> list[UpstreamAttemptEvent]:
        return self.events.of_type(UpstreamAttemptEvent)

    def outcomes(self) -> list[tuple[str, int, AttemptOutcome]]:
        """(source, depth, outcome) of every attempt, in the order they finished."""
        return [(a.source_name, a.depth, a.outcome) for a in self.attempts()]

    def requests(self) -> list[RequestEvent]:
        return self.events.of_type(RequestEvent)

    def validation_failures(self) -> list[ValidationFailureEvent]:
        return self.events.of_type(ValidationFailureEvent)


def gateway_settings(data_dir: Path, **overrides: object) -> Settings:
    defaults: dict[str, object] = {
        "data_dir": data_dir,
        "rate_limit": "10000/second",
        "log_level": "WARNING",
        "breaker_failure_threshold": 1000,
    }
    return Settings.from_environ({}, **{**defaults, **overrides})


@asynccontextmanager
async def running_gateway(
    config: GatewayConfig, settings: Settings, clock: FakeClock | None = None
) -> AsyncIterator[Gateway]:
    """A started gateway app with an in-memory event log and a hand-moved wall clock."""
    clock = clock or FakeClock()
    events = MemoryEmitter()
    container = Container(settings, config, emitter=events, wall_clock=clock)
    app = create_app(container)
    async with app.test_app():
        yield Gateway(app, container, app.test_client(), events, clock)
