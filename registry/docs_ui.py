"""Swagger UI at ``/docs`` with its assets served by the registry itself (no CDN:
registries often run without internet), as the runtime does (runtime/openapi.py).

FastAPI's schema is OpenAPI 3.1, which Swagger UI renders from version 5 on. The assets
come from the first package found that ships them:

- ``fastapi-offline`` (Swagger UI 5: renders OpenAPI 3.1),
- ``swagger-ui-bundle`` (1.1.0 ships Swagger UI 4.15, which only renders OpenAPI 3.0: the
  page loads but says it cannot render the definition).

Without either, ``/docs`` links the raw schema.
"""

from __future__ import annotations

import html

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from jubako.swagger import assets

STATIC = "/docs/static"


def add_docs(app: FastAPI) -> None:
    """Call on an app created with ``docs_url=None``."""
    found = assets()
    if found is not None:
        app.mount(STATIC, StaticFiles(directory=found[0]), name="swagger-static")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        title = f"{app.title} - API"
        if found is None:
            return HTMLResponse(
                f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title>"
                "<p>Swagger UI is not installed here (pip install fastapi-offline);"
                ' the schema is at <a href="/openapi.json">/openapi.json</a>.</p>'
            )
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=title,
            swagger_js_url=f"{STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{STATIC}/{found[1]}",
        )
