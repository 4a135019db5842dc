"""``jubako run``: score a file with a bento's API, resumably (docs/batch.md).

The input is read in chunks of ``chunk_rows`` rows; each chunk's rows become API items,
cut into batches of the API's ``max_batch_size`` and sent to the runtime's workers
(:mod:`jubako.batch.workers`); the results, in input order, make the chunk's output part.
A chunk is committed by three whole-file writes in the parts folder next to the output
(``<output>.parts/``): ``part-N`` (the output rows), ``errors-N.jsonl`` (its bad rows,
if any) and last ``done-N.json`` (the marker). A restarted run with the same output and
the same settings skips every chunk up to the first one without a marker. The output
is written as chunks commit, in chunk order (:class:`.formats.Output`), and appears when
every chunk is done (a temporary file renamed, or a completed multipart upload); then
the parts folder is removed.
"""

from __future__ import annotations

import asyncio
import gc
import os
import re
import sys
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from jubako.errors import ConfigError, JubakoError

from . import formats, storage
from .mapping import Adapter, Items

STATE = "state.json"
_INDEXED = re.compile(r"^(part|errors|done)-(\d{6,})\.")
STATE_VERSION = 3  # 3: object results as columns


@dataclass
class Options:
    bento: str
    input: str
    output: str
    api: str | None = None
    input_format: str | None = None
    output_format: str | None = None
    workers: int | None = None
    executor: str = "auto"
    chunk_rows: int | None = None  # None: formats.default_chunk_rows
    columns: list[str] | None = None
    keep_columns: list[str] | None = None
    keep_all: bool = False
    output_column: str | None = None
    errors: str | None = None
    restart: bool = False
    overwrite: bool = False
    progress: bool = True
    install: bool = False  # missing requirements: a venv for the bento (else refuse)


@dataclass
class Summary:
    rows: int = 0
    failed: int = 0
    chunks: int = 0
    resumed_chunks: int = 0
    resumed_rows: int = 0
    seconds: float = 0.0
    output: str = ""
    errors: str | None = None
    devices: list[str] = field(default_factory=list)
    executor: str = ""

    @property
    def ok(self) -> int:
        return self.rows - self.failed

    @property
    def rows_per_second(self) -> float:
        return (self.rows - self.resumed_rows) / self.seconds if self.seconds > 0 else 0.0


def _index(name: str) -> int | None:
    m = _INDEXED.match(name)
    return int(m.group(2)) if m else None


