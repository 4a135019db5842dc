"""The in-process execution path of ``jubako run``: the service loaded in this process.

A cheap model (the example MLP costs microseconds per row) spends more time crossing a
process boundary than computing, so ``jubako run`` can load the bento here instead of
starting workers (docs/batch.md, "Executors"). Each of N *lanes* is one service instance
on its own thread with its own event loop (torch keeps per-thread state; a sync API then
runs on that thread directly, without a hop per batch). Models that release the GIL
(onnxruntime, torch, numpy) run on N lanes at once.

A lane runs the runtime worker's own executor (:class:`jubako.workers.executor.ApiRunner`)
on each batch, and takes the answer it would encode in a RESULT frame: same conversions,
same re-runs, same messages as the worker path, so both paths give the same bytes. The caller hands a lane a
whole group of batches at a time (:meth:`InProcessPool.run_group`), so the thread hop is
paid per group, not per batch.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import numpy as np

from jubako.devices import available_cpus
from jubako.errors import JubakoError
from jubako.manifest import TensorSpec
from jubako.workers import wire

T = TypeVar("T")


async def _direct(fn: Callable[[Any], Any], arg: Any) -> Any:
    return fn(arg)  # already on the lane's thread: no hop


class Lane:
    """One service instance on one thread, with the thread's own event loop."""

    def __init__(self, index: int):
        self.index = index
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._main, name=f"jubako-lane-{index}", daemon=True)
        self.runners: dict[str, Any] = {}
        self.device: str | None = None
        self.busy = 0

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()
        # stopped: what was handed to the lane and has not ended (work queued just before
        # the stop, when a failed commit cancels the scoring in flight) is cancelled and
        # run to its end, so that its caller's future ends and no coroutine is dropped
        # unstarted with the loop
        while pending := asyncio.all_tasks(self.loop):
            for task in pending:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.close()

    def submit(self, coro: Awaitable[T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]

    async def call(self, api: str, sizes: list[int], tensor: np.ndarray | None = None,
                   segments: list[bytes] | None = None) -> wire.Result:
        """One batch through the worker's executor, on this lane's thread."""
        runner = self.runners[api]
        if tensor is not None:
            # the batch's own writable copy, as a worker gets it from the wire: the API may
            # write into its input (torch warns on read-only arrays), and a re-run after a
            # failed batch must see the rows as they were read
            tensor = np.array(tensor, order="C")
        call = wire.Call(0, api, tuple(sizes), tensor, segments)
        o = await runner.execute(call, time.perf_counter(), _direct)  # what the worker would encode
        return wire.Result(0, o.exec_seconds, o.wait_seconds, tuple(o.statuses), o.tensor, o.segments)

    def whole_batches(self, api: str) -> bool:
        """Whether :meth:`run_tensor` serves ``api``: a sync batchable API from tensors to
        tensors (an async API, or JSON and text, goes through :meth:`call`)."""
        runner = self.runners[api]
        return (runner.batchable and not runner.api.is_async and isinstance(runner.input, TensorSpec)
                and isinstance(runner.output, TensorSpec))

    async def run_tensor(self, api: str, x: np.ndarray,
                         spans: list[tuple[int, int]]) -> tuple[np.ndarray | None, list[np.ndarray | None]]:
        """Rows ``a:b`` of ``x`` for each span, each as one call of the API on this thread:
        the output checked as the worker's executor checks it, or None where the call
        raised or its output does not fit (the caller then runs that batch through
        :meth:`call`: the worker's re-runs and messages). For a model that costs
        microseconds per row the executor's per-batch work (a coroutine, the split and
        join of requests, a copy per batch) cost more than the model; here a batch costs
        the API call, a slice and a dtype/shape comparison. When every call succeeded and
        the output's rows have a fixed shape, the first value is all the outputs in one
        array (the caller then has nothing to do per batch), else None."""
        runner = self.runners[api]
        want = np.dtype(runner.output.dtype)
        item = tuple(runner.output.shape[1:])
        fixed = None not in item  # else every output goes through the executor's check
        # one writable copy of the rows for the whole group, as a worker gets its batch
        # from the wire; x itself stays as read for the batches that fail
        lo, hi = spans[0][0], spans[-1][1]
        work = np.array(x[lo:hi], order="C")
        block = np.empty((hi - lo, *item), dtype=want) if fixed else None
        fn, join, check = runner.bound, runner._join, runner._out_array
        torch = runner._torch is not None
        outs: list[np.ndarray | None] = []
        for a, b in spans:
            n = b - a
            try:
                v = work[a - lo : b - lo]
                out = fn(join([v]) if torch else v)
                if not (fixed and type(out) is np.ndarray and out.dtype == want and out.shape == (n, *item)):
                    out = check(out, n)  # converts, or raises OutputError
                outs.append(out)
                if block is not None:
                    block[a - lo : b - lo] = out
            except Exception:
                outs.append(None)
                block = None
        return block, outs

    def stop(self) -> None:
        if self.thread.ident is None:  # never started (the pool failed before)
            self.loop.close()
        elif not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(30)


def default_lanes() -> int:
    """Service instances when --workers is not given: one per core up to 4 on CPU (each
    holds its own copy of the models), one on a GPU. Asked after the service is imported,
    so that torch is looked at only when the bento uses it."""
    from jubako import devices

    if devices.requested().startswith("cuda"):
        return 1
    if "torch" in sys.modules and devices.torch_device().startswith("cuda"):
        return 1
    return min(4, available_cpus())


# A lane releases the GIL for every model call (~15 us for the MLP's 64 rows) and must
# take it back from whichever thread holds it (the event loop, the read-ahead and the
# commit threads run Python too); a waiting thread asks for it only after the switch
# interval, 5 ms by default. With 0.5 ms the MLP ran 10-30 % more rows/s (2M rows,
# 2 lanes, alternated with the default on the loaded 2-core VM; bench/README.md). Set
# for the run, restored when the pool closes.
SWITCH_INTERVAL = 0.0005


class InProcessPool:
    """N lanes in this process; the same life cycle as :class:`.workers.WorkerPool`."""

    def __init__(self, bento: str, lanes: int | None):
        if lanes is not None and lanes < 1:
            raise JubakoError("--workers must be >= 1")
        self.bento = bento
        self.want = lanes
        self.lanes: list[Lane] = []
        self.src: str | None = None
        self.changed: asyncio.Condition | None = None
        self.switch_interval: float | None = None  # the process's, restored on close

    @property
    def devices(self) -> list[str]:
        return [str(lane.device or "cpu") for lane in self.lanes]

    async def start(self) -> None:
        from jubako.loader import SRC_DIR, load_service, open_bento
        from jubako.workers.executor import configure_threads, runners

        self.changed = asyncio.Condition()
        if self.switch_interval is None:
            self.switch_interval = sys.getswitchinterval()
            sys.setswitchinterval(min(SWITCH_INTERVAL, self.switch_interval))
        bundle = open_bento(self.bento)
        self.src = str(bundle.path / SRC_DIR)
        service = load_service(bundle)  # imports the service's module, and its frameworks
        self.lanes = [Lane(i) for i in range(self.want or default_lanes())]
        # the cores are shared between the lanes, as between worker processes
        if not os.environ.get("JUBAKO_NUM_THREADS"):
            os.environ["JUBAKO_NUM_THREADS"] = str(max(1, available_cpus() // len(self.lanes)))
        # torch only when the service uses it: importing it costs ~200 MiB and seconds
        device = configure_threads() if "torch" in sys.modules else None
        for lane in self.lanes:
            lane.thread.start()
        # each instance is created on its lane's thread (torch keeps per-thread state)
        try:
            instances = await asyncio.gather(*(asyncio.wrap_future(lane.submit(self._create(bundle, service)))
                                               for lane in self.lanes))
        except JubakoError:
            raise
        except Exception as e:  # the service's __init__ or a model that does not load
            raise JubakoError(f"the service {bundle.manifest.service} could not start: {type(e).__name__}: {e}") from e
        if device is None and "torch" in sys.modules:  # imported while loading a model
            device = configure_threads()
        for lane, instance in zip(self.lanes, instances, strict=True):
            lane.runners = runners(service, instance, device)
            lane.device = device

    @staticmethod
    async def _create(bundle: Any, service: Any) -> Any:
        import jubako.models

        with jubako.models.bento_context(bundle.path, bundle.manifest):
            return service.create()

    async def run_group(self, work: Callable[[Lane], Awaitable[T]]) -> T:
        """Run ``work(lane)`` on the least busy lane's thread and wait for it."""
        assert self.changed is not None
        async with self.changed:
            lane = min(self.lanes, key=lambda lane: lane.busy)
            lane.busy += 1
        try:
            return await asyncio.wrap_future(lane.submit(work(lane)))
        finally:
            async with self.changed:
                lane.busy -= 1

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._stop_all)

    def _stop_all(self) -> None:
        for lane in self.lanes:
            lane.stop()
        self.lanes = []
        self._forget()
        if self.switch_interval is not None:
            sys.setswitchinterval(self.switch_interval)
            self.switch_interval = None

    def _forget(self) -> None:
        """Take the bento's src/ off sys.path and forget its modules, so that a later run
        in this process (a notebook, tests) imports its own bento's ``service`` module,
        not this one's under the same name."""
        if self.src is None:
            return
        while self.src in sys.path:
            sys.path.remove(self.src)
        for name, mod in list(sys.modules.items()):
            if (getattr(mod, "__file__", None) or "").startswith(self.src + os.sep):
                del sys.modules[name]
