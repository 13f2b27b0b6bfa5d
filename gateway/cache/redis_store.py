"""Redis cache store: entries shared by all gateway instances, and the cross-instance fill lock."""

from __future__ import annotations

import secrets

import orjson
from redis.asyncio import Redis

from gateway.cache.policy import CacheEntry

_KEY_PREFIX = "apicat:cache:"
_LOCK_PREFIX = "apicat:fill:"
# Deletes the lock only if this instance still owns it, so a slow holder whose lock expired
# never releases a lock another instance has since taken.
_UNLOCK_SCRIPT = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


def encode_entry(entry: CacheEntry) -> bytes:
    meta = orjson.dumps(
        [entry.source_name, entry.fallback_depth, entry.stored_at, entry.fresh_until,
         entry.stale_until]
    )  # fmt: skip
    return meta + b"\n" + entry.body


def decode_entry(raw: bytes) -> CacheEntry | None:
    meta, sep, body = raw.partition(b"\n")
    if not sep:
        return None
    try:
        source_name, depth, stored_at, fresh_until, stale_until = orjson.loads(meta)
    except (orjson.JSONDecodeError, ValueError):
        return None
    return CacheEntry(body, str(source_name), int(depth), stored_at, fresh_until, stale_until)


class RedisCache:
    """Cache entries in Redis with ``EX`` set to the end of their stale window.

    Wall-clock timestamps are stored (instances share them), so instances need roughly synced
    clocks; a skew of seconds only shifts freshness by that much.
    """

    backend = "redis"

    def __init__(self, url: str) -> None:
        self._redis: Redis = Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self._lock_tokens: dict[str, str] = {}

    async def get(self, key: str) -> CacheEntry | None:
        raw = await self._redis.get(_KEY_PREFIX + key)
        return decode_entry(raw) if isinstance(raw, bytes) else None

    async def set(self, key: str, entry: CacheEntry, expire_s: float) -> None:
        if expire_s <= 0:
            return
        await self._redis.set(_KEY_PREFIX + key, encode_entry(entry), px=int(expire_s * 1000))

    async def try_lock(self, key: str, ttl_s: float) -> bool:
        token = secrets.token_hex(8)
        taken = await self._redis.set(_LOCK_PREFIX + key, token, nx=True, px=int(ttl_s * 1000))
        if taken:
            self._lock_tokens[key] = token
        return bool(taken)

    async def unlock(self, key: str) -> None:
        token = self._lock_tokens.pop(key, None)
        if token is not None:
            await self._redis.eval(_UNLOCK_SCRIPT, 1, _LOCK_PREFIX + key, token)

    async def ping(self) -> None:
        await self._redis.ping()

    async def aclose(self) -> None:
        await self._redis.aclose()
