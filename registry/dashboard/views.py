"""Dashboard pages under ``/ui``. Every handler goes through ``Ctx``: the session cookie,
the viewer's scope check, the CSRF check of every POST, and the same service functions
(and audit events) as the REST API."""

from __future__ import annotations

import re
from typing import Annotated

import yaml
from fastapi import APIRouter, Form, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import func, select

from jubako.errors import JubakoError
from jubako.manifest import STATIC_ROUTE, parse_manifest
from jubako.tags import NAME_PATTERN, VERSION_PATTERN

from .. import auth
from ..api.archives import archive_response
from ..api.routes.archive_upload import parse_labels, receive_and_push
from ..db.models import KINDS, Token, Upload, User, Version, utcnow
from ..domain import blobs, manifests
from ..domain import queries as read
from ..domain import versions as edits
from ..domain.audit import Caller, audit
from ..errors import BadRequest, status_of
from . import queries
from .session import password_fingerprint
from .web import PREFIX, Ctx, HtmlRoute, PageError, safe_next

router = APIRouter(prefix=PREFIX, route_class=HtmlRoute, include_in_schema=False)
api = APIRouter(prefix=PREFIX, include_in_schema=False)  # JSON answers (the upload)
# /{plural}/... after the fixed paths (/push, /tokens...), which it would otherwise shadow.
repos = APIRouter(prefix=PREFIX, route_class=HtmlRoute, include_in_schema=False)

KindP = Annotated[str, Path(pattern="^(bento|model)s$")]
NameP = Annotated[str, Path(pattern=f"^{NAME_PATTERN}$", max_length=63)]
VersionP = Annotated[str, Path(pattern=f"^(?:{VERSION_PATTERN})$", max_length=63)]
Text = Annotated[str, Query(max_length=256)]
CsrfF = Annotated[str, Form()]
PageN = Annotated[int, Query(ge=1, le=1_000_000)]
PER_PAGE = 25
FILES_PER_PAGE = 100


def _kind(plural: str) -> str:
    kind = plural[:-1]
    assert kind in KINDS
    return kind


def registry_url(ctx: Ctx) -> str:
    return ctx.reg.settings.public_url.rstrip("/") or str(ctx.request.base_url).rstrip("/")


# --- login -----------------------------------------------------------------------------


@router.get("/")
def home(request: Request) -> Response:
    ctx = Ctx.of(request)
    return ctx.redirect(ctx.url("/bentos"))


@router.get("/login")
def login_page(request: Request, next: Text = "") -> Response:  # noqa: A002
    ctx = Ctx.of(request)
    if ctx.load_viewer() is not None:
        return ctx.redirect(safe_next(next))
    return ctx.render("login.html", next=next, error="", user="", method="token")


@router.post("/login")
def login(
    request: Request,
    csrf: CsrfF = "",
    method: Annotated[str, Form()] = "token",
    token: Annotated[str, Form()] = "",
    user: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",  # noqa: A002
) -> Response:
    ctx = Ctx.of(request)
    ctx.check_csrf(csrf)
    user, token = user.strip(), token.strip()
    # Failed logins are limited per address, and password logins per user name too.
    keys = [f"addr:{ctx.client}"] + ([f"user:{user}"] if method == "password" and user else [])
    limiter = ctx.reg.auth_failures
    wait = limiter.retry_after(*keys)
    if wait:
        page = ctx.render("login.html", status=429, next=next, user=user, method=method,
                          error=f"Too many failed logins; try again in {wait} s.")
        page.headers["Retry-After"] = str(wait)
        return page
    with ctx.reg.sessions() as db:
        if method == "password":
            # A NUL byte or an overlong name cannot be a user (PostgreSQL refuses NUL).
            valid = user and len(user) <= 128 and "\x00" not in user
            u = auth.check_password(db, user, password) if valid else None
            if u is not None:
                ctx.new_session(user_id=u.id, pw=password_fingerprint(u))
                audit(db, Caller(u.name, None, u.scope or "", ctx.client),
                              "dashboard.login", f"user {u.name}", method="password")
                db.commit()
                return ctx.redirect(safe_next(next))
            error = "Unknown user name or wrong password (or no password login for this user)."
        else:
            tok = auth.authenticate(db, token) if token else None
            if tok is not None:
                ctx.new_session(token_id=tok.id)
                audit(db, Caller(tok.user.name, tok.id, tok.scope, ctx.client),
                              "dashboard.login", f"token {tok.id}", method="token")
                db.commit()
                return ctx.redirect(safe_next(next))
            error = "This token is unknown, expired or revoked."
        if user or token:  # an empty form guesses nothing
            limiter.failed(*keys)
            shown = user.replace("\x00", "")[:100] if method == "password" else ""
            audit(db, Caller(shown or "anonymous", None, "", ctx.client),
                          "dashboard.login.failed", f"user {shown}" if shown else "token",
                          method="password" if method == "password" else "token")
            db.commit()
    return ctx.render("login.html", status=401, next=next, error=error, user=user, method=method)


