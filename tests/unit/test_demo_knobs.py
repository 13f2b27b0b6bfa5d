"""Knob validation and the deterministic per-request decision of the fake upstreams."""

from __future__ import annotations

import statistics

import pytest

from demo.knobs import (
    Behaviour,
    Knobs,
    KnobsError,
    Outcome,
    decide,
    merge_knobs,
    merge_sources,
)


def _outcomes(knobs: Knobs, count: int = 2_000) -> list[Outcome]:
    return [decide(knobs, number).outcome for number in range(count)]


def _bad(update: dict[str, object]) -> list[str]:
    with pytest.raises(KnobsError) as caught:
        merge_knobs(Knobs(), update)
    return caught.value.lines


def test_default_knobs_answer_every_request_ok_without_delay() -> None:
    assert {decide(Knobs(), n) for n in range(500)} == {Behaviour(Outcome.OK, 0.0, 200)}


def test_same_seed_and_request_number_give_the_same_behaviour() -> None:
    knobs = Knobs(error_rate=0.3, timeout_rate=0.1, seed=42)

    assert [decide(knobs, n) for n in range(300)] == [decide(knobs, n) for n in range(300)]


def test_another_seed_gives_another_sequence() -> None:
    assert _outcomes(Knobs(error_rate=0.5, seed=1)) != _outcomes(Knobs(error_rate=0.5, seed=2))


@pytest.mark.parametrize(
    ("field", "outcome"),
    [
        ("timeout_rate", Outcome.TIMEOUT),
        ("error_rate", Outcome.ERROR),
        ("non_json_rate", Outcome.NON_JSON),
        ("invalid_schema_rate", Outcome.INVALID_SCHEMA),
        ("placeholder_rate", Outcome.PLACEHOLDER),
        ("low_confidence_rate", Outcome.LOW_CONFIDENCE),
    ],
)
def test_a_rate_of_one_gives_its_outcome_to_every_request(field: str, outcome: Outcome) -> None:
    knobs = Knobs.model_validate({field: 1.0})

    assert set(_outcomes(knobs, 300)) == {outcome}


def test_rates_are_shares_of_traffic() -> None:
    knobs = Knobs(error_rate=0.2, low_confidence_rate=0.1, seed=7)

    outcomes = _outcomes(knobs, 20_000)

    assert outcomes.count(Outcome.ERROR) / len(outcomes) == pytest.approx(0.2, abs=0.015)
    assert outcomes.count(Outcome.LOW_CONFIDENCE) / len(outcomes) == pytest.approx(0.1, abs=0.015)


def test_earlier_outcomes_in_the_order_win_when_rates_add_past_one() -> None:
    assert set(_outcomes(Knobs(timeout_rate=1, error_rate=1))) == {Outcome.TIMEOUT}
    assert set(_outcomes(Knobs(error_rate=1, low_confidence_rate=1))) == {Outcome.ERROR}


def test_status_override_wins_over_every_rate() -> None:
    knobs = Knobs(status_override=404, timeout_rate=1, error_rate=1)

    behaviours = {decide(knobs, n) for n in range(100)}

    assert {(b.outcome, b.status) for b in behaviours} == {(Outcome.STATUS_OVERRIDE, 404)}


def test_errors_answer_the_configured_error_status() -> None:
    assert decide(Knobs(error_rate=1, error_status=502), 0).status == 502


def test_a_timed_out_request_hangs_for_hang_seconds() -> None:
    assert decide(Knobs(timeout_rate=1, hang_seconds=12.5), 0).delay_s == 12.5


def test_fixed_latency_delays_every_request_by_median_ms() -> None:
    knobs = Knobs.model_validate({"latency": {"kind": "fixed", "median_ms": 250}})

    assert {decide(knobs, n).delay_s for n in range(50)} == {0.25}


def test_uniform_latency_stays_within_min_and_max() -> None:
    knobs = Knobs.model_validate({"latency": {"kind": "uniform", "min_ms": 10, "max_ms": 30}})

    delays = [decide(knobs, n).delay_s for n in range(2_000)]

    assert 0.010 <= min(delays) < 0.011
    assert 0.029 < max(delays) <= 0.030


