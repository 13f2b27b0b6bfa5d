"""Schema migrations: apply ``schemas/clickhouse/*.sql`` in name order on any ``EventStore``."""

from __future__ import annotations

import hashlib
import re
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

from consumers.store import DATABASE, EventStore, quote_literal

__all__ = ["migrate", "schema_files", "split_statements"]

_TABLE = f"{DATABASE}.schema_migrations"
# Statements end with `;` at the end of a line (the convention of schemas/clickhouse/).
_STATEMENT_END = re.compile(r";[ \t]*$", re.M)
_COMMENT_LINE = re.compile(r"^[ \t]*--[^\n]*$", re.M)


def schema_files(directory: Traversable | Path | None = None) -> list[Traversable | Path]:
    """The migration files, in the order they apply (``001_...``, ``002_...``)."""
    root = directory or resources.files("schemas").joinpath("clickhouse")
    return sorted(
        (entry for entry in root.iterdir() if entry.name.endswith(".sql")),
        key=lambda entry: entry.name,
    )


def split_statements(text: str) -> list[str]:
    """The statements of one migration file, comments dropped (they may contain ``;``)."""
    text = _COMMENT_LINE.sub("", text)
    return [statement.strip() for statement in _STATEMENT_END.split(text) if statement.strip()]


async def _applied(store: EventStore) -> dict[str, str]:
    await store.command(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
    await store.command(
        f"CREATE TABLE IF NOT EXISTS {_TABLE} (name String, checksum String, "
        "applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = ReplacingMergeTree(applied_at) ORDER BY name"
    )
    tsv = await store.query(
        f"SELECT name, argMax(checksum, applied_at) FROM {_TABLE} GROUP BY name", "TabSeparated"
    )
    applied: dict[str, str] = {}
    for line in tsv.decode().splitlines():
        name, checksum = line.split("\t", 1)
        applied[name] = checksum
    return applied


async def migrate(store: EventStore, directory: Traversable | Path | None = None) -> list[str]:
    """Apply every migration file not yet applied (or changed since), in order.

    Every statement is idempotent (``IF NOT EXISTS``), so a changed file is simply applied
    again (new statements appended to it take effect), and two processes migrating at once
    are harmless. ``schema_migrations`` records each file's checksum.

    Args:
        store: the event store to migrate.
        directory: where the ``*.sql`` files are; default ``schemas/clickhouse`` (package data).

    Returns:
        The names of the files applied by this call; empty when the schema was up to date.

    Raises:
        StoreError: a statement failed; files before it stay applied and recorded.
    """
    applied = await _applied(store)
    ran: list[str] = []
    for file in schema_files(directory):
        text = file.read_text(encoding="utf-8")
        checksum = hashlib.sha256(text.encode()).hexdigest()
        if applied.get(file.name) == checksum:
            continue
        for statement in split_statements(text):
            await store.command(statement)
        await store.command(
            f"INSERT INTO {_TABLE} (name, checksum) "
            f"VALUES ({quote_literal(file.name)}, {quote_literal(checksum)})"
        )
        ran.append(file.name)
    return ran
