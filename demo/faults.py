"""Payload fault injection for the fake upstreams, and their cached JSON body renderer."""

from __future__ import annotations

import copy
import enum
import functools

import orjson

from demo.data import DAYS_ID, Record, generate_payload
from schemas.endpoints import EndpointKey

PLACEHOLDER_TEXT = "N/A"


class PayloadVariant(enum.StrEnum):
    """A well-formed answer or one of the data faults a scraping upstream produces."""

    VALID = "valid"
    INVALID_SCHEMA = "invalid_schema"
    LOW_CONFIDENCE = "low_confidence"
    PLACEHOLDER = "placeholder"


def _main_record(payload: Record, endpoint: EndpointKey) -> Record:
    """The record a fault lands in: the first list item, or the payload for detail pages."""
    if endpoint in (EndpointKey.ANIME_DETAIL, EndpointKey.EPISODE_DETAIL):
        return payload
    if endpoint is EndpointKey.HOME:
        container: object = payload["top10"]
    elif endpoint is EndpointKey.JADWAL_RILIS:
        container = next(iter(payload["data"].values()))  # type: ignore[attr-defined]
    else:
        container = payload["data"]
    first: Record = container[0]  # type: ignore[index]
    return first


def apply_variant(payload: Record, endpoint: EndpointKey, variant: PayloadVariant) -> Record:
    """Return a copy of ``payload`` with the data fault ``variant`` injected.

    ``invalid_schema`` drops a required field (``url``; on episode-detail every
    ``streaming_url``), ``placeholder`` turns the title into ``N/A`` and the cover into a
    placeholder image, ``low_confidence`` sets ``confidence_score`` to 0.1.

    Args:
        payload: a valid payload from :func:`generate_payload` (left untouched).
        endpoint: the endpoint it belongs to.
        variant: the fault to inject.

    Returns:
        The faulty copy (or ``payload`` itself for ``valid``).
    """
    if variant is PayloadVariant.VALID:
        return payload
    faulty = copy.deepcopy(payload)
    if variant is PayloadVariant.LOW_CONFIDENCE:
        faulty["confidence_score"] = 0.1
        return faulty
    record = _main_record(faulty, endpoint)
    if variant is PayloadVariant.INVALID_SCHEMA:
        if endpoint is EndpointKey.EPISODE_DETAIL:
            for server in faulty["streaming_servers"]:  # type: ignore[attr-defined]
                del server["streaming_url"]
        else:
            del record["url"]
        return faulty
    title_key = "judul" if "judul" in record else "title"
    record[title_key] = PLACEHOLDER_TEXT
    for cover_key in ("cover", "cover_url", "thumbnail_url"):
        if cover_key in record:
            base = str(record[cover_key]).split("/images/")[0]
            record[cover_key] = f"{base}/images/no-image-placeholder.png"
    return faulty


@functools.lru_cache(maxsize=4096)
def render_body(
    endpoint: EndpointKey,
    source_name: str,
    params: tuple[tuple[str, str], ...],
    day_number: int | None,
    seed: int,
    variant: PayloadVariant,
) -> bytes:
    """Encoded JSON body for a request, cached (bounded LRU) because benchmarks repeat them.

    Args:
        endpoint: which endpoint.
        source_name: the fake upstream.
        params: from :func:`used_params`, so irrelevant query parameters share an entry.
        day_number: from :func:`day_index` for ``jadwal-rilis/{day}``, else ``None``.
        seed: the source's seed.
        variant: a valid body or one of the data faults.

    Returns:
        The body bytes; treat as immutable.
    """
    day = DAYS_ID[day_number] if day_number is not None else None
    payload = generate_payload(endpoint, source_name, dict(params), day, seed)
    return orjson.dumps(apply_variant(payload, endpoint, variant))
