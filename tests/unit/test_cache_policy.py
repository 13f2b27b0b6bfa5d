from __future__ import annotations

import pytest

from gateway.cache.memory import MemoryCache
from gateway.cache.policy import (
    CacheEntry,
    Freshness,
    cache_key,
    freshness,
    new_entry,
    should_refresh_ahead,
    store_expiry_seconds,
)
from gateway.cache.redis_store import decode_entry, encode_entry


def entry(
    now: float = 1000.0, ttl: float = 100.0, stale: float = 50.0, body: bytes = b"{}"
) -> CacheEntry:
    return new_entry(body, "src", 1, now=now, ttl_seconds=ttl, stale_ttl_seconds=stale)


def test_key_follows_category_endpoint_param_hash_and_ignores_param_order() -> None:
    key = cache_key("Anime", "search", [("q", "naruto"), ("page", "2")])
    assert key.startswith("anime:/api/v1/search:")
    assert key == cache_key("anime", "search", [("page", "2"), ("q", "naruto")])
    assert key != cache_key("anime", "search", [("q", "naruto"), ("page", "3")])
    assert key != cache_key("drakor", "search", [("q", "naruto"), ("page", "2")])


def test_day_paths_get_distinct_keys() -> None:
    assert cache_key("anime", "jadwal-rilis/senin", []) != cache_key(
        "anime", "jadwal-rilis/selasa", []
    )


def test_entry_is_fresh_then_stale_then_expired() -> None:
    e = entry(now=1000, ttl=100, stale=50)
    assert freshness(e, 1099.9) is Freshness.FRESH
    assert freshness(e, 1100.0) is Freshness.STALE
    assert freshness(e, 1149.9) is Freshness.STALE
    assert freshness(e, 1150.0) is Freshness.EXPIRED


def test_refresh_ahead_only_in_the_last_fraction_of_the_ttl() -> None:
    e = entry(now=1000, ttl=100)
    assert not should_refresh_ahead(e, 1089.0, 0.1)
    assert should_refresh_ahead(e, 1091.0, 0.1)
    assert not should_refresh_ahead(e, 1100.0, 0.1), "a stale entry is refilled, not refreshed"
    assert not should_refresh_ahead(e, 1095.0, 0.0), "fraction 0 turns it off"


def test_store_keeps_an_entry_until_its_stale_window_closes() -> None:
    assert store_expiry_seconds(entry(now=1000, ttl=100, stale=50), 1010) == 140


def test_redis_encoding_round_trips_body_bytes_exactly() -> None:
    original = entry(body=b'{"x":"\n\xc3\xa9"}')
    assert decode_entry(encode_entry(original)) == original
    assert decode_entry(b"garbage-without-newline") is None


async def test_memory_cache_evicts_least_recently_used_past_its_byte_budget() -> None:
    cache = MemoryCache(max_bytes=1024 * 1024)
    big = b"x" * (400 * 1024)
    await cache.set("a", entry(body=big), 60)
    await cache.set("b", entry(body=big), 60)
    assert await cache.get("a") is not None  # a is now most recently used
    await cache.set("c", entry(body=big), 60)
    assert await cache.get("b") is None
    assert await cache.get("a") is not None
    assert cache.size_bytes == 800 * 1024


@pytest.mark.parametrize("expire_s", [0, -1])
async def test_memory_cache_does_not_store_already_expired_entries(expire_s: float) -> None:
    cache = MemoryCache(max_bytes=1024 * 1024)
    await cache.set("a", entry(), expire_s)
    assert await cache.get("a") is None