def test_lognormal_latency_has_the_configured_median_and_p99() -> None:
    latency = {"kind": "lognormal", "median_ms": 40, "p99_ms": 400}
    knobs = Knobs.model_validate({"latency": latency, "seed": 3})

    delays_ms = sorted(decide(knobs, n).delay_s * 1000 for n in range(20_000))

    assert statistics.median(delays_ms) == pytest.approx(40, rel=0.05)
    assert delays_ms[int(len(delays_ms) * 0.99)] == pytest.approx(400, rel=0.1)


def test_a_rate_above_one_is_rejected_with_its_field_name() -> None:
    assert _bad({"error_rate": 1.5}) == ["error_rate: Input should be less than or equal to 1"]


def test_an_unknown_knob_is_rejected_with_the_valid_names() -> None:
    (line,) = _bad({"eror_rate": 0.1})

    assert line.startswith("eror_rate: unknown knob; expected one of: latency, error_rate,")


def test_every_problem_is_listed_at_once() -> None:
    lines = _bad({"timeout_rate": -1, "seed": -1})

    assert [line.split(":")[0] for line in lines] == ["timeout_rate", "seed"]


@pytest.mark.parametrize(
    ("latency", "reason"),
    [
        ({"kind": "uniform", "min_ms": 5}, "uniform latency needs both min_ms and max_ms"),
        ({"kind": "uniform", "min_ms": 9, "max_ms": 5}, "min_ms (9.0) must not exceed max_ms"),
        ({"kind": "lognormal", "median_ms": 50}, "lognormal latency needs p99_ms"),
        ({"kind": "lognormal", "median_ms": 50, "p99_ms": 10}, "must be at least median_ms"),
        ({"kind": "fixed", "median_ms": 5, "p99_ms": 9}, "p99_ms applies to lognormal"),
        ({"kind": "gaussian"}, "latency.kind: Input should be 'fixed', 'uniform' or 'lognormal'"),
        ({"median_ms": 90_000}, "latency.median_ms: Input should be less than or equal to 60000"),
        ({"p50_ms": 1}, "latency.p50_ms: unknown knob; expected one of: kind, median_ms"),
    ],
)
def test_inconsistent_latency_is_rejected_with_the_reason(
    latency: dict[str, object], reason: str
) -> None:
    (line,) = _bad({"latency": latency})

    assert reason in line


def test_status_override_must_be_an_error_status() -> None:
    assert _bad({"status_override": 200}) == [
        "status_override: Input should be greater than or equal to 400"
    ]


def test_a_partial_update_keeps_the_other_knobs() -> None:
    current = Knobs(error_rate=0.1, seed=9)

    updated = merge_knobs(current, {"timeout_rate": 0.2})

    assert (updated.error_rate, updated.timeout_rate, updated.seed) == (0.1, 0.2, 9)


def test_a_latency_update_replaces_the_whole_latency() -> None:
    lognormal = {"kind": "lognormal", "median_ms": 40, "p99_ms": 400}
    current = Knobs.model_validate({"latency": lognormal})

    updated = merge_knobs(current, {"latency": {"kind": "uniform", "min_ms": 1, "max_ms": 2}})

    assert updated.latency.p99_ms is None


def test_status_override_can_be_turned_off_with_null() -> None:
    assert (
        merge_knobs(Knobs(status_override=404), {"status_override": None}).status_override is None
    )


def test_a_sources_document_merges_over_known_sources_and_adds_new_ones() -> None:
    base = {"alpha": Knobs(error_rate=0.1)}

    merged = merge_sources(base, {"alpha": {"seed": 5}, "beta": {"timeout_rate": 1}})

    assert merged == {"alpha": Knobs(error_rate=0.1, seed=5), "beta": Knobs(timeout_rate=1)}


def test_a_sources_document_reports_each_problem_with_its_source() -> None:
    document = {"alpha": {"error_rate": 2}, "bad name": {}, "gamma": [1]}

    with pytest.raises(KnobsError) as caught:
        merge_sources({}, document)

    assert caught.value.lines == [
        "alpha.error_rate: Input should be less than or equal to 1",
        "bad name: source name must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        "gamma: must be a JSON object of knob fields, got array",
    ]


def test_a_sources_document_must_be_an_object() -> None:
    with pytest.raises(KnobsError, match="<document>: must be a JSON object"):
        merge_sources({}, ["alpha"])
