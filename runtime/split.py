"""A request of more items than a batch holds: split into parts the dispatcher queues
like requests, answered as one once every part is back (``max_batch_size`` bounds a
batch, not a request; ``max_queue_items`` is the hard cap per request)."""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from .answer import Answer, Sink
from .codec import ApiCodec


class Queued(NamedTuple):
    """A request's payload in the dispatcher: its decoded value and where its answer goes."""

    value: Any
    sink: Sink


def split(codec: ApiCodec, items: int, value: Any, sink: Sink, m: int) -> tuple[list[int], list[Queued]]:
    """A request of more than a batch (``m`` items): its parts and their payloads, each
    answering into one :class:`Gather` that answers the request once all are back."""
    starts = range(0, items, m)
    sizes = [min(m, items - a) for a in starts]
    if codec.tensor_in:
        chunks = [value[a : a + m] for a in starts]
    else:  # JSON items travel as the client's bytes: re-encode each part's slice
        parsed = orjson.loads(value)
        chunks = [orjson.dumps(parsed[a : a + m]) for a in starts]
    gather = Gather(sink, len(sizes))
    return sizes, [Queued(chunk, Part(gather, i)) for i, chunk in enumerate(chunks)]


class Gather:
    """Joins the answers of a split request's parts: the first failure answers it (its
    other parts are then ignored), else the JSON arrays are concatenated in order."""

    __slots__ = ("sink", "bodies", "left")

    def __init__(self, sink: Sink, n: int):
        self.sink = sink
        self.bodies: list[bytes] = [b""] * n
        self.left = n

    def answer(self, i: int, a: Answer) -> None:
        if self.sink.done():
            return
        if a.status != 200:
            self.sink.answer(a)
            return
        self.bodies[i] = a.body
        self.left -= 1
        if self.left == 0:  # each body is a compact JSON array (orjson): splice them
            inner = [b[1:-1] for b in self.bodies if len(b) > 2]
            self.sink.answer(Answer(200, b"[" + b",".join(inner) + b"]", a.content_type))


class Part:
    """The sink of one part of a split request."""

    __slots__ = ("gather", "index", "answered")

    def __init__(self, gather: Gather, index: int):
        self.gather, self.index, self.answered = gather, index, False

    def done(self) -> bool:
        return self.answered or self.gather.sink.done()

    def answer(self, a: Answer) -> None:
        if not self.answered:
            self.answered = True
            self.gather.answer(self.index, a)