def run(opts: Options) -> Summary:
    from jubako.loader import open_bento
    from jubako.runtime_settings import batching

    if opts.chunk_rows is not None and opts.chunk_rows < 1:
        raise ConfigError("--chunk-rows must be >= 1")
    if opts.input == opts.output:
        raise ConfigError("--input and --output are the same")
    bundle = open_bento(opts.bento)
    manifest = bundle.manifest
    apis = {a.name: a for a in manifest.apis}
    name = opts.api
    if name is None:
        if len(apis) != 1:
            raise ConfigError(f"the bento has several APIs; choose one with --api ({', '.join(apis)})")
        name = next(iter(apis))
    if name not in apis:
        raise ConfigError(f"the bento {manifest.tag} has no API {name!r} (it has {', '.join(apis)})")
    spec = apis[name]
    python = _python(bundle, opts.install)
    settings = batching(manifest).get(name)
    max_batch = min(settings.max_batch_size, 65535) if settings else 1
    inflight = settings.max_inflight_per_worker if settings else int(os.environ.get("JUBAKO_MAX_INFLIGHT_PER_WORKER", "2"))
    in_fmt = formats.detect(opts.input, opts.input_format)
    out_fmt = formats.detect(opts.output, opts.output_format)
    reader = formats.open_reader(opts.input, in_fmt, opts.chunk_rows)
    sized = opts.chunk_rows is None  # the chunk size was the reader's to choose
    opts = replace(opts, chunk_rows=reader.chunk_rows)
    errors_url = opts.errors or opts.output + ".errors.jsonl"
    adapter = make_adapter(opts, spec, out_fmt)
    executor = choose_executor(opts.executor, spec, opts.workers,
                               shardable=in_fmt == "parquet" or not storage.is_s3(opts.input))
    if python != sys.executable:  # the bento's own venv: only worker processes can run in it
        if opts.executor in ("inprocess", "sharded"):
            raise ConfigError(f"{manifest.tag} runs in its own virtual environment ({python}); the"
                              f" {opts.executor} executor runs in this one: use --executor workers (or auto)")
        executor = "workers"

    info = storage.stat(opts.input)
    state = {
        "version": STATE_VERSION, "input": opts.input, "input_fingerprint": info.fingerprint,
        "input_format": in_fmt, "output_format": out_fmt, "bento": str(manifest.tag),
        "bento_digest": manifest.digest(), "api": name, "chunk_rows": opts.chunk_rows,
        "columns": opts.columns, "keep_columns": opts.keep_columns, "keep_all": opts.keep_all,
        "output_column": adapter.output_column,
    }
    parts = storage.Parts(opts.output)
    names = parts.list()
    fresh = STATE not in names or opts.restart
    if not fresh:
        old = orjson.loads(parts.get(STATE))
        diff = sorted(k for k in set(old) | set(state) if old.get(k) != state.get(k))
        if diff:
            hint = (f"; pass --chunk-rows {old['chunk_rows']} to continue it" if diff == ["chunk_rows"] and sized
                    and isinstance(old.get("chunk_rows"), int) else "")
            raise JubakoError(
                f"{parts} holds chunks of another run (different {', '.join(_differs(k, old, state) for k in diff)})"
                f"{hint}; pass --restart to discard them, or run again with the same settings to continue"
            )
    else:
        if names:
            parts.remove_all()
            names = []
        if storage.exists(opts.output) and not opts.overwrite:
            raise JubakoError(f"{opts.output} exists; pass --overwrite to replace it")
        parts.put(STATE, orjson.dumps(state, option=orjson.OPT_INDENT_2))
        names = [STATE]
    markers = {i for n in names if n.startswith("done-") and (i := _index(n)) is not None}
    done = 0
    while done in markers:
        done += 1
    stale = [n for n in names if (i := _index(n)) is not None and i >= done]
    parts.delete(stale)

    # the output is written as chunks commit (a resumed run's done parts first): no pass
    # over all the parts is left for the end
    out = formats.Output(opts.output, out_fmt, None if parts.s3 else str(parts.dir))
    try:
        data_parts = sorted((n for n in names if n.startswith("part-") and (_index(n) or 0) < done),
                            key=lambda n: _index(n) or 0)
        for n in data_parts:
            out.add_part(parts, n)
        reader.only = adapter.needed()  # before the set-up: --columns and --keep-columns, if given
        job = _Job(opts, spec.name, spec.batchable, max_batch, inflight, adapter, reader, parts, out_fmt, done,
                   str(bundle.path), executor, python, out, in_fmt)
        if executor == "sharded":
            from .sharded import run_sharded

            summary = run_sharded(job)
        else:
            summary = _run_loop(job)
        t_assembly = time.perf_counter()
        if out_fmt == "parquet" and out.pw is None:
            raise JubakoError(f"{opts.input} has no rows")
        out.commit()
    except BaseException:
        out.abort()
        if fresh and not any(n.startswith("done-") for n in parts.list()):
            parts.remove_all()  # nothing worth keeping: a settings error, or stopped at once
        raise
    summary.output = opts.output
    error_parts = sorted((n for n in parts.list() if n.startswith("errors-")), key=lambda n: _index(n) or 0)
    if error_parts:
        formats.assemble(parts, error_parts, "jsonl", errors_url)
        summary.errors = errors_url
    elif storage.exists(errors_url):
        storage.remove(errors_url)  # from an earlier run of the same output
    parts.remove_all()
    summary.seconds += time.perf_counter() - t_assembly
    _print_summary(summary, opts)
    return summary


def _differs(key: str, old: dict[str, Any], new: dict[str, Any]) -> str:
    """``key``, with both values when they are short (not a fingerprint or a digest)."""
    a, b = old.get(key), new.get(key)
    if all(v is None or isinstance(v, int | bool) or (isinstance(v, str) and len(v) <= 40) for v in (a, b)):
        return f"{key}: {a} there, {b} now"
    return key


@dataclass
class _Job:
    opts: Options
    api: str
    batchable: bool
    max_batch: int
    inflight: int
    adapter: Adapter
    reader: formats.Reader
    parts: storage.Parts
    out_fmt: str
    done: int
    bento_path: str
    executor: str
    python: str  # the workers' python: this one, or the bento's venv
    out: formats.Output | None  # written in chunk order as chunks commit (None: a shard's job)
    in_fmt: str = ""


