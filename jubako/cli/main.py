"""Entry point: assembles the commands each component registers (docs/contracts.md)."""

from __future__ import annotations

import importlib
import sys

import typer

from .. import __version__, logs
from ..errors import JubakoError

app = typer.Typer(
    name="jubako",
    help="Build, store, push and serve ML models as bentos.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

COMPONENTS = ("bentos", "models", "registry", "runtime", "operator", "batch", "containerize")


@app.command()
def version() -> None:
    """Print the jubako version."""
    typer.echo(__version__)


def _register() -> None:
    for name in COMPONENTS:
        module_name = f"{__package__}.{name}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name == module_name:
                continue  # that component's commands are not part of this install
            raise
        module.register(app)


_register()


def main() -> None:
    logs.configure(default="WARNING")  # servers raise it to INFO when they start
    try:
        app()
    except JubakoError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
