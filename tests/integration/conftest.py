"""Integration fixtures: one demo-upstreams subprocess per session, reset before each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.upstreams import DemoUpstreams


@pytest.fixture(scope="session")
def demo_server() -> Iterator[DemoUpstreams]:
    server = DemoUpstreams.start({"alpha": {}}, with_defaults=False)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def upstreams(demo_server: DemoUpstreams) -> DemoUpstreams:
    """The demo upstreams with every knob back at its start value and counters at zero."""
    demo_server.reset()
    return demo_server
