"""SQL text for the stores: quoting, table names, the offsets query, session statements, and
the body of a rows insert."""

from __future__ import annotations

import re
from collections.abc import Sequence

import orjson

from consumers.store.errors import StoreError

DATABASE = "apicat"
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LEADING_COMMENTS = re.compile(r"^(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*", re.S)
_SESSION_STATEMENT = re.compile(r"(?:SET|USE)\b", re.I)

# Recent engines also deduplicate a retried block in the rollup tables by themselves (their
# own deduplication window); older servers need this setting for it.
DEDUP_VIEWS = "deduplicate_blocks_in_dependent_materialized_views"


def quote_identifier(name: str) -> str:
    """``name`` as a back-quoted ClickHouse identifier (``failures.path`` stays one name)."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def quote_literal(value: str) -> str:
    """``value`` as a ClickHouse string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def qualified_table(table: str) -> str:
    """``db.table`` for a plain or qualified table name; rejects anything else (no injection)."""
    parts = table.split(".")
    if len(parts) == 1:
        parts = [DATABASE, *parts]
    if len(parts) != 2 or not all(IDENTIFIER.match(part) for part in parts):
        raise StoreError(f"invalid table name {table!r}", retriable=False)
    return ".".join(parts)


def offsets_query(table: str, topic: str) -> str:
    """``SELECT`` partition → highest ``_offset`` in ``table`` from ``topic`` (TabSeparated)."""
    return (
        f"SELECT _partition, max(_offset) FROM {qualified_table(table)} "
        f"WHERE _topic = {quote_literal(topic)} GROUP BY _partition"
    )


def parse_offsets(tsv: bytes) -> dict[int, int]:
    """Partition → offset from the TabSeparated output of ``offsets_query``."""
    offsets: dict[int, int] = {}
    for line in tsv.splitlines():
        partition, offset = line.split(b"\t")
        offsets[int(partition)] = int(offset)
    return offsets


def is_session_statement(sql: str | bytes) -> bool:
    """``SET``/``USE``: session state, which a stateless call must not leave behind."""
    head = sql[:4096].decode(errors="replace") if isinstance(sql, bytes) else sql[:4096]
    comments = _LEADING_COMMENTS.match(head)
    return bool(_SESSION_STATEMENT.match(head, comments.end() if comments else 0))


# Rows travel as JSONCompactEachRow: orjson encodes a whole batch in one C call (~1 µs a row),
# where building columns in Python for a binary format cost several. ts values are ISO 8601
# with a Z, which ClickHouse reads with best_effort parsing.
ROWS_FORMAT = "JSONCompactEachRow"
ROWS_SETTINGS = {"date_time_input_format": "best_effort"}


def encode_rows(rows: Sequence[Sequence[object]]) -> bytes:
    """``rows`` as a JSONCompactEachRow body (comma-separated arrays, which it accepts).

    Raises:
        StoreError: a value JSON cannot carry (not retriable: the same rows fail again).
    """
    try:
        # One call for the whole batch is ~6x faster than one per row; its outer brackets
        # are cut off.
        return orjson.dumps(
            rows if isinstance(rows, list | tuple) else list(rows),
            option=orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z,
        )[1:-1]
    except TypeError as exc:
        raise StoreError(f"cannot encode rows: {exc}", retriable=False) from None
