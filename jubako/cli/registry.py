"""Registry commands: ``jubako registry serve|migrate|create-token|set-password|login|list|get|delete``,
``jubako registry token list|revoke``, and the top-level ``jubako push``, ``jubako pull`` and ``jubako login``.

Server-side imports (fastapi, sqlalchemy, boto3) happen inside the commands.
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from ..errors import JubakoError
from .output import JSON_OPTION_HELP, confirm, human_size, parse_labels, print_json

JsonOpt = Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)]
ModelOpt = Annotated[bool, typer.Option("--model", "-m", help="A model, not a bento.")]
UrlOpt = Annotated[
    str | None, typer.Option("--registry", envvar="JUBAKO_REGISTRY_URL", help="Registry URL.")
]
Parallel = Annotated[int, typer.Option("--parallel", "-p", min=1, max=64, help="Parts in flight.")]

registry_app = typer.Typer(
    name="registry",
    help="Run a registry, or talk to one.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _client(url: str | None = None):  # type: ignore[no-untyped-def]
    from ..client import RegistryClient

    return RegistryClient(url)


# --- server side --------------------------------------------------------------------


@registry_app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.", envvar="JUBAKO_REGISTRY_PORT")] = 8080,
    migrate: Annotated[
        bool | None,
        typer.Option(
            "--migrate/--no-migrate",
            help="Bring the schema up to date first (default: only in embedded mode).",
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the registry (configured by JUBAKO_REGISTRY_* variables; see docs/registry.md)."""
    import uvicorn

    from ..registry.app import create_app, open_registry, prepare
    from ..registry.config import load

    settings = load()
    reg = open_registry(settings)
    prepare(reg, migrate_now=migrate)  # fail here, on one line, before uvicorn starts
    reg.engine.dispose()
    where = settings.db_url if settings.embedded else "configured database"
    typer.echo(
        f"jubako registry on http://{host}:{port} ({where}, {settings.storage_kind} storage)",
        err=True,
    )
    from .. import logs

    logs.configure()  # a server: INFO, JSON lines unless on a terminal
    uvicorn.run(
        create_app(settings, migrate_now=False),
        host=host,
        port=port,
        log_level=log_level,
        log_config=None,  # uvicorn's loggers go through ours
        timeout_graceful_shutdown=10,
    )


@registry_app.command()
def migrate(
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Bring the registry database schema up to date (Alembic migrations)."""
    from ..registry import migrate as m
    from ..registry.config import load
    from ..registry.db.session import make_engine

    settings = load()
    if settings.embedded:
        settings.data_dir.expanduser().mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.db_url)
    before = m.current(engine)
    m.upgrade(engine, revision)
    after = m.current(engine)
    typer.echo(f"schema: {before or 'empty'} -> {after}")


@registry_app.command("create-token")
def create_token(
    scope: Annotated[str, typer.Option(help="read, write or admin.")] = "admin",
    user: Annotated[str, typer.Option(help="Who the token is for.")] = "admin",
    name: Annotated[str, typer.Option(help="A note to recognise it by.")] = "",
    expires_days: Annotated[float | None, typer.Option(help="Expiry in days.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API token in the registry database (shown once)."""
    from datetime import timedelta

    from ..registry import auth
    from ..registry import migrate as m
    from ..registry.config import load
    from ..registry.db.session import make_engine, make_sessionmaker
    from ..registry.domain.audit import Caller, audit

    settings = load()
    if settings.embedded:
        settings.data_dir.expanduser().mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.db_url)
    if settings.should_migrate:
        m.upgrade(engine)
    m.check(engine)
    with make_sessionmaker(engine)() as db:
        tok, plain = auth.create_token(
            db,
            user_name=user,
            scope=scope,
            name=name,
            expires_in=timedelta(days=expires_days) if expires_days else None,
        )
        audit(
            db, Caller("cli"), "token.create", f"token {tok.id}", scope=scope, user=user
        )
        db.commit()
    if as_json:
        print_json(
            {
                "id": tok.id,
                "token": plain,
                "scope": scope,
                "user": user,
                "expires_at": tok.expires_at,
            }
        )
    else:
        typer.echo(plain)


