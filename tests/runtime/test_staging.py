"""Pinned staging for host->device copies with several batches in flight, on CPU with a
fake stream: a later batch never overwrites a buffer whose asynchronous copy is queued."""

from __future__ import annotations

import torch

from jubako.workers.staging import PinnedStaging


class FakeStream:
    """Device copies run only when an event behind them is waited on or the stream
    drains, as an asynchronous copy on a busy CUDA stream would: they read the buffer late."""

    def __init__(self) -> None:
        self.queued: list[tuple[torch.Tensor, list[torch.Tensor]]] = []
        self.ran = 0
        self.syncs = 0

    def copy(self, staged: torch.Tensor) -> list[torch.Tensor]:
        out: list[torch.Tensor] = []
        self.queued.append((staged, out))
        return out

    def run_to(self, count: int) -> None:
        while self.ran < count and self.queued:
            staged, out = self.queued.pop(0)
            out.append(staged.clone())  # the copy reads the buffer only now
            self.ran += 1

    def drain(self) -> None:
        self.run_to(self.ran + len(self.queued))

    def event(self) -> FakeEvent:
        return FakeEvent(self)


class FakeEvent:
    def __init__(self, stream: FakeStream):
        self.stream = stream
        self.target = 0

    def record(self) -> None:
        self.target = self.stream.ran + len(self.stream.queued)

    def query(self) -> bool:
        return self.stream.ran >= self.target

    def synchronize(self) -> None:
        self.stream.syncs += 1
        self.stream.run_to(self.target)


def make(depth: int) -> tuple[PinnedStaging, FakeStream]:
    stream = FakeStream()
    staging = PinnedStaging(alloc=lambda n, dtype: torch.empty(n, dtype=dtype), new_event=stream.event, depth=depth)
    return staging, stream


def test_batches_in_flight_get_their_own_buffers() -> None:
    staging, stream = make(depth=4)
    a = staging.stage(torch.full((2, 3), 1.0), stream.copy)
    b = staging.stage(torch.full((2, 3), 2.0), stream.copy)  # a's copy has not run yet
    stream.drain()
    assert torch.equal(a[0], torch.full((2, 3), 1.0))
    assert torch.equal(b[0], torch.full((2, 3), 2.0))


def test_when_every_buffer_is_in_flight_the_oldest_copy_is_waited_for() -> None:
    staging, stream = make(depth=2)
    outs = [staging.stage(torch.full((4,), float(i)), stream.copy) for i in range(5)]
    stream.drain()
    for i, out in enumerate(outs):
        assert torch.equal(out[0], torch.full((4,), float(i))), i
    assert stream.syncs >= 1