@router.post("/logout")
def logout(request: Request, csrf: CsrfF = "") -> Response:
    ctx = Ctx.of(request)
    ctx.check_csrf(csrf)
    ctx.new_session()
    ctx.flash("info", "Logged out.")
    return ctx.redirect(ctx.url("/login"))


# --- repositories and versions ---------------------------------------------------------


@repos.get("/{plural}")
def repositories(
    request: Request,
    plural: KindP,
    q: Text = "",
    selector: Annotated[str, Query(max_length=1024)] = "",
    after: Text = "",
) -> Response:
    ctx = Ctx.of(request)
    ctx.require("read")
    kind = _kind(plural)
    error = ""
    with ctx.reg.sessions() as db:
        try:
            page = queries.repositories(
                db, kind, search=q, selector=selector, after=after, limit=PER_PAGE
            )
        except BadRequest as e:
            error, page = str(e), queries.Page([])
    return ctx.render(
        "repositories.html", nav=plural, kind=kind, plural=plural, page=page, q=q,
        selector=selector, error=error,
    )


@repos.get("/{plural}/{name}")
def versions(
    request: Request,
    plural: KindP,
    name: NameP,
    selector: Annotated[str, Query(max_length=1024)] = "",
    state: Annotated[str, Query(pattern="^(|uploading|ready|failed|broken)$")] = "",
    cursor: Annotated[str, Query(max_length=512)] = "",
) -> Response:
    ctx = Ctx.of(request)
    ctx.require("read")
    kind = _kind(plural)
    error = ""
    with ctx.reg.sessions() as db:
        try:
            page = queries.versions(
                db, kind, name, selector=selector, state=state or None, cursor=cursor or None,
                limit=PER_PAGE,
            )
        except BadRequest as e:
            error, page = str(e), queries.Page([])
        exists = db.scalar(
            select(func.count()).where(Version.kind == kind, Version.name == name)
        )
    if not exists:
        raise PageError(404, f"There is no {kind} named {name!r}.", "Not found")
    return ctx.render(
        "versions.html", nav=plural, kind=kind, plural=plural, name=name, page=page,
        selector=selector, state=state, cursor=cursor, error=error,
    )


def _io(spec: object) -> str:
    kind = getattr(spec, "kind", "")
    if kind == "tensor":
        shape = ", ".join("n" if d is None else str(d) for d in spec.shape)  # type: ignore[attr-defined]
        return f"tensor {spec.dtype} ({shape})"  # type: ignore[attr-defined]
    if kind == "json":
        return "JSON" + (f" ({spec.model})" if getattr(spec, "model", None) else "")  # type: ignore[attr-defined]
    if kind == "bytes":
        return f"bytes ({spec.content_type})"  # type: ignore[attr-defined]
    return str(kind)


STATIC_FILES_SHOWN = 50


def _static_content(manifest: object) -> dict | None:
    """The static web content a bento carries (``@jubako.service(static=...)``): where the
    proxy serves it and its first files, from the manifest (bounded like every page)."""
    spec = getattr(manifest, "static", None)
    if spec is None:
        return None
    folder = spec.path + "/"
    files = [f for f in manifest.files if f.path.startswith(folder)]  # type: ignore[attr-defined]
    return {
        "route": STATIC_ROUTE + "/", "path": spec.path, "source": spec.source, "count": len(files),
        "size": sum(f.size for f in files),
        "files": [{"url": f"{STATIC_ROUTE}/{f.path[len(folder):]}", "size": f.size, "digest": f.sha256}
                  for f in files[:STATIC_FILES_SHOWN]],
    }


def _k8s_name(name: str) -> str:
    return re.sub(r"[^a-z0-9-]", "-", name).strip("-")[:63] or "bento"


