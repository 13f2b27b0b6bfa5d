"""Public ``/api/v1`` routes: thin handlers that validate at the edge and call the service."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import orjson
from quart import Quart, Response, g, request
from quart_schema import document_querystring, document_response, tag

from gateway.container import Container
from gateway.context import RequestState
from gateway.errors import AllSourcesFailed
from gateway.responses import JSON, raw_json_response
from gateway.routing import EndpointRoute, concrete_rest, forwarded_params, require_params
from gateway.service import Answer
from schemas.api import CategoryQuery, ErrorBody, SearchQuery, SlugQuery
from schemas.endpoints import ENDPOINTS, EndpointKey, EndpointSpec
from schemas.events import CacheStatus
from schemas.payloads import PAYLOAD_MODELS

_QUERY_MODELS: dict[EndpointKey, type[CategoryQuery]] = {
    EndpointKey.SEARCH: SearchQuery,
    EndpointKey.ANIME_DETAIL: SlugQuery,
    EndpointKey.EPISODE_DETAIL: SlugQuery,
}
_CACHE_SEVERITY = {CacheStatus.HIT: 0, CacheStatus.MISS: 1, CacheStatus.STALE: 2}


def answer_headers(answer: Answer) -> dict[str, str]:
    headers = {
        "X-Source": answer.entry.source_name,
        "X-Fallback-Depth": str(answer.entry.fallback_depth),
        "X-Cache": answer.cache_status.value,
    }
    if answer.cache_status is not CacheStatus.MISS:
        headers["Age"] = str(answer.age_seconds)
    return headers


def register_api(app: Quart, container: Container) -> None:
    """Add one route per catalogue endpoint, documented with its payload and error models."""
    for spec in ENDPOINTS:
        view = _make_view(container, spec)
        view = document_querystring(_QUERY_MODELS.get(spec.key, CategoryQuery))(view)
        view = document_response(PAYLOAD_MODELS[spec.key], 200)(view)
        for status in (400, 404, 429, 503):
            view = document_response(ErrorBody, status)(view)
        view = tag(["public API"])(view)
        rule = spec.path.replace("{day}", "<day>")
        app.add_url_rule(rule, f"api_{spec.key.value}", view, methods=["GET"])


def _make_view(container: Container, spec: EndpointSpec) -> Callable[..., Awaitable[Response]]:
    async def view(day: str | None = None) -> Response:
        return await _serve(container, spec, day)

    view.__name__ = f"api_{spec.key.value.replace('-', '_')}"
    view.__doc__ = (
        f"{spec.summary}.\n\nThe best-ranked valid upstream answer for the category; "
        '`category=all` answers `{"categories": {...}, "errors": {...}}`.'
    )
    return view


async def _serve(container: Container, spec: EndpointSpec, day: str | None) -> Response:
    state: RequestState = g.apicat
    settings = container.settings
    category, params = forwarded_params(
        request.args.items(multi=True),
        max_params=settings.max_query_params,
        max_length=settings.max_param_length,
    )
    table = container.routing
    every_category = category is not None and category.lower() == "all"
    # Category errors come before parameter errors: they tell the client what exists.
    routes = table.routes_for_all(spec) if every_category else [table.resolve(category, spec)]
    rest = concrete_rest(spec, day)
    require_params(spec, params)
    if every_category:
        state.category = "all"
        return await _serve_all(container, state, routes, rest, params)
    (route,) = routes
    state.category = route.category
    answer = await container.service.answer(route, rest, params, state.context)
    state.cache_status = answer.cache_status
    state.source_name = answer.entry.source_name
    state.fallback_depth = answer.entry.fallback_depth
    return raw_json_response(answer.entry.body, headers=answer_headers(answer))


async def _serve_all(
    container: Container,
    state: RequestState,
    routes: Sequence[EndpointRoute],
    rest: str,
    params: Sequence[tuple[str, str]],
) -> Response:
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
    body = b'{"categories":{' + b",".join(parts) + b'},"errors":' + orjson.dumps(errors) + b"}"
    if not parts:
        state.error_code = AllSourcesFailed.code
        failure = {
            "code": AllSourcesFailed.code,
            "message": "no category returned a valid answer",
            "request_id": state.request_id,
            "categories": {},
            "errors": errors,
        }
        return Response(orjson.dumps(failure), status=503, content_type=JSON)
    headers = {name: ", ".join(values) for name, values in header_parts.items()}
    return raw_json_response(body, headers=headers)
