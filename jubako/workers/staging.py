"""Page-locked (pinned) host buffers for asynchronous host->GPU copies, reused safely.

A ``non_blocking`` copy from pinned memory returns before the GPU has read the buffer. With
one buffer per (dtype, size), the next batch of that size could overwrite it while the
previous copy is still queued on the stream (two or more batches in flight), and the GPU
would read the wrong rows. So each (dtype, size) has a small ring of buffers, each with the
CUDA event recorded right after the copy that reads it: a buffer is reused only once its
event has completed, and when every buffer of the ring is in flight the oldest one's event
is waited for. The allocator and the event factory are injected, so the logic is tested on
CPU with a fake stream (tests/runtime/test_staging.py).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(eq=False, slots=True)  # compared by identity (buffers are tensors)
class _Slot:
    buffer: Any
    event: Any = None  # recorded after the copy that reads the buffer; None: never used

    def free(self) -> bool:
        return self.event is None or bool(self.event.query())


class PinnedStaging:
    """``stage(tensor, copy)``: ``tensor`` copied into a free pinned buffer, then
    ``copy(staged)`` (the asynchronous device copy), with an event recorded behind it."""

    def __init__(self, alloc: Callable[[int, Any], Any], new_event: Callable[[], Any], depth: int = 4,
                 max_sizes: int = 32):
        self._alloc = alloc  # (numel, dtype) -> a 1-D pinned host tensor
        self._new_event = new_event  # () -> torch.cuda.Event-like: record(), query(), synchronize()
        self.depth = depth
        # bounded: batch sizes vary, and each size holds up to ``depth`` pinned buffers
        self.max_sizes = max_sizes
        self._rings: OrderedDict[tuple[Any, int], deque[_Slot]] = OrderedDict()

    def stage(self, tensor: Any, copy: Callable[[Any], Any]) -> Any:
        key = (tensor.dtype, tensor.numel())
        ring = self._rings.get(key)
        if ring is None:
            ring = self._rings[key] = deque()
            self._evict()
        self._rings.move_to_end(key)
        slot = next((s for s in ring if s.free()), None)
        if slot is None and len(ring) < self.depth:
            slot = _Slot(self._alloc(tensor.numel(), tensor.dtype))
        elif slot is None:
            slot = ring[0]  # the oldest: its copy was queued first, so it ends first
            slot.event.synchronize()
        if slot in ring:
            ring.remove(slot)
        ring.append(slot)  # most recently used last: the ring's head is always the oldest
        staged = slot.buffer.view(tensor.shape)
        staged.copy_(tensor)
        out = copy(staged)
        event = self._new_event()
        event.record()  # on the current stream, behind the copy: done once the copy has read the buffer
        slot.event = event
        return out

    def _evict(self) -> None:
        """Forget the least recently used sizes past ``max_sizes`` whose copies are done."""
        while len(self._rings) > self.max_sizes:
            for key, ring in self._rings.items():
                if all(s.free() for s in ring):
                    del self._rings[key]
                    break
            else:
                return  # everything is in flight: keep it (bounded by what is in flight)
