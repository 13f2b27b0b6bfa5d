"""Kafka event transport (aiokafka): idempotent, acks=all, one topic per event type.

A batch counts as delivered only when the broker acknowledged every record of it. Any failure
raises ``TransportError`` and the emitter journals the batch. One producer lives as long as
the process: aiokafka reconnects by itself when the broker comes back (stopping a producer
while the broker is down would wait on its undeliverable batches and leak it). Records of a
timed-out batch may still be delivered later by the producer's own retries, and the journal
replays them too: consumers drop the duplicate by ``event_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from gateway.emitter import TransportError
from schemas.wire import TOPIC_PREFIX, MalformedRecord, decode_record, topic_for

_START_TIMEOUT_S = 10.0
_SEND_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 5.0


class KafkaTransport:
    """Sends records to ``<prefix><type>`` (default ``apicat.events.<type>``) by partition key."""

    name = "kafka"

    def __init__(
        self, bootstrap_servers: str, client_id: str, topic_prefix: str = TOPIC_PREFIX
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._client_id = client_id
        self._prefix = topic_prefix
        self._producer: AIOKafkaProducer | None = None

    async def _started(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            client_id=self._client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=20,
            max_batch_size=256 * 1024,
            compression_type="lz4",
            request_timeout_ms=15_000,
            retry_backoff_ms=200,
        )
        try:
            async with asyncio.timeout(_START_TIMEOUT_S):
                await producer.start()
        except (KafkaError, OSError, TimeoutError) as exc:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise TransportError(f"cannot reach Kafka at {self._bootstrap}: {exc!r}") from exc
        self._producer = producer
        return producer

    async def send(self, batch: Sequence[bytes]) -> None:
        producer = await self._started()
        try:
            async with asyncio.timeout(_SEND_TIMEOUT_S):
                pending = []
                for record in batch:
                    try:
                        event_type, key, payload = decode_record(record)
                    except MalformedRecord:
                        continue  # cannot happen for records we encoded; never block on one
                    pending.append(
                        await producer.send(topic_for(event_type, self._prefix), payload, key=key)
                    )
                await asyncio.gather(*pending)
        except (KafkaError, OSError, TimeoutError) as exc:
            raise TransportError(f"Kafka send failed: {exc!r}") from exc

    async def aclose(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            # Bounded: with the broker down, stop() would wait for batches forever; the
            # emitter has journaled them already.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_STOP_TIMEOUT_S):
                    await producer.stop()
