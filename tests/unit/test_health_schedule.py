"""Probe schedule: hash phases spread 500 upstreams evenly; due times and slots agree."""

from __future__ import annotations

import bisect

import pytest

from health.schedule import next_due, probe_offset_s, slot

INTERVAL_S = 600.0
WINDOW_S = 5.0
KEYS = [
    f"{category}|https://{source}-{number}.example.net/api"
    for category in ("anime", "drakor", "donghua", "film", "komik")
    for source in ("samehadaku", "otakudesu", "kusonime", "oploverz")
    for number in range(25)
]


def busiest_window(times: list[float], period_s: float, window_s: float) -> int:
    """The most times in any half-open window of ``window_s`` on a circle of ``period_s``."""
    ordered = sorted(times)
    extended = ordered + [t + period_s for t in ordered]  # windows that wrap around
    # A busiest window can always be slid to start at one of the times.
    return max(
        bisect.bisect_left(extended, start + window_s) - index
        for index, start in enumerate(ordered)
    )


def test_500_upstreams_at_600s_never_burst_over_10_percent_in_5_seconds() -> None:
    assert len(set(KEYS)) == 500
    offsets = [probe_offset_s(key, INTERVAL_S) for key in KEYS]
    busiest = busiest_window(offsets, INTERVAL_S, WINDOW_S)
    print(f"busiest {WINDOW_S:g}s window: {busiest} of {len(KEYS)} ({busiest / len(KEYS):.1%})")  # noqa: T201 - the figure the issue asks to see
    assert busiest <= len(KEYS) // 10
    # A uniform spread expects ~4.2 per window; 3x that still says "no burst".
    assert busiest <= 13


def test_actual_due_times_over_an_hour_never_burst_either() -> None:
    start = 1_700_000_123.4
    due_times = []
    for key in KEYS:
        due = next_due(key, INTERVAL_S, start)
        while due < start + 3_600:
            due_times.append(due)
            due = next_due(key, INTERVAL_S, due + INTERVAL_S / 2)
    assert len(due_times) == 6 * len(KEYS)
    ordered = sorted(due_times)
    busiest = max(bisect.bisect_left(ordered, t + WINDOW_S) - i for i, t in enumerate(ordered))
    assert busiest <= len(KEYS) // 10


def test_offset_is_deterministic_and_within_the_interval() -> None:
    for key in KEYS[:50]:
        first = probe_offset_s(key, INTERVAL_S)
        assert first == probe_offset_s(key, INTERVAL_S)
        assert 0.0 <= first < INTERVAL_S
        # The same hash fraction scales with the interval.
        assert probe_offset_s(key, 60.0) == pytest.approx(first / 10)


def test_different_keys_get_different_phases() -> None:
    offsets = {probe_offset_s(key, INTERVAL_S) for key in KEYS}
    assert len(offsets) == len(KEYS)


@pytest.mark.parametrize("now", [0.0, 1_700_000_000.0, 1_700_000_599.999, 1_712_345_678.9])
def test_next_due_is_the_first_phase_point_at_or_after_now(now: float) -> None:
    for key in KEYS[:50]:
        offset = probe_offset_s(key, INTERVAL_S)
        due = next_due(key, INTERVAL_S, now)
        assert now <= due < now + INTERVAL_S
        phase = (due - offset) / INTERVAL_S
        assert phase == pytest.approx(round(phase), abs=1e-9)


def test_next_due_at_a_due_time_returns_that_time() -> None:
    key = KEYS[0]
    due = next_due(key, INTERVAL_S, 1_700_000_000.0)
    assert next_due(key, INTERVAL_S, due) == due
    assert next_due(key, INTERVAL_S, due + 0.001) == pytest.approx(due + INTERVAL_S)


def test_successive_due_times_fall_in_successive_slots() -> None:
    for key in KEYS[:50]:
        due = next_due(key, INTERVAL_S, 1_700_000_000.0)
        slots = []
        for _ in range(5):
            slots.append(slot(due, INTERVAL_S))
            assert slot(due, INTERVAL_S) * INTERVAL_S <= due < (slots[-1] + 1) * INTERVAL_S
            due = next_due(key, INTERVAL_S, due + INTERVAL_S / 2)
        assert slots == list(range(slots[0], slots[0] + 5))


def test_slot_is_the_epoch_aligned_interval_index() -> None:
    assert slot(0.0, 600) == 0
    assert slot(599.999, 600) == 0
    assert slot(600.0, 600) == 1
    assert slot(1_700_000_000.0, 10) == 170_000_000
