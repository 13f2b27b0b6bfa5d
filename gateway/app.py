"""Quart application factory: edge hooks (ids, rate limit, request events) and error mapping."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version

from quart import Quart, Response, g, request
from werkzeug.exceptions import HTTPException

from gateway.api import register_api
from gateway.container import Container
from gateway.context import RequestState, request_id_from, trace_id_from
from gateway.docs import install_docs
from gateway.errors import GatewayError, RateLimited
from gateway.logs import request_id_var
from gateway.ops import register_ops
from gateway.ratelimit import client_ip
from gateway.responses import json_response
from schemas.endpoints import API_PREFIX, ENDPOINTS
from schemas.events import RequestEvent

log = logging.getLogger("apicat.http")


def _package_version() -> str:
    try:
        return version("apicategorywithfallback")
    except PackageNotFoundError:
        return "0.0.0"


_EDGE_HEADERS = frozenset({b"x-request-id", b"traceparent", b"x-forwarded-for"})


def _edge_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[bytes, str]:
    """The few request headers the edge reads, in one pass over the ASGI scope."""
    return {name: value.decode("latin-1") for name, value in raw if name.lower() in _EDGE_HEADERS}


def create_app(container: Container) -> Quart:
    """Build the gateway app around ``container``; closing the app closes the container."""
    app = Quart("apicat")
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    install_docs(app, _package_version())
    register_api(app, container)
    register_ops(app, container)
    api_prefix = API_PREFIX + "/"
    valid_endpoints = [spec.path for spec in ENDPOINTS]

    @app.before_request
    async def open_request() -> None:
        wanted = _edge_headers(request.scope["headers"])
        peer = request.remote_addr or ""
        state = RequestState(
            request_id=request_id_from(wanted.get(b"x-request-id")),
            trace_id=trace_id_from(wanted.get(b"traceparent")),
            client_ip=client_ip(peer, wanted.get(b"x-forwarded-for"), container.trusted_proxies),
            instance=container.settings.instance,
        )
        g.apicat = state
        request_id_var.set(state.request_id)
        if request.path.startswith(api_prefix):
            decision = await container.limiter.hit(state.client_ip)
            state.rate = decision
            if not decision.allowed:
                raise RateLimited(
                    f"rate limit of {container.limiter.limit} per client exceeded",
                    retry_after_s=decision.reset_after_s,
                    headers=decision.headers(),
                )

    @app.after_request
    async def close_request(response: Response) -> Response:
        state: RequestState | None = g.get("apicat")
        if state is None:
            return response
        response.headers["X-Request-Id"] = state.request_id
        if state.rate is not None:
            response.headers.update(state.rate.headers())
        if request.path.startswith(api_prefix):
            # build(): every field is typed by construction here; skipping validation keeps
            # the per-request event cheap on the cache-hit path.
            container.emitter.emit(
                RequestEvent.build(
                    request_id=state.request_id,
                    trace_id=state.trace_id,
                    instance=state.instance,
                    category=state.category,
                    endpoint=request.url_rule.rule if request.url_rule else request.path[:200],
                    path=request.path[:200],
                    status=response.status_code,
                    cache_status=state.cache_status,
                    source_name=state.source_name,
                    fallback_depth=state.fallback_depth,
                    latency_ms=state.elapsed_ms(),
                    client_ip=state.client_ip,
                    error_code=state.error_code,
                )
            )
        return response

    @app.errorhandler(GatewayError)
    async def gateway_error(error: GatewayError) -> Response:
        state: RequestState | None = g.get("apicat")
        request_id = state.request_id if state else ""
        if state is not None:
            state.error_code = error.code
        if error.status >= 500:
            log.warning("%s: %s", error.code, error.message)
        return json_response(
            {**error.body(), "request_id": request_id}, error.status, error.headers
        )

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(
            status, "http_error"
        )
        state: RequestState | None = g.get("apicat")
        if state is not None:
            state.error_code = code
        body: dict[str, object] = {
            "code": code,
            "message": error.description or error.name,
            "request_id": state.request_id if state else "",
        }
        if status == 404 and request.path.startswith(api_prefix):
            body["code"] = "unknown_endpoint"
            body["message"] = f"no endpoint {request.path[:200]!r}"
            body["valid_endpoints"] = valid_endpoints
        return json_response(body, status)

    @app.errorhandler(Exception)
    async def unexpected_error(error: Exception) -> Response:
        log.exception("unhandled error")
        state: RequestState | None = g.get("apicat")
        if state is not None:
            state.error_code = "internal_error"
        return json_response(
            {
                "code": "internal_error",
                "message": "the gateway hit an unexpected error; it is logged with this request id",
                "request_id": state.request_id if state else "",
            },
            500,
        )

    @app.before_serving
    async def start_container() -> None:
        await container.start()

    @app.after_serving
    async def close_container() -> None:
        await container.aclose()

    return app
