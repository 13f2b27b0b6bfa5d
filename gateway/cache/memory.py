"""In-process cache store: an LRU bounded by total body bytes (embedded mode)."""

from __future__ import annotations

import time
from collections import OrderedDict

from gateway.cache.policy import CacheEntry


class MemoryCache:
    """LRU of cache entries, evicting least-recently-used ones past ``max_bytes``.

    Entries past their store expiry are dropped on read. Not safe to share between threads;
    one instance per event loop.
    """

    backend = "memory"

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[CacheEntry, float]] = OrderedDict()
        self._bytes = 0

    @property
    def size_bytes(self) -> int:
        return self._bytes

    async def get(self, key: str) -> CacheEntry | None:
        found = self._entries.get(key)
        if found is None:
            return None
        entry, expires_at = found
        if time.monotonic() >= expires_at:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry

    async def set(self, key: str, entry: CacheEntry, expire_s: float) -> None:
        size = len(entry.body)
        if size > self._max_bytes or expire_s <= 0:
            return
        if key in self._entries:
            self._drop(key)
        self._entries[key] = (entry, time.monotonic() + expire_s)
        self._bytes += size
        while self._bytes > self._max_bytes:
            oldest = next(iter(self._entries))
            self._drop(oldest)

    def _drop(self, key: str) -> None:
        entry, _ = self._entries.pop(key)
        self._bytes -= len(entry.body)

    async def try_lock(self, key: str, ttl_s: float) -> bool:
        # One process is the whole deployment here; in-process single-flight already dedupes.
        return True

    async def unlock(self, key: str) -> None:
        return None

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        self._entries.clear()
        self._bytes = 0
