"""Per-process single-flight: concurrent callers for one key share one in-flight fill."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """Runs at most one fill per key at a time; later callers await the same result.

    The fill runs as its own task, so a client that disconnects (cancelling its request) does
    not cancel the fill the other waiters depend on, and the answer still reaches the cache.
    Not safe to share between event loops.
    """

    def __init__(self) -> None:
        self._inflight: dict[str, asyncio.Task[T]] = {}

    def __len__(self) -> int:
        return len(self._inflight)

    def is_running(self, key: str) -> bool:
        return key in self._inflight

    def start(
        self, key: str, fill: Callable[[], Coroutine[Any, Any, T]]
    ) -> tuple[asyncio.Task[T], bool]:
        """Start ``fill`` for ``key`` unless one is running.

        Returns:
            The task holding the fill, and whether this call joined an existing one.
        """
        task = self._inflight.get(key)
        if task is not None:
            return task, True

        task = asyncio.create_task(fill(), name=f"fill:{key}")
        self._inflight[key] = task
        task.add_done_callback(lambda _: self._inflight.pop(key, None))
        return task, False

    async def run(self, key: str, fill: Callable[[], Coroutine[Any, Any, T]]) -> tuple[T, bool]:
        """Await the (possibly shared) fill of ``key``; returns (result, joined)."""
        task, joined = self.start(key, fill)
        return await asyncio.shield(task), joined

    async def wait_idle(self) -> None:
        """Wait until every fill running now has finished, whatever its result."""
        await asyncio.gather(*self._inflight.values(), return_exceptions=True)

    async def aclose(self) -> None:
        """Cancel fills still running (shutdown)."""
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
