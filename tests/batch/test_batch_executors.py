"""The two executors of `jubako run` (the service in this process, the runtime's worker
processes) give the same bytes, output and error file (the tensor round trips compare them
in test_batch_roundtrip.py), and the automatic choice follows the documented rule
(docs/batch.md, "Executors")."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from jubako.batch import Options, run
from jubako.batch.runner import choose_executor
from jubako.errors import ConfigError
from jubako.manifest import JSONSpec, TensorSpec, TextSpec

from .conftest import features


def _both(tmp_path: Path, name: str, **kw: object) -> dict[str, tuple[bytes, bytes | None]]:
    got = {}
    for executor in ("workers", "inprocess"):
        out = tmp_path / executor / name
        out.parent.mkdir(exist_ok=True)
        summary = run(Options(output=str(out), executor=executor, progress=False, **kw))  # type: ignore[arg-type]
        assert summary.executor == executor
        errors = Path(str(out) + ".errors.jsonl")
        got[executor] = (out.read_bytes(), errors.read_bytes() if errors.exists() else None)
    return got


def test_json_api_and_bad_rows_same_bytes(tmp_path: Path, torch_bento: str) -> None:
    items: list[object] = [{"values": r.tolist()} for r in features(200, seed=1)]
    items[6] = {"values": [0.5] * 3}  # pydantic refuses it, in the executor
    items[70] = {"other": 1}
    src = tmp_path / "items.jsonl"
    src.write_bytes(b"".join(orjson.dumps(i) + b"\n" for i in items) + b"{not json\n")
    got = _both(tmp_path, "labels.jsonl", bento=torch_bento, api="classify", input=str(src), chunk_rows=64)
    assert got["inprocess"] == got["workers"]
    errors = [orjson.loads(line) for line in (got["workers"][1] or b"").splitlines()]
    assert [e["row"] for e in errors] == [7, 71, 201]


def test_choose_executor() -> None:
    tensor = type("Spec", (), {"input": TensorSpec(dtype="float32", shape=[None, 16])})()
    json_ = type("Spec", (), {"input": JSONSpec(schema={})})()
    text = type("Spec", (), {"input": TextSpec()})()
    # a tensor API: one process per instance (the reading and writing escape the GIL too)
    assert choose_executor("auto", tensor, None, cores=2, gpu=False) == "sharded"
    assert choose_executor("auto", tensor, 4, cores=1, gpu=False) == "sharded"
    assert choose_executor("auto", tensor, None, cores=1, gpu=False) == "inprocess"  # one instance
    assert choose_executor("auto", tensor, 1, cores=8, gpu=False) == "inprocess"
    assert choose_executor("auto", tensor, None, cores=8, gpu=True) == "inprocess"  # one instance per GPU
    assert choose_executor("auto", tensor, 2, shardable=False, gpu=False) == "inprocess"  # text on S3
    assert choose_executor("auto", json_, None, cores=2, gpu=False) == "inprocess"
    assert choose_executor("auto", json_, 2, gpu=False) == "workers"  # per-item Python holds the GIL
    assert choose_executor("auto", text, 3, gpu=False) == "workers"
    assert choose_executor("workers", tensor, None) == "workers"
    assert choose_executor("inprocess", json_, 4) == "inprocess"
    assert choose_executor("sharded", json_, 4) == "sharded"
    with pytest.raises(ConfigError, match="--executor 'threads'"):
        choose_executor("threads", tensor, 1)


def test_inprocess_batches_are_private_writable_copies(onnx_bento: str) -> None:
    """As over the wire: the API may write into its input (torch wants writable arrays), and
    the rows it was given stay as read, for the re-run after a failed batch."""
    import asyncio

    import numpy as np

    from jubako.batch.inprocess import InProcessPool

    async def main() -> tuple[list[bool], tuple[int, ...], float]:
        pool = InProcessPool(onnx_bento, 1)
        await pool.start()
        try:
            runner = pool.lanes[0].runners["predict"]
            api, seen = runner.bound, []

            def scribbling(x: np.ndarray) -> np.ndarray:
                seen.append(x.flags.writeable)
                x[:] = 0
                return api(x)

            runner.bound = scribbling
            rows = np.ones((4, 16), np.float32)
            rows.flags.writeable = False  # as Arrow-backed rows are
            res = await asyncio.wait_for(pool.run_group(lambda lane: lane.call("predict", [4], tensor=rows)), 60)
            return seen, res.statuses, float(rows.sum())
        finally:
            await pool.close()

    seen, statuses, total = asyncio.run(main())
    assert seen == [True] and statuses == (200,) and total == 64.0


def test_inprocess_pool_shortens_the_switch_interval_and_restores_it(onnx_bento: str) -> None:
    """The lanes take the GIL back after each model call: the pool shortens the switch
    interval while it runs (inprocess.SWITCH_INTERVAL) and gives the process its own back."""
    import asyncio
    import sys

    from jubako.batch.inprocess import SWITCH_INTERVAL, InProcessPool

    before = sys.getswitchinterval()
    assert before > SWITCH_INTERVAL

    async def main() -> float:
        pool = InProcessPool(onnx_bento, 1)
        await pool.start()
        try:
            return sys.getswitchinterval()
        finally:
            await pool.close()

    assert asyncio.run(main()) == SWITCH_INTERVAL
    assert sys.getswitchinterval() == before


PICKY = '''
import numpy as np

import jubako
from jubako import Tensor


@jubako.service(name="picky")
class Picky:
    @jubako.api(batchable=True, max_batch_size=8)
    def predict(self, x: Tensor[np.float32, (None, 4)]) -> Tensor[np.float32, (None, 2)]:
        x += 1  # writes into its input before it fails: a re-run must see the rows as read
        if (x[:, 0] < -100).any():
            raise ValueError("a row below -100")
        if (x[:, 0] > 100).any():
            return x[:, :3]  # not the declared shape
        return x[:, :2]
'''


@pytest.fixture(scope="module")
def picky_bento(tmp_path_factory: pytest.TempPathFactory) -> str:
    from jubako.build import build
    from jubako.store import Store

    src = tmp_path_factory.mktemp("picky")
    (src / "service.py").write_text(PICKY)
    (src / "jubako.yaml").write_text('service: service:Picky\ninclude: ["service.py"]\n'
                                     'python:\n  requirements: ["numpy"]\n')
    return str(build(src, store=Store(tmp_path_factory.mktemp("picky-home"))).path)


def test_failing_batches_same_bytes_and_rows_as_read(tmp_path: Path, picky_bento: str) -> None:
    """The in-process executor calls a tensor API on whole batches without the worker's
    executor; a batch that raises or returns the wrong shape then goes the worker's way:
    only its bad rows fail, with the worker's messages, and its other rows are scored as
    they were read."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    x = np.arange(100 * 4, dtype=np.float32).reshape(100, 4) / 1000
    x[13, 0] = -500  # raises: batch 8-15
    x[42, 0] = 500  # wrong output shape: batch 40-47
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({f"f{i}": x[:, i] for i in range(4)}), src, row_group_size=30)
    got = _both(tmp_path, "out.parquet", bento=picky_bento, input=str(src), chunk_rows=40)
    assert got["inprocess"] == got["workers"]
    errors = [orjson.loads(line) for line in (got["inprocess"][1] or b"").splitlines()]
    assert [e["row"] for e in errors] == [14, 43]
    assert errors[0]["error"] == "API 'predict': ValueError: a row below -100"
    assert errors[1]["error"].startswith("API 'predict': output: returned shape (1, 3) for 1 item(s)")
    out = pq.read_table(tmp_path / "inprocess" / "out.parquet").column("predict").to_pylist()
    want = (x[:, :2] + 1).tolist()
    assert [r for i, r in enumerate(out) if i not in (13, 42)] == [r for i, r in enumerate(want) if i not in (13, 42)]
    assert out[13] is None and out[42] is None


