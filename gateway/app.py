"""Application factory: ``ApiEdge`` answers ``/api/v1``; Quart serves docs, ops and metrics.

The Quart hooks here give the other routes a request id and JSON errors; the API's edge work
(ids, rate limit, errors, request events) is ``gateway.edge``'s.
"""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version
from typing import cast

from quart import Quart, Response, g, request
from werkzeug.exceptions import HTTPException

from gateway.api import register_api_docs
from gateway.asgi import ASGIApp
from gateway.container import Container
from gateway.context import request_id_from
from gateway.docs import install_docs
from gateway.edge import ApiEdge, edge_headers
from gateway.logs import request_id_var
from gateway.metrics import register_metrics
from gateway.ops import register_ops
from gateway.responses import json_response

log = logging.getLogger("apicat.http")


def _package_version() -> str:
    try:
        return version("apicategorywithfallback")
    except PackageNotFoundError:
        return "0.0.0"


def create_app(container: Container) -> Quart:
    """Build the gateway app around ``container``; closing the app closes the container."""
    app = Quart("apicat")
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    install_docs(app, _package_version())
    register_api_docs(app)
    register_ops(app, container)
    register_metrics(app, container)
    # Quart types its ASGI callables with hypercorn's TypedDict scopes and events, the edge
    # with plain mappings (gateway.asgi); at runtime both are the same dicts.
    quart_asgi = cast("ASGIApp", app.asgi_app)
    app.asgi_app = ApiEdge(container, quart_asgi)  # type: ignore[method-assign,assignment]

    @app.before_request
    async def open_request() -> None:
        wanted = edge_headers(request.scope["headers"])
        g.request_id = request_id_from(wanted.get(b"x-request-id"))
        request_id_var.set(g.request_id)

    @app.after_request
    async def close_request(response: Response) -> Response:
        response.headers["X-Request-Id"] = g.get("request_id", "")
        return response

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(
            status, "http_error"
        )
        body = {
            "code": code,
            "message": error.description or error.name,
            "request_id": g.get("request_id", ""),
        }
        return json_response(body, status)

    @app.errorhandler(Exception)
    async def unexpected_error(error: Exception) -> Response:
        log.exception("unhandled error")
        return json_response(
            {
                "code": "internal_error",
                "message": "the gateway hit an unexpected error; it is logged with this request id",
                "request_id": g.get("request_id", ""),
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