def make_adapter(opts: Options, spec: Any, out_fmt: str) -> Adapter:
    adapter = Adapter(spec, opts.columns, opts.output_column, opts.keep_columns, opts.keep_all)
    if out_fmt != "jsonl":  # JSON Lines embeds the object as it is
        adapter.objects_as_columns()
    return adapter


def _python(bundle: Any, install: bool) -> str:
    """The bento's requirements, checked as `jubako serve` checks them (docs/requirements.md),
    before anything is read or written: this python when it has what the bento needs; with
    ``install`` (or JUBAKO_INSTALL=1) the python of the bento's own venv; otherwise refuse,
    naming each missing package."""
    from jubako.config import home
    from jubako.config import settings as config
    from jubako.environment import prepare

    cfg = config()
    python = prepare(bundle, install or cfg.install, cfg.venvs or home() / "venvs")
    if python != sys.executable:
        print(f"jubako run: workers run in {Path(python).parent.parent}", file=sys.stderr, flush=True)
    return python


EXECUTORS = ("auto", "inprocess", "sharded", "workers")


def choose_executor(requested: str, spec: Any, workers: int | None, shardable: bool = True,
                    cores: int | None = None, gpu: bool | None = None) -> str:
    """``inprocess``, ``sharded`` or ``workers`` (docs/batch.md, "Executors"). ``auto``:

    - a tensor API: ``sharded`` (one process per instance, each reading, scoring and
      writing its own chunks) when there are several instances (``--workers``, default one
      per core up to 4), no GPU, and the shards can read the input themselves (a local file,
      or Parquet on S3: a text object on S3 would be downloaded by every shard); else
      ``inprocess``. Threads in one process share one GIL with the reading, converting and
      writing, which for a cheap model cost as much as the model (bench/README.md);
    - JSON or text items: ``workers`` when several workers were asked (the per-item Python
      holds the GIL: N processes scale where N threads would not), else ``inprocess``."""
    from jubako.manifest import TensorSpec

    if requested not in EXECUTORS:
        raise ConfigError(f"--executor {requested!r}: use {', '.join(EXECUTORS)}")
    if requested != "auto":
        return requested
    if not isinstance(spec.input, TensorSpec):
        return "workers" if (workers or 1) > 1 else "inprocess"
    if gpu is None:
        gpu = _gpu()
    if gpu or not shardable:
        return "inprocess"
    if not cores:
        from jubako.devices import available_cpus

        cores = available_cpus()
    instances = workers or min(4, cores)
    return "sharded" if instances > 1 else "inprocess"


def _gpu() -> bool:
    """A GPU the service would use: JUBAKO_DEVICE=cuda..., or auto on a machine with an
    NVIDIA device (one instance per GPU is usual: not one process per core)."""
    from jubako import devices

    want = devices.requested()
    return want.startswith("cuda") or (want == "auto" and os.path.exists("/dev/nvidia0"))


def _run_loop(job: _Job) -> Summary:
    try:
        import uvloop

        return uvloop.run(_main(job))
    except ImportError:
        return asyncio.run(_main(job))


