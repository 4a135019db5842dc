"""The ``sharded`` executor of ``jubako run``: one process per service instance, each
reading, scoring and committing its own chunks (docs/batch.md, "Executors").

In one process the lanes of :mod:`.inprocess` share one GIL with the reading, the
conversion to items, the output table and the parts' encoding; for a cheap model (the
example MLP: ~0.3 us per row) that Python and Arrow work costs as much as the model, and
the run plateaued at a third of the model's raw speed on 2 cores. Here each of N *shard*
processes (forked where the platform can: :func:`start_method`) loads the service once
(one in-process lane), claims chunks (Parquet: a row group at a time, :mod:`.claims`;
text: the next index of a shared counter, so a fast shard takes more and each reader only
moves forward, counting the lines of the others' chunks: :meth:`.formats.Reader.chunks`),
scores a chunk with the in-process path and commits it exactly as the other executors do
(``part-N``, ``errors-N.jsonl``, then ``done-N.json``). Rows never cross a process
boundary: a shard tells this process only which chunk it committed (index, rows, failed
rows, bytes read).

This process, the coordinator, starts the shards, waits until every one has loaded the
service, lets them go, and appends the committed parts to the output in chunk order as
they arrive (:class:`.formats.Output`), so the output has the same bytes as with the
other executors. A resumed run skips the chunks before the first one without a marker,
as always (chunks committed after a gap are scored again). A shard that fails stops the
run with its message; the coordinator stops the shards when it stops (an error, Ctrl-C,
SIGTERM); a shard whose coordinator is killed dies with it (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing
import os
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

import orjson

from jubako.devices import available_cpus
from jubako.errors import JubakoError

from . import formats, storage
from .claims import Claims
from .runner import Options, Summary, _commit_part, _Job, _Progress, _score, make_adapter

# chunks a shard holds at once: one being read (claimed ahead), one scored, one committing;
# more would leave the last chunks of the input waiting in one shard while the others idle
SHARD_IN_FLIGHT = 2
SETUP_ROWS = 1000  # what Adapter.setup samples of the first chunk


def start_method() -> str:
    """``fork`` where there is one (Linux): a shard starts with this process's imports
    (jubako, pyarrow, numpy) and only loads the service, ~0.1 s instead of ~0.7 s for a
    fresh interpreter on the 2-core VM (bench/README.md); ``spawn`` elsewhere, or with
    JUBAKO_SHARD_START=spawn. Forking is safe here: the coordinator runs no threads of
    its own yet (the progress bar starts after), Arrow's thread pools are fork-safe, and a
    shard makes its own S3 client."""
    want = os.environ.get("JUBAKO_SHARD_START", "").strip()
    if want:
        return want
    return "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"


def default_shards() -> int:
    """One per CPU this process can use (affinity, a pod's CPU quota), up to 4."""
    return min(4, available_cpus())


@dataclass
class ShardArgs:
    """What a shard needs to make its own job (picklable)."""

    opts: Options
    api: str
    batchable: bool
    max_batch: int
    in_fmt: str
    out_fmt: str
    bento_path: str
    shards: int
    parent: int  # the coordinator's pid


def run_sharded(job: _Job) -> Summary:
    n = job.opts.workers or default_shards()
    if n < 1:
        raise JubakoError("--workers must be >= 1")
    ctx = multiprocessing.get_context(start_method())
    counter = ctx.Value("q", job.done)  # the next chunk index to hand out (text inputs)
    ranges = job.reader.chunk_ranges(job.done)  # Parquet: by row group (claims.py)
    claims = Claims(ctx, ranges, n) if ranges is not None else None
    go = ctx.Event()
    args = ShardArgs(job.opts, job.api, job.batchable, job.max_batch, job.in_fmt, job.out_fmt, job.bento_path, n,
                     os.getpid())
    summary = Summary(executor="sharded")
    procs: list[Any] = []
    conns: dict[Connection, int] = {}
    progress: _Progress | None = None
    # what is loaded lives as long as the run: the collector stops walking it (a full
    # collection walked every module's objects, ~5 % of the coordinator's CPU), and forked
    # shards do not touch (copy) the pages that hold it (CPython's gc.freeze advice)
    gc.freeze()
    sys.stdout.flush()  # a forked shard must not write this process's buffered output again
    sys.stderr.flush()
    try:
        for k in range(n):
            recv, send = ctx.Pipe(duplex=False)
            p = ctx.Process(target=_shard_main, args=(k, args, counter, claims, go, send), name=f"jubako-shard-{k}")
            p.start()
            send.close()  # the shard holds the only writing end: its exit is EOF here
            procs.append(p)
            conns[recv] = k
        # after the forks: the progress bar's refresh thread is not copied into the shards
        progress = _Progress(job.opts.progress, job.reader.total_rows, job.reader.total_bytes)
        progress.starting(f"starting {n} shard process(es)")
        for i in range(job.done):  # a resumed run's chunks, from their markers
            marker = orjson.loads(job.parts.get(f"done-{i:06d}.json"))
            summary.chunks += 1
            summary.resumed_chunks += 1
            summary.rows += int(marker["rows"])
            summary.resumed_rows += int(marker["rows"])
            summary.failed += int(marker.get("failed", 0))
            progress.update(int(marker["rows"]), False, 0)
        devices: dict[int, list[str]] = {}
        ready: set[int] = set()
        while len(ready) < n:
            for conn, k, msg in _receive(conns, procs):
                if msg[0] == "ready":
                    devices[k] = msg[1]
                elif msg[0] == "end":  # the input has no rows
                    conns.pop(conn)
                    conn.close()
                else:
                    raise JubakoError(f"shard {k}: {msg[0]!r} before it was ready")
                ready.add(k)
        summary.devices = [d for k in sorted(devices) for d in devices[k]]
        progress.scoring()
        t0 = progress.start = time.perf_counter()  # rows/s from the first chunk on, as for the others
        go.set()
        committed: dict[int, tuple[int, int, int]] = {}
        nxt = job.done
        bytes_read = 0
        # Parquet says how many chunks there are: done when the last one is in the output,
        # not when every shard has shut down; a text input ends when every shard says so
        rows = job.reader.total_rows
        chunks = -(-rows // job.opts.chunk_rows) if rows is not None else None
        while conns and (chunks is None or nxt < chunks):
            for conn, _k, msg in _receive(conns, procs):
                if msg[0] == "end":
                    conns.pop(conn)
                    conn.close()
                    continue
                _, index, n_rows, failed, read = msg
                committed[index] = (n_rows, failed, read)
                while nxt in committed:  # the output in chunk order
                    n_rows, failed, read = committed.pop(nxt)
                    assert job.out is not None
                    job.out.add_part(job.parts, f"part-{nxt:06d}.{formats.EXTENSION[job.out_fmt]}")
                    summary.chunks += 1
                    summary.rows += n_rows
                    summary.failed += failed
                    bytes_read = max(bytes_read, read)
                    progress.update(n_rows, True, bytes_read)
                    nxt += 1
        if committed:
            raise JubakoError(f"chunk {nxt} was never committed (the shards committed {sorted(committed)})")
        summary.seconds = time.perf_counter() - t0
        for p in procs:
            p.join(30)
    finally:
        if progress is not None:
            progress.stop()
        for conn in conns:
            conn.close()
        _stop(procs)
    return summary


def _receive(conns: dict[Connection, int], procs: list[Any]) -> list[tuple[Connection, int, Any]]:
    """The messages that arrived (waiting for one); a shard that exited without saying
    ``end`` stops the run with its message (or its exit code)."""
    got = []
    for conn in wait(list(conns)):
        k = conns[conn]  # type: ignore[index]
        try:
            msg = conn.recv()  # type: ignore[union-attr]
        except EOFError:
            procs[k].join(5)
            raise JubakoError(f"shard process {k} exited ({procs[k].exitcode}) before its work was done") from None
        if msg[0] == "error":
            raise JubakoError(msg[1])
        got.append((conn, k, msg))
    return got  # type: ignore[return-value]


def _stop(procs: list[Any]) -> None:
    for p in procs:
        if p.is_alive():
            p.terminate()  # SIGTERM: a shard dies between whole-file writes; its chunk is done again
    deadline = time.monotonic() + 10
    for p in procs:
        p.join(max(0.1, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join(5)


# --- in a shard process ----------------------------------------------------------------


def _die_with_parent(parent: int) -> None:
    """SIGKILL this shard when the coordinator dies (killed with SIGKILL, it cannot stop us)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before the line above
        os._exit(1)


def _shard_main(k: int, args: ShardArgs, counter: Any, claims: Claims | None, go: Any, conn: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the coordinator's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # forked: not the CLI's handler
    _die_with_parent(args.parent)
    storage.reset_client()  # forked: the coordinator's S3 connections are its own
    try:
        # the cores are shared between the shards, as between worker processes
        if not os.environ.get("JUBAKO_NUM_THREADS"):
            os.environ["JUBAKO_NUM_THREADS"] = str(max(1, available_cpus() // args.shards))
        os.environ.setdefault("JUBAKO_LOG_LEVEL", "CRITICAL")
        job = _shard_job(args)
        try:
            import uvloop

            uvloop.run(_shard(job, k, counter, claims, go, conn))
        except ImportError:
            asyncio.run(_shard(job, k, counter, claims, go, conn))
        conn.send(("end",))
    except BaseException as e:  # noqa: BLE001 - the coordinator reports it
        msg = str(e) if isinstance(e, JubakoError) else f"shard {k}: {type(e).__name__}: {e}"
        with contextlib.suppress(Exception):
            conn.send(("error", msg))
        sys.exit(1)
    finally:
        conn.close()


def _shard_job(args: ShardArgs) -> _Job:
    from jubako.loader import open_bento

    manifest = open_bento(args.bento_path).manifest
    spec = next(a for a in manifest.apis if a.name == args.api)
    opts = args.opts
    adapter = make_adapter(opts, spec, args.out_fmt)
    reader = formats.open_reader(opts.input, args.in_fmt, opts.chunk_rows)
    return _Job(opts, args.api, args.batchable, args.max_batch, 1, adapter, reader, storage.Parts(opts.output),
                args.out_fmt, 0, args.bento_path, "inprocess", sys.executable, None, args.in_fmt)


def _setup(job: _Job) -> bool:
    """Set the adapter up from the input's first rows, as the other executors do from the
    first chunk, whichever chunks this shard scores (part of starting: before the shard
    says it is ready). False: the input has no rows."""
    # the set-up looks at the column types and at most the first 1000 rows (JSON Lines: the
    # keys of the whole first chunk), so CSV and Parquet read only those rows for it
    rows = job.opts.chunk_rows if job.in_fmt == "jsonl" else min(job.opts.chunk_rows, SETUP_ROWS)
    first_reader = formats.open_reader(job.opts.input, job.in_fmt, rows)
    first_reader.only = job.adapter.needed()
    chunks = first_reader.chunks()
    try:
        first = next(chunks, None)
    finally:
        chunks.close()
    if first is None:
        return False
    job.adapter.setup(first_reader.columns, first)
    job.reader.adopt(first_reader)  # JSON Lines: the first chunk's keys and types
    job.adapter.narrow(job.reader)
    return True


def _items(job: _Job, claim: Any) -> Any:
    """The claimed chunks and their items."""
    for chunk in job.reader.chunks(claim):
        yield chunk, job.adapter.items(chunk)


async def _shard(job: _Job, k: int, counter: Any, claims: Claims | None, go: Any, conn: Connection) -> None:
    from .inprocess import InProcessPool

    pool = InProcessPool(job.bento_path, 1)
    tasks: list[asyncio.Future[Any]] = []
    try:
        await pool.start()
        gc.freeze()  # the service and its models, as the coordinator's modules before the fork
        if not await asyncio.to_thread(_setup, job):
            return
        conn.send(("ready", pool.devices))
        await asyncio.to_thread(go.wait)

        past_end = -(-(job.reader.total_rows or 0) // job.opts.chunk_rows)

        def claim() -> int:
            if claims is not None:
                return claims.claim(k, past_end)
            with counter.get_lock():
                index = int(counter.value)
                counter.value = index + 1
            return index

        it = _items(job, claim)
        commits: deque[asyncio.Future[None]] = deque()
        next_chunk = asyncio.ensure_future(asyncio.to_thread(next, it, None))
        tasks.append(next_chunk)
        while True:
            got = await next_chunk
            if got is None:
                break
            chunk, items = got
            next_chunk = asyncio.ensure_future(asyncio.to_thread(next, it, None))  # read ahead
            tasks.append(next_chunk)
            scored = asyncio.ensure_future(_score(job, pool, chunk, items))
            before = commits[-1] if commits else None
            commits.append(asyncio.ensure_future(_commit(job, before, scored, conn)))
            tasks += [scored, commits[-1]]
            while len(commits) >= SHARD_IN_FLIGHT or (commits and commits[0].done()):
                await commits.popleft()
            tasks = [t for t in tasks if not t.done()]
        while commits:
            await commits.popleft()
    finally:
        for t in tasks:
            t.cancel()
        await pool.close()


async def _commit(job: _Job, before: asyncio.Future[None] | None, scored: asyncio.Future[Any],
                  conn: Connection) -> None:
    if before is not None:
        await before  # this shard's chunks in order: its markers never skip one of its own
    chunk, table, errors = await scored
    await asyncio.to_thread(_commit_part, job, chunk, table, errors)
    conn.send(("done", chunk.index, chunk.rows, len(errors), chunk.bytes_read))
