"""Batch command: ``jubako run BENTO --api NAME --input PATH --output PATH`` (docs/batch.md)."""

from __future__ import annotations

import shlex
import signal
import sys
from typing import Annotated

import typer

EXIT_ROWS_FAILED = 2


def _names(value: str | None) -> list[str] | None:
    if not value:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def run(
    bento: Annotated[str, typer.Argument(help="Bento tag (name[:version]) or a bento directory.")],
    input: Annotated[str, typer.Option("--input", "-i", help="Input file: a path or s3://bucket/key (.jsonl, .csv, .parquet).")],
    output: Annotated[str, typer.Option("--output", "-o", help="Output file: a path or s3://bucket/key (.jsonl, .csv, .parquet).")],
    api: Annotated[str | None, typer.Option("--api", "-a", help="API to call (needed when the bento has several).")] = None,
    workers: Annotated[int | None, typer.Option("--workers", "-w", help="Service instances: worker processes, shard processes or threads in this process (each loads the models) [default: workers 1; sharded and in-process one per core up to 4 on CPU, 1 on a GPU].")] = None,
    executor: Annotated[str, typer.Option(help="inprocess (the service loaded in this process), sharded (one process per instance, each reading and writing its own chunks), workers (the runtime's worker processes) or auto (see docs/batch.md).")] = "auto",
    chunk_rows: Annotated[int | None, typer.Option(help="Rows per chunk: the unit of memory, of commit and of what a restarted run keeps [default: about 4 MiB of a Parquet input, 1 000 to 50 000 rows; 10 000 rows of CSV or JSON Lines].")] = None,
    columns: Annotated[str | None, typer.Option(help="Input columns that make an item, in order (comma-separated); default: see docs/batch.md.")] = None,
    keep_columns: Annotated[str | None, typer.Option(help="Input columns copied to the output ('all' or comma-separated).")] = None,
    output_column: Annotated[str | None, typer.Option(help="Name of the result column [default: the API name].")] = None,
    input_format: Annotated[str | None, typer.Option(help="jsonl, csv or parquet [default: from the name].")] = None,
    output_format: Annotated[str | None, typer.Option(help="jsonl, csv or parquet [default: from the name].")] = None,
    errors: Annotated[str | None, typer.Option(help="Error file (JSON Lines: row, error) [default: OUTPUT.errors.jsonl].")] = None,
    restart: Annotated[bool, typer.Option("--restart", help="Discard the chunks of an interrupted run instead of continuing it.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bar on a terminal, a line every 10 s elsewhere.")] = True,
    install: Annotated[bool, typer.Option("--install", help="Install missing requirements into a per-bento venv, where the workers run (or set JUBAKO_INSTALL=1).")] = False,
) -> None:
    """Score a file with a bento's API on the runtime's workers; resumable.

    Exit code 0: every row was scored; 2: the output is complete but some rows failed
    (see the error file); 1: the run failed (an interrupted run continues when started
    again with the same output).
    """
    from jubako.batch import Options
    from jubako.batch import run as do_run
    from jubako.runtime.serve import bento_arg

    keep_all = (keep_columns or "").strip() == "all"
    stopped: list[int] = []

    def on_term(signum: int, frame: object) -> None:
        # SIGTERM (kubectl delete, a pod evicted) takes Ctrl-C's path: asyncio cancels
        # the run, the workers stop, the committed chunks stay
        stopped.append(signum)
        if callable(signal.getsignal(signal.SIGINT)):
            signal.raise_signal(signal.SIGINT)
        else:  # SIGINT ignored (a background job of a script): raising it would do nothing
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        summary = do_run(Options(
            bento=bento_arg(bento), input=input, output=output, api=api, input_format=input_format,
            output_format=output_format, workers=workers, executor=executor, chunk_rows=chunk_rows,
            columns=_names(columns), keep_columns=None if keep_all else _names(keep_columns), keep_all=keep_all,
            output_column=output_column, errors=errors, restart=restart, overwrite=overwrite, progress=progress,
            install=install,
        ))
    except KeyboardInterrupt:
        typer.echo(interrupted_message(output), err=True)
        raise typer.Exit(128 + (stopped[0] if stopped else signal.SIGINT)) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    typer.echo(f"output: {summary.output}", err=True)
    if summary.failed:
        typer.echo(f"errors: {summary.errors} ({summary.failed:,} row(s) failed)", err=True)
        raise typer.Exit(EXIT_ROWS_FAILED)


def resume_command(argv: list[str]) -> str:
    """The command that continues this run: the same arguments, without --restart (which
    would discard what was done)."""
    return shlex.join(["jubako", *(a for a in argv if a != "--restart")])


def interrupted_message(output: str) -> str:
    from jubako.batch import storage

    try:
        done = sum(1 for n in storage.Parts(output).list() if n.startswith("done-"))
    except Exception:  # the message must not fail; the count is a courtesy
        done = -1
    kept = f"{done} finished chunk(s) are kept in {output}.parts; " if done > 0 else ""
    return f"jubako run: interrupted; {kept}run the same command to continue:\n  {resume_command(sys.argv[1:])}"


def register(app: typer.Typer) -> None:
    app.command("run")(run)