class _Progress:
    """A rich progress bar on a terminal; a line every 10 s elsewhere (Kubernetes logs)."""

    def __init__(self, enabled: bool, total_rows: int | None, total_bytes: int | None):
        from rich.console import Console

        self.console = Console(stderr=True)
        self.total_rows, self.total_bytes = total_rows, total_bytes
        self.start = time.perf_counter()
        self.rows = self.new_rows = 0
        self.last_line = self.start
        self.bar: Any = None
        self.enabled = enabled
        if enabled and self.console.is_terminal:
            from rich.progress import (
                BarColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[rows]:>12,} rows"),
                TextColumn("{task.fields[rate]:>10,.0f} rows/s"), TextColumn("ETA"), TimeRemainingColumn(),
                TimeElapsedColumn(), console=self.console, transient=False,
            )
            self.task = self.bar.add_task("scoring", total=total_rows or total_bytes, rows=0, rate=0.0)
            self.bar.start()

    def starting(self, what: str) -> None:
        """Say what is starting (workers loading a model can take minutes)."""
        if self.bar is not None:
            self.bar.update(self.task, description=what)
        elif self.enabled:
            self.console.print(f"jubako run: {what}...", highlight=False)

    def scoring(self) -> None:
        if self.bar is not None:
            self.bar.update(self.task, description="scoring")

    def update(self, rows: int, new: bool, bytes_read: int) -> None:
        self.rows += rows
        if new:
            self.new_rows += rows
        now = time.perf_counter()
        rate = self.new_rows / (now - self.start) if now > self.start else 0.0
        if self.bar is not None:
            completed = self.rows if self.total_rows is not None else bytes_read
            self.bar.update(self.task, completed=completed, rows=self.rows, rate=rate)
        elif self.enabled and now - self.last_line >= 10:
            self.last_line = now
            share = ""
            if self.total_rows:
                share = f" ({100 * self.rows / self.total_rows:.0f}%)"
            elif self.total_bytes:
                share = f" ({100 * bytes_read / self.total_bytes:.0f}% of the input)"
            self.console.print(f"jubako run: {self.rows:,} rows{share}, {rate:,.0f} rows/s", highlight=False)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


async def _main(job: _Job) -> Summary:
    summary = Summary(executor=job.executor)
    pool: Any
    if job.executor == "inprocess":
        from .inprocess import InProcessPool

        pool = InProcessPool(job.bento_path, job.opts.workers)
    else:
        from .workers import WorkerPool

        pool = WorkerPool(job.bento_path, job.opts.workers or 1, job.inflight, python=job.python)
    progress = _Progress(job.opts.progress, job.reader.total_rows, job.reader.total_bytes)
    scoring: list[asyncio.Task[Any]] = []
    commits: deque[asyncio.Task[int]] = deque()  # in chunk order, each after the one before
    it = _prepared(job)
    try:
        if job.executor == "inprocess":
            progress.starting("loading the service in this process")
        else:
            progress.starting(f"starting {len(pool.workers)} worker(s)")
        await pool.start()
        gc.freeze()  # what is loaded lives as long as the run: the collector stops walking it
        progress.scoring()
        summary.devices = pool.devices
        t0 = progress.start = time.perf_counter()  # rows/s from the first batch on
        next_chunk = asyncio.ensure_future(asyncio.to_thread(next, it, None))
        while True:
            got = await next_chunk
            if got is None:
                break
            chunk, items = got
            next_chunk = asyncio.ensure_future(asyncio.to_thread(next, it, None))  # read ahead
            summary.chunks += 1
            summary.rows += chunk.rows
            if chunk.index < job.done:
                summary.resumed_chunks += 1
                summary.resumed_rows += chunk.rows
                failed = orjson.loads(job.parts.get(f"done-{chunk.index:06d}.json")).get("failed", 0)
                summary.failed += int(failed)
                progress.update(chunk.rows, False, chunk.bytes_read)
                continue
            assert items is not None
            scored = asyncio.ensure_future(_score(job, pool, chunk, items))
            scoring.append(scored)
            before = commits[-1] if commits else None
            commits.append(asyncio.ensure_future(_commit_in_turn(job, before, scored, progress)))
            # the next chunk is scored while this one commits (its fsyncs are not the
            # lanes' idle time); at most IN_FLIGHT chunks are held
            while len(commits) >= IN_FLIGHT or (commits and commits[0].done()):
                summary.failed += await commits.popleft()
            scoring = [t for t in scoring if not t.done()]
        while commits:
            summary.failed += await commits.popleft()
        summary.seconds = time.perf_counter() - t0
    finally:
        progress.stop()
        for t in (*scoring, *commits):
            t.cancel()
        await pool.close()
    return summary


def _prepared(job: _Job) -> Iterator[tuple[formats.Chunk, Items | None]]:
    """The input's chunks, each with its API items (None for a chunk done before), made on
    the read-ahead thread: reading and converting the next chunk overlap with scoring this
    one (pyarrow's decoding and onnxruntime/torch release the GIL)."""
    first = True
    for chunk in job.reader.chunks():
        if first:
            job.adapter.setup(job.reader.columns, chunk)
            job.adapter.narrow(job.reader)
            first = False
        yield chunk, job.adapter.items(chunk) if chunk.index >= job.done else None


