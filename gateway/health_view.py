"""What this gateway instance believes about each upstream's health, for routing.

Fed by probe results (the in-process prober's callback, or a refresher reading the shared
status from Redis). Routing reads it on every request, so it is a plain set lookup.

How it combines with the circuit breaker (one picture, never contradictory):

* breaker OPEN → the link is skipped (``circuit_open``), whatever the probes say;
* probes say Down → the link is tried after the healthy links of its chain;
* a successful probe marks the upstream Up *and* closes its breaker, so it comes back as soon
  as a probe or a half-open trial succeeds, whichever is first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from gateway.routing import LinkPlan


class HealthView:
    """Set of upstream base URLs currently believed Down; not thread-safe, one per loop."""

    def __init__(self, on_recovered: Callable[[str], None]) -> None:
        self._down: set[str] = set()
        self._on_recovered = on_recovered

    def is_down(self, base_url: str) -> bool:
        return base_url in self._down

    @property
    def down(self) -> frozenset[str]:
        return frozenset(self._down)

    def mark(self, base_url: str, up: bool) -> None:
        """Record a probe verdict; an Up verdict also closes the upstream's breaker."""
        if up:
            self._down.discard(base_url)
            self._on_recovered(base_url)
        else:
            self._down.add(base_url)

    def order(self, links: Sequence[LinkPlan]) -> Sequence[LinkPlan]:
        """Healthy links first, then Down ones, each group in configured order."""
        if not self._down or not any(link.base_url in self._down for link in links):
            return links
        return sorted(links, key=lambda link: link.base_url in self._down)
