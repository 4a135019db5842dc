"""`jubako containerize TAG`: an image FROM the runtime image with one bento baked in."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer

from .output import JSON_OPTION_HELP, print_json


def containerize(
    tag: Annotated[str, typer.Argument(help="Bento in the local store: name[:version].")],
    base_image: Annotated[str | None, typer.Option(help="Runtime image to build FROM [env JUBAKO_RUNTIME_IMAGE].", envvar="JUBAKO_RUNTIME_IMAGE")] = None,
    repository: Annotated[str, typer.Option(help="Image name prefix, e.g. ghcr.io/acme (the image is REPOSITORY/NAME:VERSION).")] = "",
    context: Annotated[Path | None, typer.Option(help="Write the build context here (default: a temporary folder).")] = None,
    context_only: Annotated[bool, typer.Option("--context-only", help="Only write the context (for kaniko, buildah...): needs --context.")] = False,
    engine: Annotated[str, typer.Option(help="Container engine CLI that builds it.")] = "docker",
    network: Annotated[str | None, typer.Option(help="Network of the build (e.g. host), passed to the engine.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """Build an OCI image for one bento, tagged by its version, FROM the shared runtime image."""
    from ..containerize import DEFAULT_BASE_IMAGE
    from ..containerize import containerize as do_containerize
    from ..errors import ConfigError

    if context_only and context is None:
        raise ConfigError("--context-only needs --context DIR")
    with tempfile.TemporaryDirectory(prefix="jubako-containerize-") as tmp:
        image = do_containerize(tag, base_image=base_image or DEFAULT_BASE_IMAGE, repository=repository,
                                context=context or Path(tmp) / "context", build=not context_only,
                                engine=engine, network=network)
    if as_json:
        print_json({"image": image.ref, "bento": image.bento, "requirements": image.requirements,
                    "context": str(context) if context else None, "built": not context_only})
    elif context_only:
        typer.echo(f"wrote the build context of {image.ref} to {context}")
    else:
        typer.echo(f"built {image.ref}")


def register(app: typer.Typer) -> None:
    app.command()(containerize)
