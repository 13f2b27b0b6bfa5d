"""The event store seam: ``EventStore`` and its chDB and ClickHouse-server implementations.

``protocol`` holds the seam, ``chdb`` and ``clickhouse`` the two implementations, ``sql`` the
SQL text they share and ``errors`` the ``StoreError`` they raise.
"""

from __future__ import annotations

from consumers.store.chdb import ChdbResult, ChdbStore
from consumers.store.clickhouse import ClickHouseStore
from consumers.store.errors import StoreError, clean_error_message, error_code
from consumers.store.protocol import EventStore
from consumers.store.sql import (
    DATABASE,
    is_session_statement,
    qualified_table,
    quote_identifier,
    quote_literal,
)

__all__ = [
    "DATABASE",
    "ChdbResult",
    "ChdbStore",
    "ClickHouseStore",
    "EventStore",
    "StoreError",
    "clean_error_message",
    "error_code",
    "is_session_statement",
    "qualified_table",
    "quote_identifier",
    "quote_literal",
]
