"""The embedded event transport: batches go over loopback HTTP to the store process.

The store process (``consumers.store_server``) converts and inserts each batch and answers
200 once it is stored. Anything else — refused or reset connection, timeout, any other
status — is a ``TransportError``, so the emitter journals the batch and replays it; a batch
that was stored but whose answer was lost is recognised as such by the store when it comes
again. One aiohttp session with keep-alive; not safe to share between event loops.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence

import aiohttp

from consumers.store_server import INGEST_PATH, SENDER_HEADER
from gateway.emitter import TransportError


class StoreProcessTransport:
    """``EventTransport`` that posts batches to the store process at ``url()``.

    Args:
        url: where the store listens now (``None`` while it is down); asked per batch, as a
            restarted store may listen elsewhere.
        timeout_s: bound of one batch: connect, insert and answer.
    """

    name = "embedded"

    def __init__(self, url: Callable[[], str | None], *, timeout_s: float = 10.0) -> None:
        self._url = url
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._headers = {
            SENDER_HEADER: uuid.uuid4().hex,
            "content-type": "application/octet-stream",
        }
        self._session: aiohttp.ClientSession | None = None

    async def send(self, batch: Sequence[bytes]) -> None:
        url = self._url()
        if url is None:
            raise TransportError("the event store process is not running")
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=4), timeout=self._timeout
            )
        try:
            async with self._session.post(
                url + INGEST_PATH, data=frame(batch), headers=self._headers
            ) as response:
                answer = await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise TransportError(f"event store at {url}: {exc!r}") from exc
        if response.status != 200:
            text = answer[:500].decode("utf-8", "replace")
            raise TransportError(f"event store at {url} answered {response.status}: {text}")

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def frame(batch: Sequence[bytes]) -> bytes:
    """``batch`` as one body, records separated by newlines.

    Event JSON never holds a raw newline (pydantic escapes control characters), but a
    partition key comes from config values; the store does not use keys, so a newline in
    one becomes a space rather than splitting the record.
    """
    body = b"\n".join(batch)
    if body.count(b"\n") == max(len(batch) - 1, 0):
        return body
    return b"\n".join(_flatten_key(record) for record in batch)


def _flatten_key(record: bytes) -> bytes:
    event_type, _, rest = record.partition(b"\t")
    key, _, payload = rest.partition(b"\t")
    return b"\t".join((event_type, key.replace(b"\n", b" "), payload))
