"""Durable spill journal: append-only segment files of encoded events with a persisted cursor.

The emitter writes here whatever it cannot hand to its transport (Kafka down, store down, or the
in-memory buffer full) and replays it, oldest first, when the transport is back. Layout in the
journal directory::

    00000000000000000001.seg   length-prefixed records: 4-byte big-endian size + payload
    cursor                     "<segment number> <byte offset>" of the first unsent record

A record is only considered sent once ``commit`` moves the cursor past it, so a crash between
sending and committing replays it (at-least-once; the store deduplicates). A torn final record
(crash mid-append) is ignored on read. Not safe to share between processes or threads.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

_HEADER = struct.Struct(">I")
_SUFFIX = ".seg"
_MAX_RECORD_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Position:
    segment: int
    offset: int


class Journal:
    """Append-only event journal in ``directory``; segments roll over at ``segment_bytes``."""

    def __init__(self, directory: Path, segment_bytes: int = 64 * 1024 * 1024) -> None:
        self._dir = directory
        self._dir.mkdir(parents=True, exist_ok=True)
        self._segment_bytes = segment_bytes
        self._cursor_path = directory / "cursor"
        self._cursor = self._load_cursor()
        segments = self._segments()
        self._write_segment = segments[-1] if segments else max(1, self._cursor.segment)
        self._writer = open(self._segment_path(self._write_segment), "ab")  # noqa: SIM115 - held open for appends
        self.pending_records = self._count_pending()

    def _segment_path(self, number: int) -> Path:
        return self._dir / f"{number:020d}{_SUFFIX}"

    def _segments(self) -> list[int]:
        return sorted(int(p.stem) for p in self._dir.glob(f"*{_SUFFIX}") if p.stem.isdigit())

    def _load_cursor(self) -> Position:
        try:
            segment, offset = self._cursor_path.read_text().split()
            return Position(int(segment), int(offset))
        except (OSError, ValueError):
            return Position(0, 0)

    def append(self, records: list[bytes], *, sync: bool = True) -> None:
        """Append records; with ``sync`` make them durable against power loss (one fsync)."""
        if not records:
            return
        if self._writer.tell() >= self._segment_bytes:
            self._roll()
        self._writer.write(b"".join(_HEADER.pack(len(r)) + r for r in records))
        self._writer.flush()
        if sync:
            os.fsync(self._writer.fileno())
        self.pending_records += len(records)

    def _roll(self) -> None:
        self._writer.close()
        self._write_segment += 1
        self._writer = open(self._segment_path(self._write_segment), "ab")  # noqa: SIM115 - held open for appends

    def read(self, max_records: int) -> tuple[list[bytes], Position]:
        """The oldest unsent records (at most ``max_records``) and the cursor just past them."""
        return self._scan(self._cursor, max_records)

    def _scan(self, start: Position, max_records: int) -> tuple[list[bytes], Position]:
        records: list[bytes] = []
        position = start
        for segment in self._segments():
            if segment < position.segment:
                continue
            offset = position.offset if segment == position.segment else 0
            with open(self._segment_path(segment), "rb") as handle:
                handle.seek(offset)
                while len(records) < max_records:
                    header = handle.read(_HEADER.size)
                    if len(header) < _HEADER.size:
                        break
                    (size,) = _HEADER.unpack(header)
                    payload = handle.read(size)
                    if size > _MAX_RECORD_BYTES or len(payload) < size:
                        break  # torn tail of a crashed append
                    records.append(payload)
                    offset = handle.tell()
            position = Position(segment, offset)
            if len(records) >= max_records:
                break
        return records, position

    def commit(self, position: Position, count: int) -> None:
        """Mark everything before ``position`` as sent and delete fully sent segments."""
        tmp = self._cursor_path.with_suffix(".tmp")
        tmp.write_text(f"{position.segment} {position.offset}")
        os.replace(tmp, self._cursor_path)
        self._cursor = position
        self.pending_records = max(0, self.pending_records - count)
        for segment in self._segments():
            if segment < position.segment and segment != self._write_segment:
                self._segment_path(segment).unlink(missing_ok=True)
        if self.pending_records == 0 and position.segment == self._write_segment:
            self._reset_when_drained()

    def _reset_when_drained(self) -> None:
        # Everything is sent: start a fresh segment so the journal does not grow forever.
        self._writer.close()
        old = self._write_segment
        self._write_segment += 1
        self._writer = open(self._segment_path(self._write_segment), "ab")  # noqa: SIM115 - held open for appends
        self._segment_path(old).unlink(missing_ok=True)
        self.commit_fresh()

    def commit_fresh(self) -> None:
        tmp = self._cursor_path.with_suffix(".tmp")
        tmp.write_text(f"{self._write_segment} 0")
        os.replace(tmp, self._cursor_path)
        self._cursor = Position(self._write_segment, 0)

    def _count_pending(self) -> int:
        count, position = 0, self._cursor
        while True:
            records, position = self._scan(position, 10_000)
            count += len(records)
            if len(records) < 10_000:
                return count

    def close(self) -> None:
        self._writer.close()
