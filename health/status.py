"""Each upstream's current health: the Up/Down state machine and the stores that share it.

State machine (pure, :func:`next_status`), per upstream base URL, ``N = down_after``
(``APICAT_PROBE_DOWN_AFTER``, default 1)::

    (none) --probe OK-----------------------------> Up, failures 0
    (none) --probe not OK (Timeout/Error/Invalid)-> failures 1, Down if N == 1 else Up
    Up     --probe OK-----------------------------> Up, failures 0
    Up     --probe not OK-------------------------> failures + 1; Down once failures >= N
    Down   --probe not OK-------------------------> Down, failures + 1
    Down   --probe OK-----------------------------> Up, failures 0   (one OK is enough)

``status`` is always the latest probe's verdict; ``changed_at`` moves only when ``up`` flips
(the first probe of an upstream sets it). An upstream never probed has no record; readers
should treat it as Up (no news is not bad news), as the gateway does without a prober.

Status is keyed by base URL, the key the gateway's breakers and health view use. A base URL
configured in two categories is probed once per category and both probes feed the same
record (an upstream that fails one category's probe is failing).

Stores: :class:`MemoryStatusStore` (one process: ``apicat serve`` embedded) and
:class:`RedisStatusStore` (shared by every prober and gateway instance): statuses as JSON in
the hash ``apicat:health:status`` (field = base URL), leases as
``SET apicat:health:lease:<key hash>:<slot> <holder> NX PX <ttl>``. Store failures raise
:class:`StatusStoreError`. Neither store is safe to share between event loops.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass
from typing import Protocol

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from health.targets import ProbeTarget
from schemas.events import ProbeStatus

STATUS_HASH = "apicat:health:status"
LEASE_PREFIX = "apicat:health:lease:"


class StatusStoreError(Exception):
    """The status store could not be read or written (Redis down, timeout)."""


@dataclass(frozen=True, slots=True)
class UpstreamStatus:
    """The latest probe verdict on one upstream base URL and whether it is considered Up."""

    url: str
    """The upstream's base URL (what the gateway looks statuses up by)."""
    status: ProbeStatus
    up: bool
    consecutive_failures: int
    latency_ms: float
    checked_at: float
    """Wall-clock seconds of the latest probe."""
    changed_at: float
    """Wall-clock seconds of the latest Up↔Down flip (or of the first probe)."""
    detail: str
    category: str
    source_name: str

    def to_json(self) -> bytes:
        """Encode for the shared store."""
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> UpstreamStatus:
        """Decode what :meth:`to_json` wrote.

        Raises:
            ValueError: when ``raw`` is not such a record.
        """
        try:
            fields = orjson.loads(raw)
            return cls(
                url=str(fields["url"]),
                status=ProbeStatus(fields["status"]),
                up=bool(fields["up"]),
                consecutive_failures=int(fields["consecutive_failures"]),
                latency_ms=float(fields["latency_ms"]),
                checked_at=float(fields["checked_at"]),
                changed_at=float(fields["changed_at"]),
                detail=str(fields["detail"]),
                category=str(fields["category"]),
                source_name=str(fields["source_name"]),
            )
        except (ValueError, KeyError, TypeError) as exc:  # JSONDecodeError is a ValueError
            raise ValueError(f"not an upstream status record: {exc}") from exc


def next_status(
    previous: UpstreamStatus | None,
    target: ProbeTarget,
    result: ProbeStatus,
    latency_ms: float,
    detail: str,
    now: float,
    down_after: int,
) -> UpstreamStatus:
    """Apply one probe result to an upstream's status (see the module docstring).

    Args:
        previous: the upstream's status before this probe (``None`` if never probed).
        target: what was probed.
        result: the probe's verdict.
        latency_ms: how long the probe took.
        detail: why it failed (empty when OK).
        now: wall-clock seconds of the probe.
        down_after: consecutive non-OK probes that mark the upstream Down (>= 1).

    Returns:
        The new status.
    """
    if result is ProbeStatus.OK:
        failures = 0
        up = True
    else:
        failures = (previous.consecutive_failures if previous else 0) + 1
        # Down stays Down until an OK; Up turns Down on the N-th failure in a row.
        up = failures < down_after and (previous is None or previous.up)
    return UpstreamStatus(
        url=target.base_url,
        status=result,
        up=up,
        consecutive_failures=failures,
        latency_ms=latency_ms,
        checked_at=now,
        changed_at=now if previous is None or previous.up != up else previous.changed_at,
        detail=detail,
        category=target.category,
        source_name=target.source_name,
    )


