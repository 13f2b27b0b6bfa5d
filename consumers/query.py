"""Ad-hoc SQL for analysts (`apicat query`): run one statement, render as table, JSON or CSV."""

from __future__ import annotations

import re
from typing import Literal

import orjson

from consumers.store import EventStore, StoreError

__all__ = ["OutputFormat", "run_query"]

OutputFormat = Literal["table", "json", "csv"]

# ClickHouse quotes 64-bit integers in JSON (for JavaScript's sake); a JSON array meant for
# scripts gets real numbers back. Wider integers stay strings: JSON encoders cap at 64 bits.
_QUOTED_INT = re.compile(r"^(?:Nullable\()?(?:LowCardinality\()?U?Int64\)*$")


async def run_query(store: EventStore, sql: str, output: OutputFormat) -> str:
    """Run ``sql`` on ``store`` and render its result.

    Args:
        store: where to run it (chDB or a ClickHouse server: same SQL).
        sql: one ClickHouse statement, without a ``FORMAT`` clause.
        output: ``table`` (aligned text, ClickHouse ``PrettyCompactMonoBlock``), ``json``
            (an array of row objects) or ``csv`` (with a header line).

    Returns:
        The rendered result; empty for a statement without output (``table``/``csv``).

    Raises:
        StoreError: the statement failed; the message is ClickHouse's, without stack trace.
    """
    if output == "table":
        return (await store.query(sql, "PrettyCompactMonoBlock")).decode()
    if output == "csv":
        return (await store.query(sql, "CSVWithNames")).decode()
    return _json_rows(await store.query(sql, "JSONCompactEachRowWithNamesAndTypes"))


def _json_rows(data: bytes) -> str:
    lines = data.splitlines()
    if len(lines) < 2:  # a statement without a result set (DDL, INSERT)
        return "[]"
    try:
        names = orjson.loads(lines[0])
        types = orjson.loads(lines[1])
        quoted = [i for i, kind in enumerate(types) if _QUOTED_INT.match(kind)]
        rows = []
        for line in lines[2:]:
            values = orjson.loads(line)
            for i in quoted:
                if isinstance(values[i], str):
                    values[i] = int(values[i])
            rows.append(dict(zip(names, values, strict=True)))
    except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
        # The statement chose its own output with a FORMAT clause.
        raise StoreError(
            f"the result is not JSON ({exc}); remove the FORMAT clause from the query",
            retriable=False,
        ) from None
    return orjson.dumps(rows).decode()
