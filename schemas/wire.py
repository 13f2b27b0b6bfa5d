"""The wire record of one event: ``<type> TAB <partition key> TAB <event JSON>``, as bytes.

Transports route by type (Kafka topic, store table) and key (Kafka partition) without parsing
the JSON; the journal stores the same bytes. Keys keep per-source order: attempts, validation
failures and probes of one source land on one partition.
"""

from __future__ import annotations

from schemas.events import (
    CircuitChangeEvent,
    ConfigChangeEvent,
    EventEnvelope,
    HealthProbeEvent,
    RequestEvent,
    UpstreamAttemptEvent,
    ValidationFailureEvent,
)

TOPIC_PREFIX = "apicat.events."
DEAD_LETTER_SUFFIX = "dlq"


class MalformedRecord(ValueError):
    """Bytes that are not ``type TAB key TAB json``."""


def partition_key(event: EventEnvelope) -> str:
    if isinstance(event, UpstreamAttemptEvent | ValidationFailureEvent | HealthProbeEvent):
        return event.source_name
    if isinstance(event, RequestEvent):
        return event.category
    if isinstance(event, CircuitChangeEvent):
        return event.upstream_url
    if isinstance(event, ConfigChangeEvent):
        return event.target
    return event.event_id


def encode_record(event: EventEnvelope) -> bytes:
    event_type: str = getattr(event, "type", "unknown")
    head = f"{event_type}\t{partition_key(event)}\t".encode()
    return head + event.__pydantic_serializer__.to_json(event)


def decode_record(record: bytes) -> tuple[str, bytes, bytes]:
    """Split a record into (type, key, JSON payload)."""
    event_type, sep1, rest = record.partition(b"\t")
    key, sep2, payload = rest.partition(b"\t")
    if not sep1 or not sep2 or not event_type:
        raise MalformedRecord("record is not 'type<TAB>key<TAB>json'")
    return event_type.decode("ascii", "replace"), key, payload


def topic_for(event_type: str, prefix: str = TOPIC_PREFIX) -> str:
    return prefix + event_type


def dead_letter_topic(prefix: str = TOPIC_PREFIX) -> str:
    return prefix + DEAD_LETTER_SUFFIX