class StatusStore(Protocol):
    """Where current statuses live and how probers agree who probes what."""

    async def get(self, url: str) -> UpstreamStatus | None:
        """The status of one base URL, or ``None`` if it was never probed."""
        ...

    async def get_all(self) -> dict[str, UpstreamStatus]:
        """Every known status by base URL."""
        ...

    async def put(self, status: UpstreamStatus) -> None:
        """Replace the status of ``status.url``."""
        ...

    async def forget(self, urls: Collection[str]) -> None:
        """Drop the statuses of ``urls`` (upstreams no longer in the config)."""
        ...

    async def try_lease(self, key: str, slot: int, holder: str, ttl_s: float) -> bool:
        """Claim probe round ``slot`` of target ``key``; true for exactly one caller."""
        ...

    async def aclose(self) -> None: ...


class MemoryStatusStore:
    """Statuses and leases in this process (embedded mode, tests)."""

    backend = "memory"

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._statuses: dict[str, UpstreamStatus] = {}
        # One lease per key (slots only move forward), so this stays as big as the target list.
        self._leases: dict[str, tuple[int, str, float]] = {}
        self._clock = clock

    async def get(self, url: str) -> UpstreamStatus | None:
        return self._statuses.get(url)

    async def get_all(self) -> dict[str, UpstreamStatus]:
        return dict(self._statuses)

    async def put(self, status: UpstreamStatus) -> None:
        self._statuses[status.url] = status

    async def forget(self, urls: Collection[str]) -> None:
        for url in urls:
            self._statuses.pop(url, None)

    async def try_lease(self, key: str, slot: int, holder: str, ttl_s: float) -> bool:
        now = self._clock()
        held = self._leases.get(key)
        if held is not None and held[0] == slot and held[2] > now:
            return False
        self._leases[key] = (slot, holder, now + ttl_s)
        return True

    async def aclose(self) -> None:
        return None


def lease_key(key: str, slot: int) -> str:
    """The Redis key of one probe round's lease (the target key is hashed: URLs are long)."""
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:24]
    return f"{LEASE_PREFIX}{digest}:{slot}"


class RedisStatusStore:
    """Statuses and leases in Redis, shared by every prober and gateway instance.

    Lease values name their holder (``SET NX PX``), so ``redis-cli get`` shows which prober
    owns a round; leases are never released early: they only need to outlive the round.
    """

    backend = "redis"

    def __init__(self, url: str) -> None:
        self._redis: Redis = Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)

    async def get(self, url: str) -> UpstreamStatus | None:
        try:
            raw = await self._redis.hget(STATUS_HASH, url)
        except (RedisError, OSError) as exc:
            raise StatusStoreError(f"reading the status of {url}: {exc}") from exc
        return _decoded(raw) if isinstance(raw, bytes) else None

    async def get_all(self) -> dict[str, UpstreamStatus]:
        try:
            raw = await self._redis.hgetall(STATUS_HASH)
        except (RedisError, OSError) as exc:
            raise StatusStoreError(f"reading statuses: {exc}") from exc
        decoded = (_decoded(value) for value in raw.values())
        return {status.url: status for status in decoded if status is not None}

    async def put(self, status: UpstreamStatus) -> None:
        try:
            await self._redis.hset(STATUS_HASH, status.url, status.to_json())
        except (RedisError, OSError) as exc:
            raise StatusStoreError(f"writing the status of {status.url}: {exc}") from exc

    async def forget(self, urls: Collection[str]) -> None:
        if not urls:
            return
        try:
            await self._redis.hdel(STATUS_HASH, *urls)
        except (RedisError, OSError) as exc:
            raise StatusStoreError(f"forgetting {len(urls)} statuses: {exc}") from exc

    async def try_lease(self, key: str, slot: int, holder: str, ttl_s: float) -> bool:
        try:
            taken = await self._redis.set(
                lease_key(key, slot), holder, nx=True, px=max(1, int(ttl_s * 1000))
            )
        except (RedisError, OSError) as exc:
            raise StatusStoreError(f"taking the lease of {key} slot {slot}: {exc}") from exc
        return bool(taken)

    async def ping(self) -> None:
        """Raise :class:`StatusStoreError` unless Redis answers."""
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            raise StatusStoreError(f"pinging Redis: {exc}") from exc

    async def aclose(self) -> None:
        await self._redis.aclose()


def _decoded(raw: bytes | str) -> UpstreamStatus | None:
    # A record written by a newer or broken writer is skipped rather than failing every read.
    try:
        return UpstreamStatus.from_json(raw)
    except ValueError:
        return None
