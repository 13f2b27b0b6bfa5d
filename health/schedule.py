"""Pure probe scheduling: each upstream's fixed phase within its interval, and lease slots."""

from __future__ import annotations

import hashlib
import math

# 2**64: the range of the 8-byte hash that becomes a fraction of the interval.
_HASH_RANGE = float(1 << 64)


def probe_offset_s(key: str, interval_s: float) -> float:
    """Where in every interval the upstream ``key`` is probed, in seconds after the slot start.

    The offset comes from a hash of the key, so every prober process computes the same phase
    without talking to the others, and 500 upstreams sharing one interval land spread
    uniformly instead of all at once (no thundering herd after a restart).

    Args:
        key: the probe target's stable key (``category|base_url``).
        interval_s: the target's probe interval, in seconds (> 0).

    Returns:
        A value in ``[0, interval_s)``.
    """
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    offset = int.from_bytes(digest, "big") / _HASH_RANGE * interval_s
    # Float rounding can turn a fraction just below 1 into exactly interval_s.
    return offset if offset < interval_s else 0.0


def slot(now: float, interval_s: float) -> int:
    """The index of the interval ``now`` falls in (intervals are aligned to the Unix epoch).

    Every due time of a key falls in a different slot, and all processes agree on the slot of
    a due time, so ``(key, slot)`` names one probe round for leases.

    Args:
        now: a wall-clock time in seconds since the epoch.
        interval_s: the probe interval, in seconds (> 0).

    Returns:
        ``floor(now / interval_s)``.
    """
    return math.floor(now / interval_s)


def next_due(key: str, interval_s: float, now: float) -> float:
    """The first time at or after ``now`` that is in ``key``'s phase.

    Due times are ``slot_start + probe_offset_s(key, interval_s)``, so ``slot(due)`` is the
    slot the probe belongs to, on every process.

    Args:
        key: the probe target's stable key.
        interval_s: the probe interval, in seconds (> 0).
        now: a wall-clock time in seconds since the epoch.

    Returns:
        The due time ``t >= now`` with ``t - probe_offset_s(key, interval_s)`` a multiple of
        ``interval_s``.
    """
    offset = probe_offset_s(key, interval_s)
    due = math.ceil((now - offset) / interval_s) * interval_s + offset
    # Guard against float rounding putting the result a hair before now.
    return due if due >= now else due + interval_s