@repos.get("/{plural}/{name}/{version}")
def version_page(
    request: Request, plural: KindP, name: NameP, version: VersionP, files: PageN = 1
) -> Response:
    ctx = Ctx.of(request)
    viewer = ctx.require("read")
    kind = _kind(plural)
    with ctx.reg.sessions() as db:
        v = read.get_version(db, kind, name, version)
        manifest = parse_manifest(v.manifest.encode(), "manifest", manifests.MANIFEST_KINDS[kind])
        file_rows = queries.files(db, v, page=files, per_page=FILES_PER_PAGE)
        models = queries.models_of(db, v) if kind == "bento" else []
        used_by_bentos = queries.bentos_using(db, v) if kind == "model" else []
        deployments = queries.deployments_of(db, v) if kind == "bento" else []
        upload = db.scalar(select(Upload).where(Upload.version_id == v.id))
    apis = [
        {"name": a.name, "route": a.route, "input": _io(a.input), "output": _io(a.output),
         "batchable": a.batchable, "batching": a.batching, "doc": a.doc}
        for a in getattr(manifest, "apis", [])
    ]
    static = _static_content(manifest) if kind == "bento" else None
    url = registry_url(ctx)
    pull = f"jubako pull {'--model ' if kind == 'model' else ''}{v.tag} --registry {url}"
    snippet = ""
    if kind == "bento":
        snippet = yaml.safe_dump(
            {
                "apiVersion": "serving.jubako.dev/v1alpha1",
                "kind": "BentoDeployment",
                "metadata": {"name": _k8s_name(v.name), "namespace": "default"},
                "spec": {
                    "bento": v.tag,
                    "registry": {"url": url, "tokenSecretRef": {"name": "jubako-registry-token"}},
                    "proxy": {"replicas": 1},
                    "workers": [{"name": "default", "replicas": 1}],
                },
            },
            sort_keys=False,
        )
    pages = max(1, -(-v.file_count // FILES_PER_PAGE))
    return ctx.render(
        "version.html", nav=plural, kind=kind, plural=plural, v=v, manifest=manifest,
        manifest_text=v.manifest, apis=apis, files=file_rows, files_page=files, files_pages=pages,
        models=models, used_by_bentos=used_by_bentos, deployments=deployments, pull=pull,
        snippet=snippet, upload=upload, can_write=viewer.can("write"), static=static,
    )


@repos.post("/{plural}/{name}/{version}/labels")
def edit_labels(
    request: Request,
    plural: KindP,
    name: NameP,
    version: VersionP,
    csrf: CsrfF = "",
    key: Annotated[list[str], Form()] = [],  # noqa: B006
    value: Annotated[list[str], Form()] = [],  # noqa: B006
    remove: Annotated[list[str], Form()] = [],  # noqa: B006
) -> Response:
    ctx = Ctx.of(request)
    ctx.check_csrf(csrf)
    viewer = ctx.require("write")
    kind = _kind(plural)
    back = ctx.url(f"/{plural}/{name}/{version}")
    with ctx.reg.sessions() as db:
        v = read.get_version(db, kind, name, version)
        wanted: dict[str, str | None] = {}
        for k, val in zip(key, value, strict=False):
            k = k.strip()
            if k:
                wanted[k] = val
        for k in remove:
            wanted[k] = None
        current = v.label_dict
        changes = {k: val for k, val in wanted.items() if current.get(k) != val}
        for k in current:
            if k not in wanted:
                changes[k] = None  # a row cleared in the form
        if not changes:
            ctx.flash("info", "No label changed.")
            return ctx.redirect(back)
        try:
            edits.update_labels(db, viewer.caller(ctx.client), v, changes)
            db.commit()
        except BadRequest as e:
            ctx.flash("error", f"Labels not saved: {e}")
            return ctx.redirect(back)
    ctx.flash("success", f"Labels of {kind} {name}:{version} saved.")
    return ctx.redirect(back)


@repos.get("/{plural}/{name}/{version}/delete")
def delete_page(request: Request, plural: KindP, name: NameP, version: VersionP) -> Response:
    ctx = Ctx.of(request)
    viewer = ctx.require("write")
    kind = _kind(plural)
    with ctx.reg.sessions() as db:
        v = read.get_version(db, kind, name, version)
        users = read.used_by(db, v)
    return ctx.render(
        "delete.html", nav=plural, kind=kind, plural=plural, v=v, used_by=users,
        is_admin=viewer.can("admin"), error="",
    )


@repos.post("/{plural}/{name}/{version}/delete")
def delete(
    request: Request,
    plural: KindP,
    name: NameP,
    version: VersionP,
    csrf: CsrfF = "",
    force: Annotated[bool, Form()] = False,
    confirm: Annotated[str, Form()] = "",
) -> Response:
    ctx = Ctx.of(request)
    ctx.check_csrf(csrf)
    viewer = ctx.require("write")
    kind = _kind(plural)
    with ctx.reg.sessions() as db:
        v = read.get_version(db, kind, name, version)
        error = ""
        if confirm != v.tag:
            error = f"Type {v.tag} to confirm."
        elif force and not viewer.can("admin"):
            error = "Deleting with force needs the admin scope."
        else:
            try:
                gone = edits.delete_version(db, ctx.reg.storage, viewer.caller(ctx.client),
                                              v, force=force)
                db.commit()
                blobs.delete_objects(ctx.reg.storage, gone.blob_keys)
            except JubakoError as e:
                if status_of(e) != 409:
                    raise
                error = str(e)
        if error:
            users = read.used_by(db, v)
            return ctx.render(
                "delete.html", status=409, nav=plural, kind=kind, plural=plural, v=v,
                used_by=users, is_admin=viewer.can("admin"), error=error,
            )
        left = db.scalar(
            select(func.count()).where(Version.kind == kind, Version.name == name)
        )
    ctx.flash("success", f"Deleted {kind} {name}:{version}.")
    return ctx.redirect(ctx.url(f"/{plural}/{name}" if left else f"/{plural}"))


@repos.get("/{plural}/{name}/{version}/archive")
def download_archive(
    request: Request,
    plural: KindP,
    name: NameP,
    version: VersionP,
    compression: Annotated[str, Query(pattern="^(none|gzip|zstd)$")] = "none",
) -> Response:
    ctx = Ctx.of(request)
    ctx.require("read")
    kind = _kind(plural)
    with ctx.reg.sessions() as db:
        v = read.get_version(db, kind, name, version, ready=True)
        # The stream reads blobs after this session closes; archive_response only needs
        # the member list, computed here.
        response = archive_response(ctx.reg, db, v, compression)
    return ctx.finish(response)


@repos.get("/{plural}/{name}/{version}/manifest")
def download_manifest(request: Request, plural: KindP, name: NameP, version: VersionP) -> Response:
    ctx = Ctx.of(request)
    ctx.require("read")
    kind = _kind(plural)
    with ctx.reg.sessions() as db:
        v = read.get_version(db, kind, name, version)
    filename = "bento.yaml" if kind == "bento" else "model.yaml"
    return ctx.finish(
        Response(
            v.manifest.encode(),
            media_type="application/yaml",
            headers={
                "Content-Disposition": f'attachment; filename="{filename}"',
                "X-Jubako-Digest": v.digest,
            },
        )
    )


# --- push ----------------------------------------------------------------------------


@router.get("/push")
def push_page(request: Request) -> Response:
    ctx = Ctx.of(request)
    ctx.require("write")
    return ctx.render("push.html", nav="push")


@api.post("/push")
async def push(
    request: Request,
    label: Annotated[list[str], Query()] = [],  # noqa: B006
    force: bool = False,
) -> Response:
    """The browser sends the archive as the raw body (XHR, with upload progress)."""
    ctx = Ctx.of(request)
    if not ctx.session.check_csrf(request.headers.get("x-csrf-token")):
        return JSONResponse({"detail": "CSRF token missing or invalid"}, status_code=403)
    from fastapi.concurrency import run_in_threadpool

    viewer = await run_in_threadpool(ctx.load_viewer)
    if viewer is None:
        return JSONResponse({"detail": "not logged in"}, status_code=401)
    if not viewer.can("write"):
        return JSONResponse({"detail": "pushing needs the write scope"}, status_code=403)
    try:
        out = await receive_and_push(
            request, ctx.reg, viewer.caller(ctx.client), parse_labels(label), force
        )
    except JubakoError as e:
        return ctx.finish(JSONResponse({"detail": str(e)}, status_code=status_of(e)))
    body = out.model_dump()
    for p in body["pushed"]:
        name, version = p["tag"].split(":", 1)
        p["url"] = ctx.url(f"/{p['kind']}s/{name}/{version}")
    return ctx.finish(JSONResponse(body))


# --- deployments -----------------------------------------------------------------------


@router.get("/deployments")
def deployments(request: Request, q: Text = "", page: PageN = 1) -> Response:
    ctx = Ctx.of(request)
    ctx.require("read")
    with ctx.reg.sessions() as db:
        result = queries.deployments(db, search=q, page=page, per_page=PER_PAGE)
    pages = max(1, -(-(result.total or 0) // PER_PAGE))
    return ctx.render(
        "deployments.html", nav="deployments", page=result, q=q, page_no=page, pages=pages
    )


# --- tokens and users (admin) ----------------------------------------------------------


def _tokens_page(ctx: Ctx, page: int, created: dict | None = None, status: int = 200) -> Response:
    with ctx.reg.sessions() as db:
        total = db.scalar(select(func.count()).select_from(Token)) or 0
        tokens = list(
            db.scalars(
                select(Token).order_by(Token.id.desc()).offset((page - 1) * PER_PAGE).limit(PER_PAGE)
            )
        )
        users = list(
            db.scalars(select(User).where(User.password_hash.is_not(None)).order_by(User.name))
        )
    pages = max(1, -(-total // PER_PAGE))
    return ctx.render(
        "tokens.html", status=status, nav="tokens", tokens=tokens, total=total, page_no=page,
        pages=pages, created=created, users=users, now=utcnow(),
    )


@router.get("/tokens")
def tokens(request: Request, page: PageN = 1) -> Response:
    ctx = Ctx.of(request)
    ctx.require("admin")
    return _tokens_page(ctx, page)


@router.post("/tokens")
def create_token(
    request: Request,
    csrf: CsrfF = "",
    scope: Annotated[str, Form()] = "read",
    user: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    expires_in_days: Annotated[str, Form()] = "",
) -> Response:
    from datetime import timedelta

    ctx = Ctx.of(request)
    ctx.check_csrf(csrf)
    viewer = ctx.require("admin")
    try:
        days = float(expires_in_days) if expires_in_days.strip() else None
        if days is not None and not 0 < days <= 36500:
            raise ValueError
    except ValueError:
        ctx.flash("error", "Expiry must be a number of days between 0 and 36500.")
        return ctx.redirect(ctx.url("/tokens"))
    with ctx.reg.sessions() as db:
        try:
            tok, plain = auth.create_token(
                db,
                user_name=user.strip() or viewer.user,
                scope=scope,
                name=name.strip(),
                expires_in=timedelta(days=days) if days else None,
            )
        except BadRequest as e:
            ctx.flash("error", f"Token not created: {e}")
            return ctx.redirect(ctx.url("/tokens"))
        audit(db, viewer.caller(ctx.client), "token.create", f"token {tok.id}",
                      scope=tok.scope, user=tok.user.name)
        db.commit()
        created = {"id": tok.id, "token": plain, "scope": tok.scope, "user": tok.user.name}
    # Rendered directly (never redirected, never stored): the secret is shown this once.
    return _tokens_page(ctx, 1, created=created, status=201)


@router.post("/tokens/{token_id}/revoke")
def revoke_token(
    request: Request, token_id: Annotated[int, Path(ge=1, le=2**62)], csrf: CsrfF = ""
) -> Response:
    ctx = Ctx.of(request)
    ctx.check_csrf(csrf)
    viewer = ctx.require("admin")
    with ctx.reg.sessions() as db:
        auth.revoke(db, token_id)
        audit(db, viewer.caller(ctx.client), "token.revoke", f"token {token_id}")
        db.commit()
    ctx.flash("success", f"Token {token_id} revoked.")
    return ctx.redirect(ctx.url("/tokens"))


@router.post("/users/password")
def set_password(
    request: Request,
    csrf: CsrfF = "",
    user: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    scope: Annotated[str, Form()] = "read",
    disable: Annotated[bool, Form()] = False,
) -> Response:
    ctx = Ctx.of(request)
    ctx.check_csrf(csrf)
    viewer = ctx.require("admin")
    with ctx.reg.sessions() as db:
        try:
            u = auth.set_password(db, user.strip(), None if disable else password,
                                  None if disable else scope)
        except BadRequest as e:
            ctx.flash("error", f"Password not set: {e}")
            return ctx.redirect(ctx.url("/tokens"))
        audit(db, viewer.caller(ctx.client),
                      "user.password.clear" if disable else "user.password.set",
                      f"user {u.name}", scope=u.scope)
        db.commit()
    ctx.flash("success", f"Password login {'disabled' if disable else 'set'} for {u.name}.")
    return ctx.redirect(ctx.url("/tokens"))


# --- audit log (admin) -------------------------------------------------------------------


@router.get("/audit")
def audit_log(
    request: Request,
    action: Annotated[str, Query(max_length=64)] = "",
    before: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> Response:
    ctx = Ctx.of(request)
    ctx.require("admin")
    with ctx.reg.sessions() as db:
        page = queries.audit(db, action=action, before=before, limit=50)
    return ctx.render("audit.html", nav="audit", page=page, action=action)