async def _score(job: _Job, pool: Any, chunk: formats.Chunk, items: Items) -> tuple[formats.Chunk, Any, dict[int, str]]:
    errors = dict(items.errors)
    rows = items.rows
    n = len(rows)
    if job.batchable:
        size = job.max_batch
        spans = [(s, min(s + size, n)) for s in range(0, n, size)]
    else:
        spans = [(s, s + 1) for s in range(n)]
    if job.executor == "inprocess":
        # a few groups of batches per lane: one thread hop per group, lanes kept busy
        per = max(1, -(-len(spans) // (2 * len(pool.lanes))))
        groups = [spans[i : i + per] for i in range(0, len(spans), per)]

        async def group(lane: Any, these: list[tuple[int, int]]) -> tuple[np.ndarray | None, list[Any]]:
            if items.tensor is None or not lane.whole_batches(job.api):
                return None, [await _batch(job, lane, items, a, b) for a, b in these]
            block, outs = await lane.run_tensor(job.api, items.tensor, these)
            if block is not None:  # every batch ok: the group's outputs in one array
                return block, []
            # a batch that raised, or whose output does not fit, goes the worker's way
            return None, [(None, o, [], {}) if o is not None else await _batch(job, lane, items, a, b)
                          for (a, b), o in zip(these, outs, strict=True)]

        done = await asyncio.gather(*(pool.run_group(lambda lane, g=g: group(lane, g)) for g in groups))
        if done and all(block is not None for block, _ in done):  # the common case: nothing to do per batch
            tensor = done[0][0] if len(done) == 1 else np.concatenate([block for block, _ in done])
            table = job.adapter.output_table(chunk, rows, tensor, None, errors)
            return chunk, table, errors
        results = []
        for g, (block, rs) in zip(groups, done, strict=True):
            if block is None:
                results += rs
            else:
                lo = g[0][0]
                results += [(None, block[a - lo : b - lo], [], {}) for a, b in g]
    else:
        results = await asyncio.gather(*(_batch(job, pool, items, a, b) for a, b in spans))
    ok_rows: list[np.ndarray] = []
    tensors: list[np.ndarray] = []
    segments: list[bytes] = []
    whole = True  # every batch ok: the ok rows are the items' rows
    for (a, _b), (ok_mask, tensor, segs, errs) in zip(spans, results, strict=True):
        if ok_mask is not None:
            whole = whole and bool(ok_mask.all())
            ok_rows.append(rows[a:_b][ok_mask])
        else:
            ok_rows.append(rows[a:_b])
        if tensor is not None:
            tensors.append(tensor)
        segments += segs
        for k, msg in errs.items():
            errors[int(rows[a + k])] = msg
    if whole:
        all_ok = rows
    else:
        all_ok = np.concatenate(ok_rows) if ok_rows else np.zeros(0, dtype=np.int64)
    tensor = np.concatenate(tensors) if tensors else None
    table = job.adapter.output_table(chunk, all_ok, tensor, segments if items.segments is not None else None, errors)
    return chunk, table, errors


async def _batch(job: _Job, pool: Any, items: Items, a: int, b: int) -> tuple[np.ndarray, Any, list[bytes], dict[int, str]]:
    """Items ``a:b`` as one request; after a failure, once more with one request per item
    (the worker then runs the batch and re-runs each request alone: only bad items fail)."""
    n = b - a
    tensor = items.tensor[a:b] if items.tensor is not None else None
    segs = items.segments[a:b] if items.segments is not None else None
    if not job.batchable:
        if tensor is not None:
            res = await pool.call(job.api, [1], tensor=tensor[0])
        else:
            assert segs is not None
            res = await pool.call(job.api, [1], segments=segs)
        if res.statuses[0] != 200:
            return np.zeros(1, dtype=bool), None, [], {0: res.segments[0].decode(errors="replace")}
        if res.tensor is not None:
            return np.ones(1, dtype=bool), res.tensor[None], [], {}
        return np.ones(1, dtype=bool), None, [res.segments[0]], {}
    if tensor is not None:
        res = await pool.call(job.api, [n], tensor=tensor)
    else:
        assert segs is not None
        res = await pool.call(job.api, [n], segments=[b"[" + b",".join(segs) + b"]"])
    if res.statuses[0] == 200:
        return np.ones(n, dtype=bool), res.tensor, _json_items(res.segments[0]) if segs is not None else [], {}
    if tensor is not None:
        res = await pool.call(job.api, [1] * n, tensor=tensor)
    else:
        assert segs is not None
        res = await pool.call(job.api, [1] * n, segments=[b"[" + s + b"]" for s in segs])
    ok = np.asarray(res.statuses) == 200
    errs = {i: res.segments[i].decode(errors="replace") for i in np.flatnonzero(~ok).tolist()}
    out_segs: list[bytes] = []
    if segs is not None:
        for i in np.flatnonzero(ok).tolist():
            out_segs += _json_items(res.segments[i])
    return ok, res.tensor, out_segs, errs


_BODY_LOC = re.compile(r"(?:^|(?<=; ))body(?:\[\d+\])?((?:\.[^\s.\[:;]+|\[\d+\])*)(?=: )")


def locate(message: str, row: int) -> str:
    """The executor's validation message for one row, in the file's terms: ``body[0].values:
    List should...`` (the location in an HTTP request of one item) becomes ``row 7, field
    values: List should...``."""
    def repl(m: re.Match[str]) -> str:
        path = m.group(1).removeprefix(".")
        return f"row {row}, field {path}" if path else f"row {row}"

    return _BODY_LOC.sub(repl, message)


def _json_items(segment: bytes) -> list[bytes]:
    return [orjson.dumps(v) for v in orjson.loads(segment)]


IN_FLIGHT = 3  # chunks scored or being committed at once


async def _commit_in_turn(job: _Job, before: asyncio.Task[int] | None, scored: asyncio.Task[Any],
                          progress: _Progress) -> int:
    if before is not None:
        await before  # parts are committed in chunk order: a resumed run skips a prefix
    return await _commit(job, await scored, progress)


async def _commit(job: _Job, scored: tuple[formats.Chunk, Any, dict[int, str]], progress: _Progress) -> int:
    chunk, table, errors = scored
    await asyncio.to_thread(_commit_part, job, chunk, table, errors)  # one thread hop per chunk
    progress.update(chunk.rows, True, chunk.bytes_read)
    return len(errors)


def _commit_part(job: _Job, chunk: formats.Chunk, table: Any, errors: dict[int, str]) -> None:
    """The chunk's part, its errors and last its marker, each written whole; then its rows
    appended to the output (in chunk order: the commits are chained)."""
    i = chunk.index
    data = formats.encode_part(table, job.out_fmt, i == 0, job.adapter.json_columns)
    job.parts.put(f"part-{i:06d}.{formats.EXTENSION[job.out_fmt]}", data)
    if errors:
        lines = b"".join(orjson.dumps({"row": chunk.start + k + 1, "error": locate(errors[k], chunk.start + k + 1)})
                         + b"\n" for k in sorted(errors))
        job.parts.put(f"errors-{i:06d}.jsonl", lines)
    job.parts.put(f"done-{i:06d}.json", orjson.dumps({"rows": chunk.rows, "failed": len(errors)}))
    if job.out is None:  # a shard: the coordinator appends the part when its turn comes
        return
    if job.out_fmt == "parquet":
        job.out.add_table(table, f"part-{i:06d}")
    else:
        job.out.add_bytes(data)


_KINDS = {"inprocess": "in-process instance", "sharded": "shard process", "workers": "worker"}


def _print_summary(s: Summary, opts: Options) -> None:
    from rich.console import Console

    console = Console(stderr=True)
    resumed = f"; resumed after {s.resumed_chunks} chunk(s) ({s.resumed_rows:,} rows)" if s.resumed_chunks else ""
    devices = ", ".join(s.devices) or "?"
    console.print(
        f"jubako run: {s.rows:,} rows ({s.ok:,} ok, {s.failed:,} failed) in {s.seconds:.1f}s,"
        f" {s.rows_per_second:,.0f} rows/s; {s.chunks} chunk(s) of {opts.chunk_rows:,} rows{resumed};"
        f" {len(s.devices)} {_KINDS.get(s.executor, 'worker')}(s) on {devices}",
        highlight=False,
    )


def summary_json(s: Summary) -> dict[str, Any]:
    d = asdict(s)
    d["ok"] = s.ok
    d["rows_per_second"] = s.rows_per_second
    return d


__all__ = ["Options", "Summary", "run", "summary_json"]
