"""Pure cache decisions: keys, freshness, refresh-ahead and how long a store keeps an entry."""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlencode


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """A validated upstream answer and where it came from; ``body`` is served byte for byte."""

    body: bytes
    source_name: str
    fallback_depth: int
    stored_at: float
    fresh_until: float
    stale_until: float

    def age_seconds(self, now: float) -> int:
        return max(0, int(now - self.stored_at))


class Freshness(enum.Enum):
    FRESH = "fresh"
    STALE = "stale"
    EXPIRED = "expired"


def cache_key(category: str, rest: str, params: Sequence[tuple[str, str]]) -> str:
    """``category:endpoint:param_hash`` (PRD §3.2), independent of query parameter order.

    Args:
        category: the category name as configured (case-insensitive match → lowered).
        rest: the concrete endpoint path after ``/api/v1/``, e.g. ``jadwal-rilis/senin``.
        params: the forwarded query parameters.
    """
    canonical = urlencode(sorted(params)).encode()
    digest = hashlib.blake2b(canonical, digest_size=8).hexdigest()
    return f"{category.lower()}:/api/v1/{rest}:{digest}"


def new_entry(
    body: bytes,
    source_name: str,
    fallback_depth: int,
    *,
    now: float,
    ttl_seconds: float,
    stale_ttl_seconds: float,
) -> CacheEntry:
    return CacheEntry(
        body=body,
        source_name=source_name,
        fallback_depth=fallback_depth,
        stored_at=now,
        fresh_until=now + ttl_seconds,
        stale_until=now + ttl_seconds + stale_ttl_seconds,
    )


def freshness(entry: CacheEntry, now: float) -> Freshness:
    if now < entry.fresh_until:
        return Freshness.FRESH
    if now < entry.stale_until:
        return Freshness.STALE
    return Freshness.EXPIRED


def should_refresh_ahead(entry: CacheEntry, now: float, fraction: float) -> bool:
    """True for a fresh entry in the last ``fraction`` of its TTL.

    Only hits call this, so only keys that are being read get refreshed: hot keys never go
    stale, cold keys simply expire.
    """
    if fraction <= 0 or now >= entry.fresh_until:
        return False
    ttl = entry.fresh_until - entry.stored_at
    return entry.fresh_until - now <= ttl * fraction


def store_expiry_seconds(entry: CacheEntry, now: float) -> float:
    """How long a store must keep ``entry``: until its stale window closes."""
    return max(0.0, entry.stale_until - now)
