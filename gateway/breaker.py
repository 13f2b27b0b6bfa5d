"""Circuit breakers per upstream base URL: a pure state machine plus a registry that owns them.

States (seed 002 defaults: 5 consecutive failures → open for 300 s → one half-open trial)::

    CLOSED --threshold consecutive failures--> OPEN --open_seconds elapsed--> HALF_OPEN
    HALF_OPEN --trial succeeds--> CLOSED        HALF_OPEN --trial fails--> OPEN (timer restarts)

Only transport failures, timeouts and 5xx count as failures: a 4xx or an invalid payload means
the upstream is reachable, so it does not open the circuit (validation moves the chain on anyway).
Each gateway instance keeps its own breakers; not safe to share between threads.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass


class CircuitState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class CircuitTransition:
    upstream_url: str
    from_state: CircuitState
    to_state: CircuitState
    consecutive_failures: int


class CircuitBreaker:
    """The state of one upstream; time is passed in so the logic is testable without clocks."""

    __slots__ = ("_trial_in_flight", "failures", "open_seconds", "opened_at", "state", "threshold")

    def __init__(self, threshold: int, open_seconds: float) -> None:
        self.threshold = threshold
        self.open_seconds = open_seconds
        self.state = CircuitState.CLOSED
        self.failures = 0
        self.opened_at = 0.0
        self._trial_in_flight = False

    def allow(self, now: float) -> tuple[bool, CircuitState | None]:
        """Whether a call may go out now, and the state entered if this call changed it."""
        if self.state is CircuitState.CLOSED:
            return True, None
        if self.state is CircuitState.OPEN:
            if now - self.opened_at < self.open_seconds:
                return False, None
            self.state = CircuitState.HALF_OPEN
            self._trial_in_flight = True
            return True, CircuitState.HALF_OPEN
        if self._trial_in_flight:
            return False, None
        self._trial_in_flight = True
        return True, None

    def record_success(self) -> CircuitState | None:
        self.failures = 0
        self._trial_in_flight = False
        if self.state is CircuitState.CLOSED:
            return None
        self.state = CircuitState.CLOSED
        return CircuitState.CLOSED

    def record_failure(self, now: float) -> CircuitState | None:
        self.failures += 1
        self._trial_in_flight = False
        if self.state is CircuitState.HALF_OPEN or (
            self.state is CircuitState.CLOSED and self.failures >= self.threshold
        ):
            self.state = CircuitState.OPEN
            self.opened_at = now
            return CircuitState.OPEN
        return None

    def record_abandoned(self) -> None:
        """A call ended without a verdict (cancelled): free the half-open trial slot."""
        self._trial_in_flight = False


class BreakerRegistry:
    """Owns one breaker per upstream base URL and reports every state change."""

    def __init__(
        self,
        threshold: int,
        open_seconds: float,
        on_transition: Callable[[CircuitTransition], None],
    ) -> None:
        self._threshold = threshold
        self._open_seconds = open_seconds
        self._on_transition = on_transition
        self._breakers: dict[str, CircuitBreaker] = {}

    def _get(self, url: str) -> CircuitBreaker:
        breaker = self._breakers.get(url)
        if breaker is None:
            breaker = self._breakers[url] = CircuitBreaker(self._threshold, self._open_seconds)
        return breaker

    def _report(self, url: str, before: CircuitState, after: CircuitState | None) -> None:
        if after is not None and after is not before:
            failures = self._breakers[url].failures
            self._on_transition(CircuitTransition(url, before, after, failures))

    def allow(self, url: str, now: float) -> bool:
        breaker = self._get(url)
        before = breaker.state
        allowed, after = breaker.allow(now)
        self._report(url, before, after)
        return allowed

    def record_success(self, url: str) -> None:
        breaker = self._get(url)
        before = breaker.state
        self._report(url, before, breaker.record_success())

    def record_failure(self, url: str, now: float) -> None:
        breaker = self._get(url)
        before = breaker.state
        self._report(url, before, breaker.record_failure(now))

    def record_abandoned(self, url: str) -> None:
        self._get(url).record_abandoned()

    def is_closed(self, url: str) -> bool:
        breaker = self._breakers.get(url)
        return breaker is None or breaker.state is CircuitState.CLOSED

    def states(self) -> dict[str, CircuitState]:
        return {url: breaker.state for url, breaker in self._breakers.items()}
