"""Runtime commands: ``jubako serve`` and ``jubako runtime proxy|worker`` (docs/runtime.md)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from ..errors import JubakoError


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        return int(raw) if raw else default
    except ValueError:
        raise JubakoError(f"{name}={raw!r} must be an integer") from None


def serve(
    bento: Annotated[str, typer.Argument(help="Bento tag (name[:version]) or a bento directory.")],
    port: Annotated[int, typer.Option("--port", "-p", help="HTTP port of the proxy.")] = 3000,
    workers: Annotated[int, typer.Option("--workers", "-w", help="Worker processes (each loads the models).")] = 1,
    host: Annotated[str, typer.Option(help="Address the proxy listens on.")] = "127.0.0.1",
    install: Annotated[bool, typer.Option("--install", help="Install missing requirements into a per-bento venv [env JUBAKO_INSTALL].")] = False,
) -> None:
    """Serve a bento here: one proxy and N workers; Ctrl-C stops everything."""
    from jubako.runtime.serve import bento_arg
    from jubako.runtime.serve import serve as do_serve

    do_serve(bento_arg(bento), port=port, workers=workers, host=host, install=install)


def proxy(
    bento: Annotated[str | None, typer.Option(help="Bento directory or tag [env JUBAKO_BENTO].")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port [env JUBAKO_PORT, default 3000].")] = None,
    workers: Annotated[str | None, typer.Option(help="host:port[,host:port...] of the workers, resolved again and again [env JUBAKO_WORKERS].")] = None,
    host: Annotated[str, typer.Option(help="Listen address.")] = "0.0.0.0",
) -> None:
    """Run the HTTP proxy (batching, validation, docs, metrics) in front of workers."""
    from jubako.runtime.proxy import run
    from jubako.runtime.settings import parse_workers

    bento = bento or os.environ.get("JUBAKO_BENTO")
    if not bento:
        raise JubakoError("--bento (or JUBAKO_BENTO) is required")
    run(bento, port or _env_int("JUBAKO_PORT", 3000), parse_workers(workers or os.environ.get("JUBAKO_WORKERS", "")), host)


def worker(
    bento: Annotated[str | None, typer.Option(help="Bento directory or tag [env JUBAKO_BENTO].")] = None,
    port: Annotated[int | None, typer.Option(help="Batch (TCP) port [env JUBAKO_WORKER_PORT, default 7000].")] = None,
    http_port: Annotated[int | None, typer.Option(help="Health/metrics port [env JUBAKO_WORKER_HTTP_PORT, default 7001].")] = None,
    host: Annotated[str, typer.Option(help="Listen address.")] = "0.0.0.0",
) -> None:
    """Run a worker: load the bento's models once and execute the batches sent to it."""
    from jubako.runtime.worker import run

    bento = bento or os.environ.get("JUBAKO_BENTO")
    if not bento:
        raise JubakoError("--bento (or JUBAKO_BENTO) is required")
    run(
        bento, port or _env_int("JUBAKO_WORKER_PORT", 7000),
        http_port or _env_int("JUBAKO_WORKER_HTTP_PORT", 7001), host,
    )


def install(
    bento: Annotated[str | None, typer.Option(help="Bento directory or tag [env JUBAKO_BENTO].")] = None,
    target: Annotated[Path, typer.Option(help="Folder shared with the worker: venvs by digest, and env/ the worker runs.")] = Path("/deps"),
    termination_log: Annotated[Path, typer.Option(help="Where a failure is written for the pod's status.")] = Path("/dev/termination-log"),
) -> None:
    """Init container: make the bento's requirements available to the worker (docs/requirements.md)."""
    from jubako.environment import install_for_pod, write_termination_message
    from jubako.loader import open_bento

    bento = bento or os.environ.get("JUBAKO_BENTO")
    if not bento:
        raise JubakoError("--bento (or JUBAKO_BENTO) is required")
    try:
        python = install_for_pod(open_bento(bento), target)
    except JubakoError as e:
        write_termination_message(termination_log, str(e))
        raise
    typer.echo(f"jubako runtime install: the worker runs {python}", err=True)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    runtime = typer.Typer(help="Runtime processes, as the operator's pods run them.", no_args_is_help=True)
    runtime.command("proxy")(proxy)
    runtime.command("worker")(worker)
    runtime.command("install")(install)
    app.add_typer(runtime, name="runtime")
