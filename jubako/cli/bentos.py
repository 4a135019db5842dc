"""Bento commands: build, list, get, delete, export, import."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from ..errors import JubakoError
from ..store import Store
from ..tags import Tag
from .output import (
    JSON_OPTION_HELP,
    bundle_summary,
    confirm,
    parse_labels,
    print_bundles,
    print_json,
    print_manifest,
)

JsonOpt = Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)]
Compression = Annotated[str, typer.Option("--compression", "-c", help="none, gzip or zstd.")]


def build(
    path: Annotated[Path, typer.Argument(help="Project folder (with jubako.yaml or pyproject.toml) or config file.")] = Path("."),
    name: Annotated[str | None, typer.Option(help="Bento name (default: from config or service).")] = None,
    version: Annotated[str | None, typer.Option(help="Version (default: generated).")] = None,
    label: Annotated[list[str] | None, typer.Option("--label", "-l", help="key=value, repeatable.")] = None,
    wheels: Annotated[bool, typer.Option("--wheels", help="Carry the wheels of what the runtime image lacks (like python.wheels: true).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Build a bento from a project folder into the local store."""
    from ..build import build as do_build

    bundle = do_build(path, name=name, version=version, labels=parse_labels(label), wheels=wheels)
    if as_json:
        print_json(bundle_summary(bundle))
    else:
        typer.echo(f"built {bundle.tag} ({len(bundle.manifest.files)} files, {bundle.manifest.digest()})")


def list_(
    name: Annotated[str | None, typer.Argument(help="Only versions of this bento.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List bentos in the local store, newest first."""
    print_bundles(Store().bentos.list(name), as_json, "bento")


def get(
    tag: Annotated[str, typer.Argument(help="name[:version]; version defaults to latest.")],
    output: Annotated[str, typer.Option("--output", "-o", help="yaml or json.")] = "yaml",
    as_json: JsonOpt = False,
) -> None:
    """Print a bento's manifest."""
    print_manifest(Store().bentos.get(tag).manifest, "json" if as_json else output)


def delete(
    tag: Annotated[str, typer.Argument(help="name:version (latest is refused, to avoid surprises).")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Delete a bento from the local store (its models stay)."""
    _delete(Store().bentos, tag, yes)


def _delete(kind_store, tag: str, yes: bool, users: Callable[[Tag], list[str]] | None = None,  # type: ignore[no-untyped-def]
            force: bool = False) -> None:
    if tag.partition(":")[2] in ("", "latest"):
        raise JubakoError(f"name an exact version to delete, e.g. {tag.partition(':')[0]}:<version>")
    bundle = kind_store.get(tag)
    using = users(bundle.tag) if users else []
    if using and not force:
        shown = ", ".join(using[:5]) + (f" and {len(using) - 5} more" if len(using) > 5 else "")
        raise JubakoError(
            f"{bundle.tag} is used by local bentos ({shown}), which could no longer be served;"
            " delete them first, or pass --force"
        )
    confirm(f"delete {bundle.tag}" + (f" (used by {len(using)} bentos)" if using else "") + "?",
            yes)
    kind_store.delete(bundle.tag)
    typer.echo(f"deleted {bundle.tag}")


def export(
    tag: Annotated[str, typer.Argument(help="name[:version].")],
    out: Annotated[str, typer.Argument(help="Archive path, or - for standard output.")],
    compression: Compression = "none",
) -> None:
    """Write a bento and its models as a tar archive (streamed)."""
    _export(Store().bentos.get(tag), out, compression)


def _export(bundle, out: str, compression: str) -> None:  # type: ignore[no-untyped-def]
    from .. import archive

    if out == "-":
        archive.export(bundle, sys.stdout.buffer, compression)
        sys.stdout.buffer.flush()
        return
    tmp = Path(f"{out}.partial")
    try:
        with open(tmp, "wb") as f:
            archive.export(bundle, f, compression)
        tmp.replace(out)  # never leave a half-written archive under the real name
    finally:
        tmp.unlink(missing_ok=True)
    typer.echo(f"exported {bundle.tag} to {out}", err=True)


def import_(
    path: Annotated[str, typer.Argument(help="Archive path, or - for standard input.")],
    as_json: JsonOpt = False,
) -> None:
    """Import a bento or model archive, verifying every file (all or nothing)."""
    from .. import archive

    if path == "-":
        result = archive.import_archive(sys.stdin.buffer)
    else:
        try:
            f = open(path, "rb")
        except OSError as e:
            raise JubakoError(f"{path}: {e.strerror}") from None
        with f:
            result = archive.import_archive(f)
    if as_json:
        print_json({**bundle_summary(result.bundle), "existed": result.existed,
                    "added_models": result.added_models, "existing_models": result.existing_models})
    else:
        what = "already present" if result.existed else "imported"
        typer.echo(f"{what}: {result.bundle.manifest.kind} {result.bundle.tag}")
        for m in result.added_models:
            typer.echo(f"  + model {m}")


def register(app: typer.Typer) -> None:
    app.command()(build)
    app.command("list")(list_)
    app.command()(get)
    app.command()(delete)
    app.command()(export)
    app.command("import")(import_)
