"""Templates, request context, responses and HTML error pages of the dashboard.

Templates and static files live in ``web/`` at the repository root. Installed, that folder
is the package ``jubako.web`` (setup.py maps it next to ``jubako.registry``), so the same
relative path finds it in a checkout, an editable install and a wheel.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
import yaml
from fastapi import HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute

from jubako import __version__
from jubako.errors import JubakoError

from ..errors import status_of
from ..state import Registry
from .session import COOKIE, MAX_AGE_S, SessionData, Viewer, sign, signing_key, unsign, viewer_of

WEB = Path(__file__).resolve().parents[2] / "web"
PREFIX = "/ui"
SECURITY_HEADERS = {
    # No inline script or style anywhere: an injected tag cannot run.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none';"
        " object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def human_size(n: int | None) -> str:
    if n is None:
        return ""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def fmt_dt(value: datetime | str | None) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def iso(value: datetime | None) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds") if value else ""


def short_digest(d: str) -> str:
    return d.split(":", 1)[-1][:12]


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(WEB / "templates"),
        autoescape=True,  # every page: names, labels, statuses are untrusted
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        size=human_size,
        dt=fmt_dt,
        iso=iso,
        short=short_digest,
        q=lambda s: quote(str(s), safe=""),
        tojson_pretty=lambda v: json.dumps(v, indent=2, sort_keys=True, default=str),
        toyaml=lambda v: yaml.safe_dump(v, sort_keys=False, allow_unicode=True),
    )
    env.globals.update(version=__version__, prefix=PREFIX)
    return env


ENV = _env()


class LoginRequired(Exception):
    pass


class PageError(Exception):
    def __init__(self, status: int, message: str, title: str = ""):
        super().__init__(message)
        self.status, self.message, self.title = status, message, title


class Ctx:
    """One dashboard request: the registry, the session cookie, the viewer."""

    def __init__(self, request: Request):
        self.request = request
        self.reg: Registry = request.app.state.registry
        self.key = signing_key(self.reg.settings.effective_secret_key)
        raw = request.cookies.get(COOKIE)
        data = unsign(self.key, raw) if raw else None
        loaded = SessionData.load(data) if data else None
        self.dirty = loaded is None
        self.session = loaded or SessionData()
        self.viewer: Viewer | None = None
        self.clear_cookie = False

    @classmethod
    def of(cls, request: Request) -> Ctx:
        ctx = getattr(request.state, "dash", None)
        if ctx is None:
            ctx = request.state.dash = cls(request)
        return ctx

    @property
    def client(self) -> str:
        return self.request.client.host if self.request.client else ""

    def load_viewer(self) -> Viewer | None:
        with self.reg.sessions() as db:
            self.viewer = viewer_of(db, self.session)
        return self.viewer

    def require(self, scope: str = "read") -> Viewer:
        v = self.viewer or self.load_viewer()
        if v is None:
            raise LoginRequired()
        if not v.can(scope):
            raise PageError(403, f"This page needs the {scope} scope; you have {v.scope}.",
                            "Not allowed")
        return v

    def check_csrf(self, given: str | None) -> None:
        if not self.session.check_csrf(given):
            raise PageError(
                403,
                "The form's CSRF token is missing or does not match this session."
                " Reload the page and try again.",
                "Request refused",
            )

    def flash(self, level: str, message: str) -> None:
        self.session.flash.append([level, message])
        self.dirty = True

    def new_session(self, **kw: Any) -> None:
        self.session = SessionData(**kw)
        self.dirty = True

    def finish(self, response: Response) -> Response:
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        secure = self.request.url.scheme == "https" or self.reg.settings.public_url.startswith(
            "https://"
        )
        if self.dirty:
            response.set_cookie(
                COOKIE,
                sign(self.key, self.session.dump()),
                max_age=MAX_AGE_S,
                path=PREFIX,
                httponly=True,
                samesite="lax",
                secure=secure,
            )
        return response

    # --- responses ---------------------------------------------------------------------

    def render(self, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        flashes = self.session.flash
        if flashes:
            self.session.flash = []
            self.dirty = True
        body = ENV.get_template(template).render(
            request=self.request,
            viewer=self.viewer,
            csrf=self.session.csrf,
            flashes=flashes,
            nav=values.pop("nav", ""),
            url=self.url,
            **values,
        )
        return self.finish(HTMLResponse(body, status_code=status))  # type: ignore[return-value]

    def redirect(self, path: str) -> Response:
        return self.finish(RedirectResponse(path, status_code=303))

    def url(self, path: str, **params: Any) -> str:
        """``/ui`` + path, with the non-empty query parameters."""
        q = {k: v for k, v in params.items() if v not in (None, "", False)}
        return PREFIX + path + ("?" + urlencode(q, doseq=True) if q else "")


def _error_page(request: Request, status: int, title: str, message: str) -> Response:
    ctx = Ctx.of(request)
    if ctx.viewer is None:
        try:
            ctx.load_viewer()
        except Exception:  # noqa: BLE001 - an error page must not fail on the database
            ctx.viewer = None
    return ctx.render("error.html", status=status, title=title, message=message)


class HtmlRoute(APIRoute):
    """Errors inside a dashboard page become HTML pages (or the login redirect)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except LoginRequired:
                ctx = Ctx.of(request)
                target = request.url.path
                if request.url.query:
                    target += "?" + request.url.query
                if request.method != "GET":
                    target = ""
                return ctx.redirect(ctx.url("/login", next=target))
            except PageError as e:
                return _error_page(request, e.status, e.title or "Error", e.message)
            except JubakoError as e:
                status = status_of(e)
                titles = {404: "Not found", 409: "Conflict", 403: "Not allowed"}
                return _error_page(request, status, titles.get(status, "Error"), str(e))
            except RequestValidationError as e:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in err.get('loc', ())[1:])}: {err.get('msg')}"
                    for err in e.errors()
                )
                return _error_page(request, 404 if "path" in str(e.errors()) else 400,
                                   "Bad request", problems or "invalid request")
            except HTTPException as e:
                return _error_page(request, e.status_code, "Error", str(e.detail))

        return route


def safe_next(target: str | None) -> str:
    """Only dashboard paths on this host (no open redirect)."""
    if target and target.startswith(PREFIX + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return PREFIX + "/bentos"
