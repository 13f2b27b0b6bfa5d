"""Public ``/api/v1`` handlers: validate the query, ask the service, shape the answer.

``gateway.edge.ApiEdge`` calls :func:`answer_endpoint` for every API request; nothing here
knows about ASGI or Quart. :func:`register_api_docs` adds the same routes to the Quart app
only so that quart-schema documents them in ``/openapi.json`` and ``/docs``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

import orjson
from quart import Quart, Response
from quart_schema import document_querystring, document_response, tag

from gateway.container import Container
from gateway.context import RequestState
from gateway.errors import AllSourcesFailed
from gateway.routing import EndpointRoute, concrete_rest, forwarded_params, require_params
from gateway.service import Answer
from schemas.api import CategoryQuery, ErrorBody, SearchQuery, SlugQuery
from schemas.endpoints import API_PREFIX, ENDPOINTS, EndpointKey, EndpointSpec
from schemas.events import CacheStatus
from schemas.payloads import PAYLOAD_MODELS

_QUERY_MODELS: dict[EndpointKey, type[CategoryQuery]] = {
    EndpointKey.SEARCH: SearchQuery,
    EndpointKey.ANIME_DETAIL: SlugQuery,
    EndpointKey.EPISODE_DETAIL: SlugQuery,
}
_CACHE_SEVERITY = {CacheStatus.HIT: 0, CacheStatus.MISS: 1, CacheStatus.STALE: 2}
_STATIC_PATHS = {spec.path: spec for spec in ENDPOINTS if "{day}" not in spec.path}
_DAY_SPEC = next(spec for spec in ENDPOINTS if "{day}" in spec.path)
_DAY_PREFIX = _DAY_SPEC.path.removesuffix("{day}")
VALID_ENDPOINTS = tuple(spec.path for spec in ENDPOINTS)


@dataclass(frozen=True, slots=True)
class ApiResponse:
    """A finished API answer: the body is JSON bytes (cached upstream JSON is not re-encoded)."""

    status: int
    body: bytes
    headers: dict[str, str]


def is_api_path(path: str) -> bool:
    """``/api/v1`` itself or anything under it (not ``/api/v10``)."""
    return path.startswith(API_PREFIX) and path[len(API_PREFIX) : len(API_PREFIX) + 1] in ("", "/")


def match_endpoint(path: str) -> tuple[EndpointSpec, str | None] | None:
    """The endpoint a request path names and its ``{day}`` segment, or ``None`` (404)."""
    spec = _STATIC_PATHS.get(path)
    if spec is not None:
        return spec, None
    if path.startswith(_DAY_PREFIX):
        day = path[len(_DAY_PREFIX) :]
        if day and "/" not in day:
            return _DAY_SPEC, day
    return None


def answer_headers(answer: Answer) -> dict[str, str]:
    headers = {
        "X-Source": answer.entry.source_name,
        "X-Fallback-Depth": str(answer.entry.fallback_depth),
        "X-Cache": answer.cache_status.value,
    }
    if answer.cache_status is not CacheStatus.MISS:
        headers["Age"] = str(answer.age_seconds)
    return headers


async def answer_endpoint(
    container: Container,
    state: RequestState,
    spec: EndpointSpec,
    day: str | None,
    query: Iterable[tuple[str, str]],
) -> ApiResponse:
    """Answer one API call; raises a ``GatewayError`` for every 4xx/5xx the client must see.

    Args:
        container: the process's parts.
        state: this request's state; the handler records category and cache outcome in it.
        spec: the endpoint called.
        day: the ``{day}`` path segment, for ``/jadwal-rilis/{day}``.
        query: the decoded query string pairs, in order.
    """
    settings = container.settings
    category, params = forwarded_params(
        query, max_params=settings.max_query_params, max_length=settings.max_param_length
    )
    table = container.routing
    every_category = category is not None and category.lower() == "all"
    # Category errors come before parameter errors: they tell the client what exists.
    routes = table.routes_for_all(spec) if every_category else [table.resolve(category, spec)]
    rest = concrete_rest(spec, day)
    require_params(spec, params)
    if every_category:
        state.category = "all"
        return await _answer_all(container, state, routes, rest, params)
    (route,) = routes
    state.category = route.category
    answer = await container.service.answer(route, rest, params, state.context)
    state.cache_status = answer.cache_status
    state.source_name = answer.entry.source_name
    state.fallback_depth = answer.entry.fallback_depth
    return ApiResponse(200, answer.entry.body, answer_headers(answer))


async def _answer_all(
    container: Container,
    state: RequestState,
    routes: Sequence[EndpointRoute],
    rest: str,
    params: Sequence[tuple[str, str]],
) -> ApiResponse:
    """Answer every category concurrently; 200 when at least one succeeded."""
    results = await asyncio.gather(
        *(container.service.answer(route, rest, params, state.context) for route in routes),
        return_exceptions=True,
    )
    parts: list[bytes] = []
    errors: dict[str, object] = {}
    header_parts: dict[str, list[str]] = {"X-Cache": [], "X-Source": [], "X-Fallback-Depth": []}
    worst = CacheStatus.HIT
    for route, result in zip(routes, results, strict=True):
        name = route.category
        if isinstance(result, AllSourcesFailed):
            errors[name] = {**result.body(), "request_id": state.request_id}
            continue
        if isinstance(result, BaseException):
            raise result
        parts.append(orjson.dumps(name) + b":" + result.entry.body)
        header_parts["X-Cache"].append(f"{name}={result.cache_status.value}")
        header_parts["X-Source"].append(f"{name}={result.entry.source_name}")
        header_parts["X-Fallback-Depth"].append(f"{name}={result.entry.fallback_depth}")
        if _CACHE_SEVERITY[result.cache_status] > _CACHE_SEVERITY[worst]:
            worst = result.cache_status
    state.cache_status = worst if parts else CacheStatus.BYPASS
    if not parts:
        state.error_code = AllSourcesFailed.code
        failure = {
            "code": AllSourcesFailed.code,
            "message": "no category returned a valid answer",
            "request_id": state.request_id,
            "categories": {},
            "errors": errors,
        }
        return ApiResponse(503, orjson.dumps(failure), {})
    body = b'{"categories":{' + b",".join(parts) + b'},"errors":' + orjson.dumps(errors) + b"}"
    return ApiResponse(200, body, {name: ", ".join(v) for name, v in header_parts.items()})


def register_api_docs(app: Quart) -> None:
    """Document one route per catalogue endpoint (payload, query and error models) in Quart.

    ``ApiEdge`` answers ``/api/v1`` before Quart routes a request, so these views never run;
    they exist because quart-schema builds the OpenAPI document from Quart's URL map.
    """
    for spec in ENDPOINTS:
        view = _documented_view(spec)
        view = document_querystring(_QUERY_MODELS.get(spec.key, CategoryQuery))(view)
        view = document_response(PAYLOAD_MODELS[spec.key], 200)(view)
        for status in (400, 404, 429, 503):
            view = document_response(ErrorBody, status)(view)
        view = tag(["public API"])(view)
        rule = spec.path.replace("{day}", "<day>")
        app.add_url_rule(rule, f"api_{spec.key.value}", view, methods=["GET"])


def _documented_view(spec: EndpointSpec) -> Callable[..., Awaitable[Response]]:
    async def view(day: str | None = None) -> Response:
        raise RuntimeError(f"{spec.path} is answered by gateway.edge.ApiEdge, not by Quart")

    view.__name__ = f"api_{spec.key.value.replace('-', '_')}"
    view.__doc__ = (
        f"{spec.summary}.\n\nThe best-ranked valid upstream answer for the category; "
        '`category=all` answers `{"categories": {...}, "errors": {...}}`.'
    )
    return view
