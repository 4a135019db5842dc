"""The registry's web dashboard: server-rendered pages under ``/ui`` (templates and static
files in ``web/``), logged in with an API token or a user name and password."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from .web import PREFIX, WEB


def add_dashboard(app: FastAPI) -> None:
    from . import views

    app.mount(f"{PREFIX}/static", StaticFiles(directory=WEB / "static"), name="dashboard-static")
    app.include_router(views.router)
    app.include_router(views.api)
    app.include_router(views.repos)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/", status_code=307)

    @app.get(PREFIX, include_in_schema=False)
    def ui_root() -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/", status_code=307)