@registry_app.command("set-password")
def set_password(
    user: Annotated[str, typer.Argument(help="User name (created if new).")],
    scope: Annotated[
        str, typer.Option(help="What a dashboard login with it may do: read, write or admin.")
    ] = "read",
    password: Annotated[
        str | None,
        typer.Option(
            envvar="JUBAKO_PASSWORD", help="The password (default: JUBAKO_PASSWORD, else a prompt)."
        ),
    ] = None,
    disable: Annotated[bool, typer.Option(help="Remove password login for this user.")] = False,
) -> None:
    """Let a user log in to the registry dashboard with a password (API tokens stay separate)."""
    from ..registry import auth
    from ..registry import migrate as m
    from ..registry.config import load
    from ..registry.db.session import make_engine, make_sessionmaker
    from ..registry.domain.audit import Caller, audit

    if not disable and not password:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    settings = load()
    if settings.embedded:
        settings.data_dir.expanduser().mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.db_url)
    if settings.should_migrate:
        m.upgrade(engine)
    m.check(engine)
    with make_sessionmaker(engine)() as db:
        auth.set_password(db, user, None if disable else password, None if disable else scope)
        audit(
            db,
            Caller("cli"),
            "user.password.clear" if disable else "user.password.set",
            f"user {user}",
            scope=None if disable else scope,
        )
        db.commit()
    typer.echo(f"password login {'disabled' if disable else f'set ({scope} scope)'} for {user}")


# --- client side --------------------------------------------------------------------


def login(
    url: Annotated[str, typer.Argument(help="Registry URL, e.g. http://localhost:8080")],
    token: Annotated[
        str | None,
        typer.Option(
            envvar="JUBAKO_TOKEN", help="API token (default: JUBAKO_TOKEN, else a prompt)."
        ),
    ] = None,
) -> None:
    """Check a token against a registry and remember both."""
    from ..client import RegistryClient
    from ..client.registry import save_login

    if not token:
        token = typer.prompt("API token", hide_input=True)
    with RegistryClient(url, token) as c:
        me = c.whoami()
    path = save_login(url, token)
    typer.echo(f"logged in to {url} as {me['user']} ({me['scope']} scope); saved in {path}")


registry_app.command("login")(login)


