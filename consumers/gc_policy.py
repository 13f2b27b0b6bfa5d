"""Garbage-collector settings for the processes that convert events in bulk.

A consumer builds a row tuple and a few lists per event, thousands per batch, and holds them
until the insert is acknowledged. With CPython's default first-generation threshold (700
allocations) that set off a collection every few dozen events, and the older generations
were traversed again and again along with every module, model and validator loaded at
start-up. Measured on the bench (d) events, collections were ~20 % of the consumer's run
time; with this policy the same run was within 3 % of one with the collector switched off.
Nothing here produces cyclic garbage at a high rate, so collecting less often costs little
memory, and the collector still runs.
"""

from __future__ import annotations

import gc

__all__ = ["FIRST_GENERATION_THRESHOLD", "tune_for_batches"]

FIRST_GENERATION_THRESHOLD = 50_000


def tune_for_batches() -> None:
    """Call once, after start-up imports, in a process that converts events in bulk.

    ``gc.freeze`` moves everything alive now (modules, models, compiled validators) into a
    permanent generation that collections no longer traverse; the higher first-generation
    threshold makes a collection happen per tens of thousands of allocations, not per 700.
    """
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(FIRST_GENERATION_THRESHOLD, second, third)
