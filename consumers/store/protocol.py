"""The ``EventStore`` protocol both store implementations satisfy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class EventStore(Protocol):
    """Where events are stored and analysed.

    Both implementations run the same SQL (schemas/clickhouse/) and raise the same
    ``StoreError``s, so the embedded mode (``ChdbStore``, chDB in the data dir) and the
    scale-out mode (``ClickHouseStore``, a server through clickhouse-connect) are
    interchangeable. Unqualified table names are in ``DATABASE``.
    """

    async def insert(
        self, table: str, columns: Sequence[str], rows: Sequence[Sequence[object]], dedup_token: str
    ) -> None:
        """Insert ``rows`` as one block; the same ``dedup_token`` again is stored only once."""

    async def query(self, sql: str, fmt: str = "JSONEachRow") -> bytes:
        """Run ``sql`` and return its output in ClickHouse format ``fmt``."""

    async def command(self, sql: str) -> None:
        """Run a statement whose output is not needed (DDL, mutations)."""

    async def max_offsets(self, table: str, topic: str) -> dict[int, int]:
        """Partition → highest ``_offset`` stored in ``table`` from ``topic``."""

    async def ping(self) -> None:
        """Raise ``StoreError`` unless the store answers."""

    async def aclose(self) -> None:
        """Release the store; idempotent."""
