"""``jubako models ...``: models in the local store."""

from __future__ import annotations

from typing import Annotated

import typer

from ..store import Store
from ..tags import Tag
from .bentos import Compression, JsonOpt, _delete, _export
from .output import print_bundles, print_manifest

models_app = typer.Typer(help="Models in the local store.", no_args_is_help=True)


@models_app.command("list")
def list_(
    name: Annotated[str | None, typer.Argument(help="Only versions of this model.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List models, newest first."""
    print_bundles(Store().models.list(name), as_json, "model")


@models_app.command()
def get(
    tag: Annotated[str, typer.Argument(help="name[:version].")],
    output: Annotated[str, typer.Option("--output", "-o", help="yaml or json.")] = "yaml",
    as_json: JsonOpt = False,
) -> None:
    """Print a model's manifest."""
    print_manifest(Store().models.get(tag).manifest, "json" if as_json else output)


@models_app.command()
def delete(
    tag: Annotated[str, typer.Argument(help="name:version.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    force: Annotated[
        bool, typer.Option(help="Even if local bentos use it (they can no longer be served).")
    ] = False,
) -> None:
    """Delete a model from the local store (refused while a local bento uses it)."""
    store = Store()
    _delete(store.models, tag, yes, users=lambda t: bentos_using(store, t), force=force)


def bentos_using(store: Store, model: Tag) -> list[str]:
    """Tags of the local bentos that pin this model version."""
    return sorted(
        str(b.tag)
        for b in store.bentos.list()
        if any(ref.parsed == model for ref in b.manifest.models)
    )


@models_app.command()
def export(
    tag: Annotated[str, typer.Argument(help="name[:version].")],
    out: Annotated[str, typer.Argument(help="Archive path, or - for standard output.")],
    compression: Compression = "none",
) -> None:
    """Write a model as a tar archive (import it with `jubako import`)."""
    _export(Store().models.get(tag), out, compression)


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
