"""Swagger UI at ``/docs`` with its assets served by the registry itself, from the
``swagger-ui-bundle`` package (no CDN: registries often run without internet), as the
runtime does (runtime/openapi.py). Without the package, ``/docs`` links the raw schema."""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = "/docs/static"


def _assets() -> Path | None:
    try:
        import swagger_ui_bundle
    except ImportError:
        return None
    path = Path(swagger_ui_bundle.swagger_ui_path)
    return path if (path / "swagger-ui-bundle.js").is_file() else None


def add_docs(app: FastAPI) -> None:
    """Call on an app created with ``docs_url=None``."""
    assets = _assets()
    if assets is not None:
        app.mount(STATIC, StaticFiles(directory=assets), name="swagger-static")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        title = f"{app.title} - API"
        if assets is None:
            return HTMLResponse(
                f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title>"
                "<p>Swagger UI is not installed here (pip install swagger-ui-bundle);"
                ' the schema is at <a href="/openapi.json">/openapi.json</a>.</p>'
            )
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=title,
            swagger_js_url=f"{STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{STATIC}/favicon-32x32.png",
        )
