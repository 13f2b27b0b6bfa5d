"""``StoreError`` and turning ClickHouse error text into it (clean message, code, retriable)."""

from __future__ import annotations

import re

_MAX_MESSAGE = 1000
# ClickHouse error codes worth retrying: overload, timeouts, network trouble, read-only
# replicas, unknown insert status. Everything else (bad SQL, unknown table, bad data) is not.
_RETRIABLE_CODES = frozenset(
    {3, 32, 159, 164, 202, 203, 209, 210, 236, 241, 242, 252, 279, 285, 319, 394, 425, 999}
)
_CODE = re.compile(r"Code: (\d+)\. DB::Exception: ")
_TRAILERS = re.compile(r"(?:\s*\((?:version [^)]*|for url [^)]*)\))+\s*$")


class StoreError(Exception):
    """The store refused or failed a call; ``retriable`` says whether trying again may help."""

    def __init__(self, message: str, retriable: bool, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retriable = retriable
        self.code = code


def clean_error_message(text: str) -> str:
    """ClickHouse's own error text from a driver or engine message, without the noise.

    Keeps ``Code: N. DB::Exception: ... (NAME)``; drops driver prefixes, the stack trace and
    the ``(version ...)``/``(for url ...)`` trailers, and caps the length.
    """
    match = _CODE.search(text)
    if match:
        text = text[match.start() :]
    text = text.split("\nStack trace:", 1)[0].split(", Stack trace", 1)[0]
    text = _TRAILERS.sub("", text.strip())
    if len(text) > _MAX_MESSAGE:
        text = text[: _MAX_MESSAGE - 3].rstrip() + "..."
    return text


def error_code(text: str) -> int | None:
    """The ClickHouse error code in ``text`` (``Code: N.``), if any."""
    match = _CODE.search(text)
    return int(match.group(1)) if match else None


def store_error(text: str, code: int | None = None) -> StoreError:
    """A ``StoreError`` for ClickHouse error ``text``, retriable by its code (or ``code``)."""
    code = error_code(text) if code is None else code
    return StoreError(clean_error_message(text), retriable=code in _RETRIABLE_CODES, code=code)
