"""The ``/api/v1`` edge: a lean ASGI layer in front of Quart that answers every public API call.

Quart's per-request machinery (request and app contexts, hook dispatch, werkzeug headers and
responses) is a large part of a cache hit's cost: on uvicorn a bare ASGI answer runs ~6x the
requests/s of a bare Quart view on this machine (22,900 vs 3,500). The API needs little of it,
so ``ApiEdge`` does the API's edge work itself, once per request and in this order:

1. request id (client's ``X-Request-Id`` if well-formed) and trace id (``traceparent``);
2. client address (trusted-proxy ``X-Forwarded-For``) and the rate limit (429);
3. method (``GET``/``HEAD``; ``OPTIONS`` lists them; others 405) and endpoint (404);
4. ``gateway.api.answer_endpoint``; a ``GatewayError`` becomes its JSON body, anything else
   a logged 500 — the process never fails a request without answering it;
5. the answer with ``X-Request-Id`` and ``RateLimit-*``, then the ``request`` event.

Everything else (``/docs``, ``/openapi.json``, ``/livez``, ``/readyz``, ``/health``...) and the
ASGI lifespan go to the wrapped Quart app. Install with ``app.asgi_app = ApiEdge(...)``, the
middleware hook Quart documents, so Quart's test client takes the same path as the server.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from urllib.parse import parse_qsl

import orjson

from gateway.api import (
    VALID_ENDPOINTS,
    ApiResponse,
    answer_endpoint,
    is_api_path,
    match_endpoint,
)
from gateway.asgi import ASGIApp, Message, Receive, Scope, Send
from gateway.container import Container
from gateway.context import RequestState, request_id_from, trace_id_from
from gateway.errors import (
    GatewayError,
    InvalidParameter,
    MethodNotAllowed,
    RateLimited,
    UnknownEndpoint,
)
from gateway.logs import request_id_var
from gateway.ratelimit import client_ip
from schemas.endpoints import EndpointSpec
from schemas.events import RequestEvent

log = logging.getLogger("apicat.http")

_EDGE_HEADERS = frozenset({b"x-request-id", b"traceparent", b"x-forwarded-for"})
_ALLOWED_METHODS = "GET, HEAD, OPTIONS"
_JSON_HEADER = (b"content-type", b"application/json")


def edge_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[bytes, str]:
    """The few request headers the edge reads, in one pass over the ASGI scope."""
    return {name: value.decode("latin-1") for name, value in raw if name.lower() in _EDGE_HEADERS}


def query_pairs(raw: bytes, max_fields: int) -> list[tuple[str, str]]:
    """Decode a raw query string (UTF-8, invalid bytes replaced) of at most ``max_fields``.

    The bound keeps the parsing work of a hostile query string small; the precise per-name
    and per-count rules are ``gateway.routing.forwarded_params``'s.
    """
    if not raw:
        return []
    if raw.count(b"&") >= max_fields:
        raise InvalidParameter(f"the query string has more than {max_fields} fields", parameter="")
    # latin-1 maps bytes 1:1 to characters, so percent-decoding yields the original bytes,
    # which are then read as UTF-8 whether the client percent-encoded them or not.
    pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True, encoding="latin-1")
    return [
        (
            name.encode("latin-1").decode("utf-8", "replace"),
            value.encode("latin-1").decode("utf-8", "replace"),
        )
        for name, value in pairs
    ]


def _latin1(value: str) -> bytes:
    # Header values are latin-1 on the wire; a config-supplied name outside it must not 500.
    return value.encode("latin-1", "replace")


class ApiEdge:
    """ASGI middleware answering ``/api/v1``; see the module docstring."""

    def __init__(self, container: Container, app: ASGIApp) -> None:
        self._container = container
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_api_path(scope["path"]):
            await self._app(scope, receive, send)
            return
        await self._serve(scope, send)

    async def _serve(self, scope: Scope, send: Send) -> None:
        container = self._container
        wanted = edge_headers(scope["headers"])
        client = scope.get("client")  # optional in the ASGI spec
        peer = client[0] if client else ""
        state = RequestState(
            request_id=request_id_from(wanted.get(b"x-request-id")),
            trace_id=trace_id_from(wanted.get(b"traceparent")),
            client_ip=client_ip(peer, wanted.get(b"x-forwarded-for"), container.trusted_proxies),
            instance=container.settings.instance,
        )
        request_id_var.set(state.request_id)
        path = scope["path"]
        matched = match_endpoint(path)
        try:
            response = await self._answer(state, scope, matched)
        except GatewayError as error:
            state.error_code = error.code
            if error.status >= 500:
                log.warning("%s: %s", error.code, error.message)
            body = {**error.body(), "request_id": state.request_id}
            response = ApiResponse(error.status, orjson.dumps(body), error.headers)
        except Exception:
            log.exception("unhandled error")
            state.error_code = "internal_error"
            body = {
                "code": "internal_error",
                "message": "the gateway hit an unexpected error; it is logged with this request id",
                "request_id": state.request_id,
            }
            response = ApiResponse(500, orjson.dumps(body), {})
        try:
            await self._send(scope, send, state, response)
        finally:
            # After the answer is on its way: the event costs the client nothing.
            container.emitter.emit(
                RequestEvent.build(
                    request_id=state.request_id,
                    trace_id=state.trace_id,
                    instance=state.instance,
                    category=state.category,
                    endpoint=matched[0].path if matched else path[:200],
                    path=path[:200],
                    status=response.status,
                    cache_status=state.cache_status,
                    source_name=state.source_name,
                    fallback_depth=state.fallback_depth,
                    latency_ms=state.elapsed_ms(),
                    client_ip=state.client_ip,
                    error_code=state.error_code,
                )
            )

    async def _answer(
        self, state: RequestState, scope: Scope, matched: tuple[EndpointSpec, str | None] | None
    ) -> ApiResponse:
        container = self._container
        decision = await container.limiter.hit(state.client_ip)
        state.rate = decision
        if not decision.allowed:
            raise RateLimited(
                f"rate limit of {container.limiter.limit} per client exceeded",
                retry_after_s=decision.reset_after_s,
                headers=decision.headers(),
            )
        if matched is None:
            raise UnknownEndpoint(
                f"no endpoint {scope['path'][:200]!r}", valid_endpoints=list(VALID_ENDPOINTS)
            )
        method = scope["method"]
        if method == "OPTIONS":
            return ApiResponse(200, b"", {"Allow": _ALLOWED_METHODS})
        if method not in ("GET", "HEAD"):
            raise MethodNotAllowed(
                f"method {method[:20]} is not allowed; use GET", allowed=_ALLOWED_METHODS
            )
        spec, day = matched
        settings = container.settings
        # Generous bound: forwarded_params applies the exact count with its own message.
        query = query_pairs(scope["query_string"], 2 * (settings.max_query_params + 1))
        return await answer_endpoint(container, state, spec, day, query)

    @staticmethod
    async def _send(scope: Scope, send: Send, state: RequestState, response: ApiResponse) -> None:
        headers = [
            _JSON_HEADER,
            (b"content-length", str(len(response.body)).encode()),
            (b"x-request-id", state.request_id.encode()),
        ]
        headers += [(name.encode(), _latin1(value)) for name, value in response.headers.items()]
        if state.rate is not None and state.rate.allowed:
            headers += [
                (name.encode(), value.encode()) for name, value in state.rate.headers().items()
            ]
        start: Message = {
            "type": "http.response.start",
            "status": response.status,
            "headers": headers,
        }
        await send(start)
        body: Message = {
            "type": "http.response.body",
            "body": b"" if scope["method"] == "HEAD" else response.body,
            "more_body": False,
        }
        await send(body)
