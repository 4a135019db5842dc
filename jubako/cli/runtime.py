"""Runtime commands: ``jubako serve`` and ``jubako runtime proxy|worker`` (docs/runtime.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import JubakoError

Config = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Runtime config file (YAML; docs/configuration.md) [env JUBAKO_CONFIG].",
                 dir_okay=False),
]


def serve(
    bento: Annotated[str, typer.Argument(help="Bento tag (name[:version]) or a bento directory.")],
    port: Annotated[int | None, typer.Option("--port", "-p", help="HTTP port of the proxy [env JUBAKO_PORT, default 3000].")] = None,
    workers: Annotated[int | None, typer.Option("--workers", "-w", help="Worker processes, each loads the models [env JUBAKO_NUM_WORKERS; default: one single-threaded worker per core, up to 8; 1 on a GPU].")] = None,
    proxies: Annotated[int | None, typer.Option("--proxies", help="Proxy processes on the one port, each owning its share of the workers (at most --workers) [env JUBAKO_NUM_PROXIES, default 1].")] = None,
    host: Annotated[str, typer.Option(help="Address the proxy listens on.")] = "127.0.0.1",
    install: Annotated[bool, typer.Option("--install", help="Install missing requirements into a per-bento venv [env JUBAKO_INSTALL].")] = False,
    config: Config = None,
) -> None:
    """Serve a bento here: one proxy and N workers; Ctrl-C stops everything."""
    from jubako.runtime import launch
    from jubako.runtime.serve import bento_arg

    launch.serve(bento_arg(bento), config, host, install, port=port, num_workers=workers, num_proxies=proxies)


def proxy(
    bento: Annotated[str | None, typer.Option(help="Bento directory or tag [env JUBAKO_BENTO].")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port [env JUBAKO_PORT, default 3000].")] = None,
    workers: Annotated[str | None, typer.Option(help="host:port[,host:port...] of the workers, resolved again and again [env JUBAKO_WORKERS].")] = None,
    host: Annotated[str, typer.Option(help="Listen address.")] = "0.0.0.0",
    config: Config = None,
) -> None:
    """Run the HTTP proxy (batching, validation, docs, metrics) in front of workers."""
    from jubako.runtime import launch

    launch.proxy(config, host, bento=bento, port=port, workers=workers)


def worker(
    bento: Annotated[str | None, typer.Option(help="Bento directory or tag [env JUBAKO_BENTO].")] = None,
    port: Annotated[int | None, typer.Option(help="Batch (TCP) port [env JUBAKO_WORKER_PORT, default 7000].")] = None,
    http_port: Annotated[int | None, typer.Option(help="Health/metrics port [env JUBAKO_WORKER_HTTP_PORT, default 7001].")] = None,
    host: Annotated[str, typer.Option(help="Listen address.")] = "0.0.0.0",
    config: Config = None,
) -> None:
    """Run a worker: load the bento's models once and execute the batches sent to it."""
    from jubako.runtime import launch

    launch.worker(config, host, bento=bento, worker_port=port, worker_http_port=http_port)


def install(
    bento: Annotated[str | None, typer.Option(help="Bento directory or tag [env JUBAKO_BENTO].")] = None,
    target: Annotated[Path, typer.Option(help="Folder shared with the worker: venvs by digest, and env/ the worker runs.")] = Path("/deps"),
    termination_log: Annotated[Path, typer.Option(help="Where a failure is written for the pod's status.")] = Path("/dev/termination-log"),
) -> None:
    """Init container: make the bento's requirements available to the worker (docs/requirements.md)."""
    from jubako.environment import install_for_pod, write_termination_message
    from jubako.loader import open_bento
    from jubako.runtime_settings import RuntimeSettings

    bento = RuntimeSettings.load(bento=bento).bento
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
