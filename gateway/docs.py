"""OpenAPI document and the interactive docs page, with Swagger UI assets served locally."""

from __future__ import annotations

from quart import Quart, Response, abort, send_file
from quart_schema import QuartSchema, hide
from quart_schema.openapi import Info
from swagger_ui_bundle import swagger_ui_path

_ASSET_PREFIX = "/docs/assets"
_ASSETS = frozenset({"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"})


def install_docs(app: Quart, version: str) -> None:
    """Serve ``/openapi.json`` and ``/docs``; the docs page needs no internet access."""
    app.config["QUART_SCHEMA_SWAGGER_JS_URL"] = f"{_ASSET_PREFIX}/swagger-ui-bundle.js"
    app.config["QUART_SCHEMA_SWAGGER_CSS_URL"] = f"{_ASSET_PREFIX}/swagger-ui.css"
    QuartSchema(
        app,
        openapi_path="/openapi.json",
        swagger_ui_path="/docs",
        redoc_ui_path=None,
        scalar_ui_path=None,
        info=Info(
            title="apicategorywithfallback",
            version=version,
            description=(
                "Category API gateway: every answer is the best-ranked valid upstream answer, "
                "with fallback chains, caching of valid data only, and stale answers as a last "
                "resort. Pass `category=<name>` or `category=all` on every /api/v1 endpoint."
            ),
        ),
    )

    # QuartSchema wraps make_response to convert pydantic return values on every response;
    # our views return finished Responses, so drop the wrapper from the hot path.
    if "make_response" in vars(app):
        del app.make_response

    @app.get(f"{_ASSET_PREFIX}/<name>")
    @hide
    async def docs_asset(name: str) -> Response:
        if name not in _ASSETS:
            abort(404)
        return await send_file(swagger_ui_path / name, cache_timeout=86_400)
