from __future__ import annotations

from gateway.breaker import BreakerRegistry, CircuitBreaker, CircuitState, CircuitTransition

URL = "http://up.example/v1"


def opened(threshold: int = 3, open_seconds: float = 300.0) -> CircuitBreaker:
    breaker = CircuitBreaker(threshold, open_seconds)
    for _ in range(threshold):
        breaker.record_failure(now=0.0)
    return breaker


def test_opens_after_threshold_consecutive_failures() -> None:
    breaker = CircuitBreaker(threshold=3, open_seconds=300)
    assert breaker.record_failure(0.0) is None
    assert breaker.record_failure(0.0) is None
    assert breaker.record_failure(0.0) is CircuitState.OPEN
    assert breaker.allow(1.0) == (False, None)


def test_a_success_resets_the_consecutive_count() -> None:
    breaker = CircuitBreaker(threshold=3, open_seconds=300)
    breaker.record_failure(0.0)
    breaker.record_failure(0.0)
    breaker.record_success()
    breaker.record_failure(0.0)
    assert breaker.state is CircuitState.CLOSED


def test_open_circuit_allows_one_half_open_trial_after_the_open_period() -> None:
    breaker = opened(open_seconds=300)
    assert breaker.allow(299.0) == (False, None)
    assert breaker.allow(300.0) == (True, CircuitState.HALF_OPEN)
    assert breaker.allow(300.5) == (False, None), "only one trial at a time"


def test_successful_trial_closes_and_failed_trial_reopens_with_a_new_timer() -> None:
    closing = opened()
    closing.allow(300.0)
    assert closing.record_success() is CircuitState.CLOSED
    assert closing.allow(300.1) == (True, None)

    reopening = opened()
    reopening.allow(300.0)
    assert reopening.record_failure(300.0) is CircuitState.OPEN
    assert reopening.allow(599.0) == (False, None)
    assert reopening.allow(600.0) == (True, CircuitState.HALF_OPEN)


def test_abandoned_trial_frees_the_slot_for_another_trial() -> None:
    breaker = opened()
    breaker.allow(300.0)
    breaker.record_abandoned()
    assert breaker.allow(300.1) == (True, None)


def test_registry_reports_each_transition_once() -> None:
    changes: list[CircuitTransition] = []
    registry = BreakerRegistry(threshold=2, open_seconds=10, on_transition=changes.append)
    registry.record_failure(URL, 0.0)
    registry.record_failure(URL, 0.0)
    registry.record_failure(URL, 0.0)
    assert registry.allow(URL, 10.0)
    registry.record_success(URL)
    assert [(c.from_state, c.to_state) for c in changes] == [
        (CircuitState.CLOSED, CircuitState.OPEN),
        (CircuitState.OPEN, CircuitState.HALF_OPEN),
        (CircuitState.HALF_OPEN, CircuitState.CLOSED),
    ]
    assert changes[0].upstream_url == URL
    assert registry.is_closed(URL)
