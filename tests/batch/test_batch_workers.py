"""jubako run's worker processes over the shared worker link (jubako.workers): a worker
SIGKILLed between batches, or while its batches are in flight, is started again and
those batches are sent again; every call gets the right rows back."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import numpy as np
import pytest

from jubako.batch.workers import WorkerPool

from .conftest import features

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]  # starts worker processes, twice


def test_a_killed_worker_is_restarted_and_its_batches_sent_again(onnx_bento: str, reference: Any) -> None:
    x = features(40, seed=3)
    want = np.stack(reference(onnx_bento).rows("predict", x))

    async def main() -> None:
        pool = WorkerPool(onnx_bento, workers=1, max_inflight=4)
        await pool.start()
        try:
            first = await pool.call("predict", [10], tensor=x[:10])
            assert first.statuses == (200,) and np.allclose(first.tensor, want[:10], atol=1e-5)
            assert pool.devices == ["cpu"]
            (w,) = pool.workers
            old = w.child.proc
            assert old is not None
            os.kill(old.pid, signal.SIGKILL)  # between batches
            await asyncio.wait_for(w.link.closed, 30)  # the pool has seen the connection go
            calls = [pool.call("predict", [10], tensor=x[a : a + 10]) for a in (10, 20, 30)]
            got = await asyncio.wait_for(asyncio.gather(*calls), 120)
            assert pool.restarts == 1 and w.child.proc is not old and w.child.alive()
            for a, r in zip((10, 20, 30), got, strict=True):
                assert r.statuses == (200,) and np.allclose(r.tensor, want[a : a + 10], atol=1e-5)

            # stopped first, so that the batches are still unanswered when it is killed (a busy
            # machine could otherwise let it answer them all before the SIGKILL lands)
            os.kill(w.child.proc.pid, signal.SIGSTOP)
            tasks = [asyncio.ensure_future(pool.call("predict", [10], tensor=x[a : a + 10])) for a in (0, 10, 20)]
            while w.link is None or not w.link.pending:  # until a batch is on the wire
                await asyncio.sleep(0)
            os.kill(w.child.proc.pid, signal.SIGKILL)  # with batches in flight
            got = await asyncio.wait_for(asyncio.gather(*tasks), 120)
            assert pool.restarts == 2
            for a, r in zip((0, 10, 20), got, strict=True):
                assert r.statuses == (200,) and np.allclose(r.tensor, want[a : a + 10], atol=1e-5)
        finally:
            await pool.close()
        assert not w.child.alive()

    asyncio.run(main())
