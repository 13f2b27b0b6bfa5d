"""Pure selection decision: which chain's answer wins, and when the gateway may stop waiting."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass


class ChainStatus(enum.Enum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    EXHAUSTED = "exhausted"


@dataclass(frozen=True, slots=True)
class Decision:
    """``winner`` is the index of the chosen chain; ``done`` means stop waiting."""

    winner: int | None
    done: bool


WAIT = Decision(winner=None, done=False)
ALL_FAILED = Decision(winner=None, done=True)


def decide(statuses: Sequence[ChainStatus]) -> Decision:
    """Pick the best-ranked chain that succeeded once no better-ranked chain can still win.

    Args:
        statuses: one status per chain, best rank (lowest priority number) first.

    Returns:
        The winner as soon as every better-ranked chain is exhausted; ``WAIT`` while a
        better-ranked chain is still running; ``ALL_FAILED`` when every chain is exhausted.
    """
    for index, status in enumerate(statuses):
        if status is ChainStatus.RUNNING:
            return WAIT
        if status is ChainStatus.SUCCEEDED:
            return Decision(winner=index, done=True)
    return ALL_FAILED
