"""Which chunk a shard scores next (jubako/batch/claims.py): every chunk exactly once, a
shard's chunks consecutive within a row group (one read, nothing decoded to be dropped),
the back half of the largest range taken when no row group is left."""

from __future__ import annotations

import multiprocessing
import random

import pytest

from jubako.batch.claims import DONE, Claims, group_ranges, initial_state, take


def test_group_ranges_follow_each_chunks_first_row() -> None:
    # row groups of 100, 0 (empty), 250 and 50 rows; chunks of 60 rows
    starts, total = [0, 100, 100, 350], 400
    assert group_ranges(starts, total, 60, 0) == [(0, 2), (2, 6), (6, 7)]
    # a resumed run: chunks before 3 are done
    assert group_ranges(starts, total, 60, 3) == [(3, 6), (6, 7)]
    assert group_ranges(starts, total, 60, 7) == []
    assert group_ranges([0], 0, 60, 0) == []


def test_each_shard_takes_a_row_group_of_its_own() -> None:
    state = initial_state([(0, 4), (4, 8), (8, 12)], 2)
    assert [take(state, 0, 2) for _ in range(2)] == [0, 1]
    assert [take(state, 1, 2) for _ in range(4)] == [4, 5, 6, 7]  # its own group, in order
    assert take(state, 1, 2) == 8  # the next group nobody has
    assert [take(state, 0, 2) for _ in range(2)] == [2, 3]
    # no group left: shard 0 takes the back half of what shard 1 has not reached (9, 10, 11)
    assert take(state, 0, 2) == 10
    assert take(state, 1, 2) == 9
    assert take(state, 0, 2) == 11
    assert take(state, 1, 2) == DONE
    assert take(state, 0, 2) == DONE


def test_one_row_group_is_split_between_the_shards() -> None:
    state = initial_state([(0, 8)], 2)
    assert take(state, 0, 2) == 0
    assert take(state, 1, 2) == 4  # the back half of 1..7
    assert [take(state, 0, 2) for _ in range(3)] == [1, 2, 3]
    assert [take(state, 1, 2) for _ in range(3)] == [5, 6, 7]
    assert take(state, 0, 2) == DONE


def test_the_last_chunk_of_a_range_is_left_to_its_owner() -> None:
    state = initial_state([(0, 2)], 2)
    assert take(state, 0, 2) == 0
    assert take(state, 1, 2) == DONE  # one chunk left: shard 0 is already reading its row group
    assert take(state, 0, 2) == 1


@pytest.mark.parametrize("seed", range(20))
def test_any_interleaving_claims_every_chunk_once(seed: int) -> None:
    rnd = random.Random(seed)
    shards = rnd.randint(1, 5)
    bounds = sorted(rnd.sample(range(1, 60), rnd.randint(0, 6)))
    edges = [0, *bounds, 60]
    ranges = [(a, b) for a, b in zip(edges, edges[1:], strict=False)]
    state = initial_state(ranges, shards)
    got: list[list[int]] = [[] for _ in range(shards)]
    active = list(range(shards))
    while active:
        k = rnd.choice(active)
        i = take(state, k, shards)
        if i == DONE:
            active.remove(k)
        else:
            got[k].append(i)
    assert sorted(i for g in got for i in g) == list(range(60))
    for claims in got:  # a shard moves backwards only to take a new range (a reopened read)
        backwards = sum(1 for a, b in zip(claims, claims[1:], strict=False) if b < a)
        assert backwards <= len(ranges) + shards


def test_claims_shared_between_processes() -> None:
    ctx = multiprocessing.get_context("fork")
    claims = Claims(ctx, [(0, 30), (30, 60)], 3)
    out = ctx.Queue()

    def shard(k: int) -> None:
        mine = []
        while (i := claims.claim(k, 60)) != 60:
            mine.append(i)
        out.put(mine)

    procs = [ctx.Process(target=shard, args=(k,)) for k in range(3)]
    for p in procs:
        p.start()
    got = [out.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(30)
    assert sorted(i for g in got for i in g) == list(range(60))