@registry_app.command("list")
def list_(
    name: Annotated[str | None, typer.Argument(help="Only versions of this name.")] = None,
    model: ModelOpt = False,
    prefix: Annotated[str, typer.Option(help="Name prefix.")] = "",
    selector: Annotated[str, typer.Option("--selector", "-l", help="Labels: a=b,c!=d.")] = "",
    state: Annotated[str | None, typer.Option(help="uploading, ready or failed.")] = None,
    sort: Annotated[
        str, typer.Option(help="created_at, name; prefix - to reverse.")
    ] = "-created_at",
    limit: Annotated[int, typer.Option(help="At most this many.")] = 100,
    registry: UrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List versions in the registry, newest first."""
    kind = "model" if model else "bento"
    with _client(registry) as c:
        items = list(
            c.list_versions(
                kind, name, limit=limit, prefix=prefix, selector=selector, state=state, sort=sort
            )
        )
    if as_json:
        print_json(items)
        return
    from rich.table import Table

    from .output import console

    table = Table("TAG", "STATE", "SIZE", "CREATED", "LABELS", box=None)
    for it in items:
        labels = ",".join(f"{k}={v}" for k, v in it["labels"].items())
        table.add_row(it["tag"], it["state"], human_size(it["size"]), it["created_at"][:19], labels)
    console.print(table)


@registry_app.command()
def get(
    tag: Annotated[str, typer.Argument(help="name[:version]; latest by default.")],
    model: ModelOpt = False,
    registry: UrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Describe a version: state, digest, labels, manifest, users."""
    import yaml

    from ..tags import Tag

    t = Tag.parse(tag)
    with _client(registry) as c:
        info = c.get_version("model" if model else "bento", t.name, t.version)
    if as_json:
        print_json(info)
    else:
        sys.stdout.write(yaml.safe_dump(info, sort_keys=False, allow_unicode=True))


@registry_app.command()
def delete(
    tag: Annotated[str, typer.Argument(help="name:version")],
    model: ModelOpt = False,
    force: Annotated[
        bool, typer.Option(help="Even if a deployment or bento uses it (admin).")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    registry: UrlOpt = None,
) -> None:
    """Delete a version from the registry (refused while in use, unless --force)."""
    from ..tags import Tag

    t = Tag.parse(tag)
    if t.is_latest:
        raise JubakoError("name the version to delete; 'latest' is refused here")
    kind = "model" if model else "bento"
    confirm(f"delete {kind} {t} from the registry?", yes)
    with _client(registry) as c:
        c.delete_version(kind, t.name, t.version, force=force)
    typer.echo(f"deleted {kind} {t}")


token_app = typer.Typer(
    name="token",
    help="API tokens of a registry (admin scope): list them, revoke one.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
registry_app.add_typer(token_app)


@token_app.command("list")
def token_list(
    revoked: Annotated[bool, typer.Option("--all", help="Revoked tokens too.")] = False,
    registry: UrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the registry's tokens (never their secrets)."""
    with _client(registry) as c:
        items = [t for t in c.list_tokens() if revoked or not t["revoked_at"]]
    if as_json:
        print_json(items)
        return
    from rich.table import Table

    from .output import console

    table = Table("ID", "USER", "SCOPE", "NAME", "PREFIX", "CREATED", "EXPIRES", "LAST USED",
                  box=None)
    for t in items:
        when = {k: (t[k] or "")[:16].replace("T", " ") for k in
                ("created_at", "expires_at", "last_used_at")}
        state = " (revoked)" if t["revoked_at"] else ""
        table.add_row(str(t["id"]), t["user"], t["scope"] + state, t["name"], t["prefix"],
                      when["created_at"], when["expires_at"] or "never",
                      when["last_used_at"] or "never")
    console.print(table)


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[int, typer.Argument(help="The token's id (see `token list`).", min=1)],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    registry: UrlOpt = None,
) -> None:
    """Revoke a token: every request with it is refused from now on."""
    confirm(f"revoke token {token_id}?", yes)
    with _client(registry) as c:
        c.revoke_token(token_id)
    typer.echo(f"revoked token {token_id}")


def push(
    tag: Annotated[str, typer.Argument(help="name[:version] in the local store.")],
    model: ModelOpt = False,
    force: Annotated[
        bool, typer.Option(help="Replace a ready version with other content.")
    ] = False,
    label: Annotated[list[str] | None, typer.Option("--label", "-l", help="key=value.")] = None,
    parallel: Parallel = 4,
    registry: UrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Push a bento (with the models it uses) or a model to the registry."""
    from ..client.progress import Progress
    from ..client.push import push as do_push

    with _client(registry) as c, Progress(enabled=not as_json and sys.stderr.isatty()) as bar:
        results = do_push(
            c,
            tag,
            kind="model" if model else "bento",
            force=force,
            labels=parse_labels(label),
            parallel=parallel,
            progress=bar,
        )
    if as_json:
        print_json([asdict(r) for r in results])
        return
    for r in results:
        what = "already in the registry" if r.skipped else f"pushed {human_size(r.uploaded_bytes)}"
        typer.echo(f"{r.kind} {r.tag}: {what} ({r.digest})")


def pull(
    tag: Annotated[str, typer.Argument(help="name[:version]; latest by default.")],
    model: ModelOpt = False,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write a self-contained bento directory here instead of the store.",
        ),
    ] = None,
    parallel: Parallel = 4,
    registry: UrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Pull a bento (with its models) or a model, verifying every digest."""
    from ..client.progress import Progress
    from ..client.pull import pull as do_pull

    with _client(registry) as c, Progress(enabled=not as_json and sys.stderr.isatty()) as bar:
        results = do_pull(
            c,
            tag,
            kind="model" if model else "bento",
            output=output,
            parallel=parallel,
            progress=bar,
        )
    if as_json:
        print_json([asdict(r) for r in results])
        return
    for r in results:
        what = "already in the store" if r.skipped else f"pulled {human_size(r.downloaded_bytes)}"
        typer.echo(f"{r.kind} {r.tag}: {what} -> {r.path}")


def register(app: typer.Typer) -> None:
    app.add_typer(registry_app)
    app.command("push")(push)
    app.command("pull")(pull)
    app.command("login")(login)


__all__ = ["register", "os"]
