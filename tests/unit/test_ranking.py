from __future__ import annotations

from gateway.ranking import ALL_FAILED, WAIT, ChainStatus, Decision, decide

R, S, X = ChainStatus.RUNNING, ChainStatus.SUCCEEDED, ChainStatus.EXHAUSTED


def test_best_ranked_success_wins_immediately_even_while_others_run() -> None:
    assert decide([S, R, R]) == Decision(winner=0, done=True)


def test_lower_ranked_success_waits_while_a_better_chain_still_runs() -> None:
    assert decide([R, S]) is WAIT


def test_lower_ranked_success_wins_once_every_better_chain_is_exhausted() -> None:
    assert decide([X, X, S, R]) == Decision(winner=2, done=True)


def test_better_success_beats_a_worse_success_that_arrived_first() -> None:
    assert decide([S, S]) == Decision(winner=0, done=True)


def test_all_exhausted_is_a_failure() -> None:
    assert decide([X, X]) is ALL_FAILED


def test_no_chains_is_a_failure() -> None:
    assert decide([]) is ALL_FAILED
