"""Which chunk a shard of the ``sharded`` executor scores next.

A Parquet page cannot be skipped: to read a chunk that starts inside a row group, a shard
decodes that row group's rows before it and drops them. Handing out chunk indices in turn
(shard A 0, 2, 4 ..., shard B 1, 3, 5 ...) made every shard decode every row of the file,
half of them to drop (~0.05 us per row on the 2-core VM, a tenth of a run's CPU for the
example MLP). So shards claim *ranges*: a shard takes the next row group nobody has taken
(its chunks, in order, as one read), and when none is left it takes the back half of the
largest range another shard has not reached yet (decoding from that row group's start
once). Shards working on different row groups commit out of order; the coordinator holds a
row group's parts until the one before is in the output, at most about a row group each.

The state is a few integers shared by the processes (a ``multiprocessing`` array and its
lock); :func:`take` is the whole policy, on any mutable sequence, so it is tested alone.
"""

from __future__ import annotations

from collections.abc import MutableSequence, Sequence
from typing import Any

DONE = -1


def group_ranges(starts: Sequence[int], total_rows: int, chunk_rows: int, first: int) -> list[tuple[int, int]]:
    """The chunk indices [lo, hi) whose first row lies in each row group (``starts``: each
    row group's first row), from chunk ``first`` on (a resumed run's earlier chunks are done)."""
    chunks = -(-total_rows // chunk_rows)
    ranges = []
    for g, start in enumerate(starts):
        end = starts[g + 1] if g + 1 < len(starts) else total_rows
        lo, hi = max(-(-start // chunk_rows), first), min(-(-end // chunk_rows), chunks)
        if lo < hi:
            ranges.append((lo, hi))
    return ranges


def initial_state(ranges: list[tuple[int, int]], shards: int) -> list[int]:
    """[next unowned range, then (lo, hi) per shard, then (lo, hi) per range]."""
    return [0, *([0, 0] * shards), *(x for r in ranges for x in r)]


def take(state: MutableSequence[int], shard: int, shards: int) -> int:
    """The next chunk for ``shard`` (DONE: nothing left), updating ``state`` (hold its lock)."""
    own = 1 + 2 * shard
    lo, hi = state[own], state[own + 1]
    if lo < hi:
        state[own] = lo + 1
        return lo
    base = 1 + 2 * shards
    n_ranges = (len(state) - base) // 2
    while state[0] < n_ranges:  # a row group nobody has started
        g = base + 2 * state[0]
        state[0] += 1
        lo, hi = state[g], state[g + 1]
        if lo < hi:
            state[own], state[own + 1] = lo + 1, hi
            return lo
    # the back half of the largest range still ahead of another shard (one chunk is left to
    # its owner: it gets there sooner than a thief decoding the row group from its start)
    victim, left = -1, 1
    for k in range(shards):
        o = 1 + 2 * k
        if k != shard and state[o + 1] - state[o] > left:
            victim, left = o, state[o + 1] - state[o]
    if victim < 0:
        return DONE
    lo, hi = state[victim], state[victim + 1]
    mid = lo + (hi - lo) // 2
    state[victim + 1] = mid
    state[own], state[own + 1] = mid + 1, hi
    return mid


class Claims:
    """:func:`take` over an array shared by the coordinator and its shards (picklable to
    a spawned shard with the process's arguments, inherited by a forked one)."""

    def __init__(self, ctx: Any, ranges: list[tuple[int, int]], shards: int):
        self.shards = shards
        self.array = ctx.Array("q", initial_state(ranges, shards))

    def claim(self, shard: int, past_end: int) -> int:
        with self.array.get_lock():
            index = take(self.array.get_obj(), shard, self.shards)
        return past_end if index == DONE else index