def test_a_stopped_lane_runs_down_what_it_was_handed() -> None:
    """Work handed to a lane just before it stops (a failed commit cancels the scoring in
    flight, then the pool closes) is cancelled and run to its end, not dropped unstarted
    with its loop: a dropped coroutine warns 'never awaited' and its future never ends."""
    import asyncio
    import gc
    import threading
    import time
    import warnings

    from jubako.batch.inprocess import Lane

    lane = Lane(0)
    lane.thread.start()
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        held.set()
        release.wait(10)

    ran = []

    async def work() -> int:
        ran.append(1)
        await asyncio.sleep(10)
        return 1

    lane.loop.call_soon_threadsafe(hold)
    assert held.wait(10)
    fut = lane.submit(work())  # queued behind hold(), then the stop is queued behind it
    stopper = threading.Thread(target=lane.stop)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stopper.start()
        deadline = time.monotonic() + 10
        while len(lane.loop._ready) < 2 and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.001)  # until the stop is queued (call_soon_threadsafe) behind the work
        release.set()
        stopper.join(10)
        gc.collect()
    assert not stopper.is_alive() and not lane.thread.is_alive()
    assert fut.done() and fut.cancelled()
    assert [str(w.message) for w in caught if "never awaited" in str(w.message) or "destroyed" in str(w.message)] == []
    assert lane.loop.is_closed()
