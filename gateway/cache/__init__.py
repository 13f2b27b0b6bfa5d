"""Response cache: pure policy, plus interchangeable in-process and Redis stores."""

from __future__ import annotations

from typing import Protocol

from gateway.cache.policy import CacheEntry


class CacheStore(Protocol):
    """Where validated answers live between requests; one per process."""

    backend: str

    async def get(self, key: str) -> CacheEntry | None: ...

    async def set(self, key: str, entry: CacheEntry, expire_s: float) -> None: ...

    async def try_lock(self, key: str, ttl_s: float) -> bool:
        """Take the cross-instance fill lock of ``key``; True when this caller should fetch."""
        ...

    async def unlock(self, key: str) -> None: ...

    async def ping(self) -> None:
        """Raise when the store is unreachable (for /readyz and /health)."""
        ...

    async def aclose(self) -> None: ...
