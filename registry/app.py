"""The registry's FastAPI application.

``create_app`` wires settings, database, storage and routes; the dashboard (and anything
else) adds its routers to the returned app, whose ``state.registry`` holds the shared state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from jubako import __version__
from jubako.errors import JubakoError

from . import auth, migrate
from .api.gate import ApiGate
from .api.routes import (
    admin,
    archive_upload,
    blobs,
    deployments,
    health,
    tokens,
    uploads,
    versions,
)
from .config import Settings, load
from .db.session import make_engine, make_sessionmaker
from .docs_ui import add_docs
from .domain import sweeper
from .errors import Conflict, status_of
from .metrics import Metrics
from .ratelimit import FailureLimiter
from .state import Registry
from .storage import Storage, from_settings

log = logging.getLogger("jubako.registry")


def api_router() -> APIRouter:
    api = APIRouter()
    api.include_router(versions.make_router("bento"))
    api.include_router(versions.make_router("model"))
    api.include_router(uploads.router)
    api.include_router(archive_upload.router)
    api.include_router(blobs.router)
    api.include_router(deployments.router)
    api.include_router(tokens.router)
    api.include_router(admin.router)
    return api


def open_registry(settings: Settings, storage: Storage | None = None) -> Registry:
    if settings.embedded:
        settings.data_dir.expanduser().mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.db_url)
    storage = storage or from_settings(settings)
    spool = getattr(storage, "uploads", None) or settings.data_dir.expanduser() / "spool"
    return Registry(
        settings=settings,
        engine=engine,
        sessions=make_sessionmaker(engine),
        storage=storage,
        metrics=Metrics(),
        spool_dir=Path(spool),
        auth_failures=FailureLimiter(settings.auth_max_failures, settings.auth_failure_window_s),
    )


def prepare(reg: Registry, *, migrate_now: bool | None = None, announce=print) -> None:  # type: ignore[no-untyped-def]
    """Check (or bring up) the schema and create the first admin token if there is none."""
    s = reg.settings
    if migrate_now if migrate_now is not None else s.should_migrate:
        migrate.upgrade(reg.engine)
    migrate.check(reg.engine)
    with reg.sessions() as db:
        if auth.has_tokens(db):
            return
        if s.bootstrap_token:
            auth.create_token(
                db, user_name="admin", scope="admin", name="bootstrap", secret=s.bootstrap_token
            )
            db.commit()
        elif s.embedded:
            _tok, plain = auth.create_token(db, user_name="admin", scope="admin", name="initial")
            db.commit()
            announce(
                f"jubako registry: initial admin token (shown once, keep it): {plain}",
                file=sys.stderr,
            )


async def _sweeper(reg: Registry) -> None:
    s = reg.settings
    while True:
        await asyncio.sleep(s.sweep_interval_s)

        def run() -> dict[str, int]:
            with reg.sessions() as db:
                return sweeper.sweep(
                    db, reg.storage, upload_timeout_s=s.upload_timeout_s, gc_grace_s=s.gc_grace_s
                )

        try:
            res = await run_in_threadpool(run)
            for what, n in res.items():
                reg.metrics.swept.labels(what).inc(n)
            if any(res.values()):
                log.info("sweep: %s", res)
        except Exception:  # noqa: BLE001 - keep sweeping
            log.exception("sweep failed")


class MetricsMiddleware:
    """Counts requests by route template; pure ASGI so bodies stream untouched."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = [500]

        def route() -> str:
            return getattr(scope.get("route"), "path", "unmatched")

        async def send_wrapper(message):  # type: ignore[no-untyped-def]
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                # Counted before the client can see the response, so a following scrape has it.
                self.metrics.requests.labels(scope["method"], route(), str(status[0])).inc()
            await send(message)

        start = time.perf_counter()
        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.in_flight.dec()
            self.metrics.latency.labels(scope["method"], route()).observe(
                time.perf_counter() - start
            )


def create_app(
    settings: Settings | None = None,
    *,
    storage: Storage | None = None,
    migrate_now: bool | None = None,
    sweeper: bool = True,
    dashboard: bool = True,
) -> FastAPI:
    settings = settings or load()
    reg = open_registry(settings, storage)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(prepare, reg, migrate_now=migrate_now)
        task = None
        if sweeper and settings.sweep_interval_s > 0:
            task = asyncio.create_task(_sweeper(reg))
        try:
            yield
        finally:
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            reg.engine.dispose()

    app = FastAPI(
        title="jubako registry",
        version=__version__,
        description="Bentos and models: push, pull, list, delete. Tokens: `Authorization: Bearer`.",
        lifespan=lifespan,
        docs_url=None,  # served by add_docs, with local assets
        redoc_url=None,
    )
    app.state.registry = reg

    @app.exception_handler(JubakoError)
    async def jubako_error(request: Request, exc: JubakoError) -> JSONResponse:
        body = {"detail": str(exc)}
        if isinstance(exc, Conflict):
            body.update(exc.extra)
        return JSONResponse(body, status_code=status_of(exc))

    app.include_router(health.router)
    app.include_router(api_router())
    add_docs(app)
    if dashboard:
        from .dashboard import add_dashboard

        add_dashboard(app)
    app.add_middleware(ApiGate, registry=reg)  # tokens and body caps before any body is read
    app.add_middleware(MetricsMiddleware, metrics=reg.metrics)  # outermost: counts refusals too
    return app
