"""The batching policy on a fake clock: no sleeps, no IO."""

from __future__ import annotations

import pytest
from jubako.runtime.dispatcher import Batch, CostModel, Dispatcher, Pending, Refusal


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


def make(workers: int = 1, m: int = 8, latency: float = 0.05, inflight: int = 1, a: float = 0.002,
         b: float = 0.0005, queue: int | None = None) -> tuple[Dispatcher, Clock]:
    clock = Clock()
    d = Dispatcher(m, latency, max_queue_items=queue, max_inflight_per_worker=inflight,
                   cost=CostModel(a, b, span=m), clock=clock)
    for i in range(workers):
        d.add_worker(f"w{i}")
    return d, clock


def submit(d: Dispatcher, items: int = 1, tag: object = None, budget: float | None = None) -> Pending:
    p = d.submit(items, tag, budget)
    assert isinstance(p, Pending), p
    return p


def test_cost_model_learns_a_line() -> None:
    c = CostModel(a=0.1, b=0.1)
    for _ in range(50):
        for n in (1, 4, 16, 64):
            c.observe(n, 0.002 + 0.0003 * n)
    assert c.a == pytest.approx(0.002, rel=0.05)
    assert c.b == pytest.approx(0.0003, rel=0.05)


def test_cost_model_with_one_batch_size_predicts_that_size() -> None:
    c = CostModel(a=0.001, b=0.001)
    for _ in range(100):
        c.observe(1, 0.010)
    assert c(1) == pytest.approx(0.010, rel=0.05)


def test_cost_model_forgets_old_behaviour() -> None:
    c = CostModel()
    for _ in range(100):
        c.observe(8, 0.010)
    for _ in range(100):
        c.observe(8, 0.002)
    assert c(8) == pytest.approx(0.002, rel=0.05)


def test_idle_worker_gets_a_request_at_once() -> None:
    d, clock = make()
    p = submit(d)
    batches, expired = d.poll()
    assert expired == []
    assert len(batches) == 1 and batches[0].requests == [p]
    assert batches[0].dispatched_at == clock.t  # no idle delay at low load


def test_concurrency_one_never_waits() -> None:
    d, clock = make(inflight=2)
    for _ in range(20):
        submit(d)
        (batch,), _ = d.poll()
        assert batch.dispatched_at == clock.t
        clock.advance(0.003)
        d.complete(batch, exec_seconds=0.0025)
        clock.advance(0.001)
        assert d.next_wakeup() is None


def test_batches_grow_while_the_worker_is_busy_and_keep_fifo_order() -> None:
    d, clock = make(m=8)
    first = submit(d, tag=0)
    (b1,), _ = d.poll()
    assert b1.requests == [first]
    tags = list(range(1, 6))
    for t in tags:
        clock.advance(0.0002)
        submit(d, tag=t)
        assert d.poll() == ([], [])  # worker busy, in-flight limit 1: wait for completion
    assert d.next_wakeup() is None  # event-driven: nothing to do until the batch returns
    clock.advance(0.002)
    d.complete(b1, exec_seconds=0.002)
    (b2,), _ = d.poll()
    assert [p.payload for p in b2.requests] == tags
    assert b2.items == 5


def test_full_batch_goes_out_even_if_worker_pipeline_would_let_it_wait() -> None:
    d, clock = make(m=4, inflight=2)
    submit(d)
    d.poll()
    for _ in range(4):
        submit(d)
    (b,), _ = d.poll()
    assert b.items == 4


def test_second_inflight_batch_is_held_until_the_worker_is_about_to_free_up() -> None:
    d, clock = make(m=16, inflight=2, a=0.010, b=0.0)
    submit(d)
    (b1,), _ = d.poll()
    submit(d)
    assert d.poll() == ([], [])
    wake = d.next_wakeup()
    assert wake is not None and clock.t < wake <= b1.expected_finish
    for _ in range(5):
        clock.advance(0.001)
        submit(d)
        assert d.poll()[0] == []
    clock.t = wake
    (b2,), _ = d.poll()
    assert b2.items == 6  # everything that arrived while b1 ran
    assert b2.worker == b1.worker


def test_requests_are_never_split_and_batches_respect_max_size() -> None:
    d, clock = make(m=8)
    submit(d)
    (b0,), _ = d.poll()
    sizes = [3, 4, 2, 5, 1]
    for s in sizes:
        submit(d, s, tag=s)
    clock.advance(0.01)
    d.complete(b0)
    (b1,), _ = d.poll()
    assert [p.payload for p in b1.requests] == [3, 4]
    d.complete(b1)
    (b2,), _ = d.poll()
    assert [p.payload for p in b2.requests] == [2, 5, 1]


def test_oversized_request_is_a_caller_error() -> None:
    d, _ = make(m=8)
    with pytest.raises(ValueError):
        d.submit(9)


def test_least_loaded_worker() -> None:
    d, clock = make(workers=2, m=4, inflight=1)
    submit(d)
    batches, _ = d.poll()
    submit(d)
    batches += d.poll()[0]
    # the second request finds one worker busy and the other idle
    assert sorted(b.worker for b in batches) == ["w0", "w1"]
    clock.advance(0.003)
    d.complete(batches[1])
    submit(d)
    (b,), _ = d.poll()
    assert b.worker == batches[1].worker


def test_admission_refuses_what_cannot_meet_its_deadline() -> None:
    # 10 ms per item, 50 ms budget, one worker: about 4 single-item batches fit
    d, clock = make(m=1, latency=0.05, a=0.0, b=0.010, queue=1000)
    accepted = refused = 0
    for _ in range(20):
        r = d.submit(1)
        if isinstance(r, Refusal):
            refused += 1
            assert r.retry_after > 0
        else:
            accepted += 1
    assert 3 <= accepted <= 5
    assert refused == 20 - accepted


def test_header_budget_shortens_but_never_lengthens_the_deadline() -> None:
    d, clock = make(latency=0.05)
    assert submit(d, budget=0.01).deadline == pytest.approx(clock.t + 0.01)
    assert submit(d, budget=10.0).deadline == pytest.approx(clock.t + 0.05)
    tight = d.submit(1, budget=0.0001)
    assert isinstance(tight, Refusal)


def test_queue_is_bounded() -> None:
    d, _ = make(m=4, latency=100.0, queue=10, a=0.0, b=1e-6)
    submit(d)
    d.poll()  # worker now busy
    results = [d.submit(1) for _ in range(15)]
    assert sum(isinstance(r, Pending) for r in results) == 10
    assert isinstance(results[-1], Refusal) and results[-1].reason == "queue full"


def test_overload_refuses_instead_of_growing_latency() -> None:
    # arrivals at 2x capacity for a simulated second: every accepted request finishes in
    # time, the excess is refused, and the queue stays bounded.
    d, clock = make(m=8, latency=0.05, a=0.004, b=0.0005, inflight=1, queue=10_000)
    capacity = 8 / (0.004 + 0.0005 * 8)  # items/s at full batches
    interval = 1.013 / (2 * capacity)
    running: list[Batch] = []
    done_at: list[tuple[float, Batch]] = []
    late = accepted = refused = 0
    t_end = clock.t + 1.0
    next_arrival = clock.t
    while clock.t < t_end:
        # the next event: an arrival or a completion
        t_done = done_at[0][0] if done_at else float("inf")
        if next_arrival <= t_done:
            clock.t = next_arrival
            r = d.submit(1)
            if isinstance(r, Refusal):
                refused += 1
            else:
                accepted += 1
            next_arrival += interval
        else:
            clock.t, b = done_at.pop(0)
            running.remove(b)
            d.complete(b, exec_seconds=0.004 + 0.0005 * b.items)
            late += sum(p.deadline < clock.t - 1e-9 for p in b.requests)
        batches, expired = d.poll()
        late += len(expired)
        for b in batches:
            running.append(b)
            start = max([clock.t] + [e for e, _ in done_at])
            done_at.append((start + 0.004 + 0.0005 * b.items, b))
            done_at.sort(key=lambda x: x[0])
        assert d.queued_items <= 8 * 0.05 / 0.008 + 16
    assert refused > 0.3 * (accepted + refused)
    assert late <= 0.01 * accepted


def test_expired_requests_are_reported_not_sent() -> None:
    d, clock = make(m=4, latency=0.05, a=0.001, b=0.0)
    submit(d)
    (b0,), _ = d.poll()
    p = submit(d)
    clock.advance(0.2)  # the worker hung
    d.complete(b0)
    batches, expired = d.poll()
    assert batches == [] and expired == [p]


def test_losing_a_worker_returns_its_batches_and_strands_nothing_silently() -> None:
    d, clock = make(workers=2, m=4)
    submit(d)
    batches, _ = d.poll()
    submit(d)
    batches += d.poll()[0]
    lost, stranded = d.remove_worker("w0")
    assert lost == [b for b in batches if b.worker == "w0"] and stranded == []
    q = submit(d)
    lost, stranded = d.remove_worker("w1")
    assert stranded == [q] and d.queued_items == 0
    r = d.submit(1)
    assert isinstance(r, Refusal) and r.reason == "no worker is ready"


def test_compute_bound_model_whose_full_batch_exceeds_the_budget_is_not_refused_at_low_load() -> None:
    # 5 ms per item: a full batch of 64 (324 ms) could never meet a 200 ms budget, yet a
    # few requests behind a busy worker fit easily; they must be admitted, not refused.
    d, clock = make(m=64, latency=0.2, a=0.004, b=0.005, inflight=1)
    submit(d)
    (b0,), _ = d.poll()
    for _ in range(4):
        clock.advance(0.002)
        submit(d)
    clock.advance(0.002)
    d.complete(b0, exec_seconds=0.009)
    (b1,), _ = d.poll()
    assert b1.items == 4


def test_a_batch_grows_only_while_its_earliest_deadline_holds() -> None:
    d, clock = make(m=64, latency=0.2, a=0.004, b=0.005, inflight=1, queue=1000)
    submit(d)
    (b0,), _ = d.poll()
    for _ in range(60):  # arrivals faster than admission can see (all admitted at once)
        d.submit(1)
    clock.advance(0.009)
    d.complete(b0, exec_seconds=0.009)
    batches, _ = d.poll()
    assert batches and all(b.expected_finish <= min(p.deadline for p in b.requests) for b in batches)
    assert batches[0].items < 60


def test_cost_model_shrugs_off_one_stall_but_learns_a_real_slowdown() -> None:
    c = CostModel()
    for _ in range(100):
        c.observe(8, 0.002)
    c.observe(8, 0.200)  # the process was descheduled once
    assert c(8) < 2 * 0.002
    for _ in range(60):
        c.observe(8, 0.010)
    assert c(8) == pytest.approx(0.010, rel=0.1)


def test_a_cost_learned_from_a_slow_first_batch_does_not_refuse_forever() -> None:
    # The first batch on a GPU pays CUDA's warm-up: the learned cost exceeds the budget.
    d, clock = make(m=8, latency=0.05, a=0.0005, b=0.0001)
    first = submit(d)
    (batch,), _ = d.poll()
    clock.advance(2.0)
    d.complete(batch, exec_seconds=2.0)
    assert d.cost(1) > 0.05
    # Nothing queued, the worker idle: the next request is admitted (it is the probe)...
    probe = submit(d)
    assert first is not probe
    # ...while one arriving behind it, which would wait for a 2 s batch, is refused.
    assert isinstance(d.submit(1), Refusal)
    (batch,), _ = d.poll()
    for _ in range(30):  # the model is fast once warm: the estimate comes down
        clock.advance(0.001)
        d.complete(batch, exec_seconds=0.001)
        submit(d)
        (batch,), _ = d.poll()
    assert d.cost(1) < 0.05
    clock.advance(0.001)
    d.complete(batch, exec_seconds=0.001)
    submit(d)
    assert isinstance(d.submit(1), Pending)  # queued behind a busy worker, within budget


def test_a_worker_busy_with_its_next_batch_is_not_counted_free_when_the_previous_one_ends() -> None:
    # issue 12 item 5: a batch that comes back late (overload) left the batch the worker
    # runs next out of its expected free time, so admission was optimistic under overload
    d, clock = make(m=8, inflight=2, a=0.004, b=0.0005, latency=1.0)
    c = d.cost(8)
    submit(d, 8)
    (b1,), _ = d.poll()
    submit(d, 8)
    (b2,), _ = d.poll()  # a full batch goes at once, queued behind b1 in the worker
    clock.advance(3 * c)  # b1 comes back late
    d.complete(b1, exec_seconds=3 * c)
    c = d.cost(8)  # as learned from b1
    # b2 starts now: 8 more items finish after it, not at once
    assert d.estimate_finish(clock.t, 8) == pytest.approx(clock.t + 2 * c)
    # and back early: the worker frees when b2 is done, not later
    d2, clock2 = make(m=8, inflight=2, a=0.004, b=0.0005, latency=1.0)
    c2 = d2.cost(8)
    submit(d2, 8)
    (e1,), _ = d2.poll()
    submit(d2, 8)
    d2.poll()
    clock2.advance(0.5 * c2)
    d2.complete(e1)  # no timing: the model is unchanged
    assert d2.estimate_finish(clock2.t, 8) == pytest.approx(clock2.t + 2 * c2)


def test_a_split_request_is_admitted_or_refused_as_a_whole() -> None:
    d, clock = make(m=8, latency=0.05, a=0.002, b=0.0005, queue=40)
    parts = d.submit_many([8, 8, 4], ["a", "b", "c"])
    assert not isinstance(parts, Refusal)
    assert [p.items for p in parts] == [8, 8, 4] and len({p.deadline for p in parts}) == 1
    assert isinstance(d.submit_many([8, 8, 8], [1, 2, 3]), Refusal)  # 20 + 24 > the queue bound of 40
    assert d.queued_items == 20  # nothing of the refused request was queued
    batches, _ = d.poll()
    assert [b.items for b in batches] == [8]
    # too slow for its deadline as a whole: refused, though its first part alone would fit
    d2, _ = make(m=8, latency=0.01, a=0.004, b=0.0005, queue=1000)
    submit(d2, 8)
    d2.poll()
    assert isinstance(d2.submit_many([8, 8, 8], [1, 2, 3]), Refusal)


def test_admits_is_submits_rule_without_queueing() -> None:
    # the proxy asks admits(1) before decoding a body: it must agree with submit, queue
    # nothing, and a refusal at one item must hold for any size
    d, clock = make(m=8, latency=0.05, a=0.004, b=0.001, queue=64)
    assert d.admits(1) is None and d.queued_items == 0  # idle worker, nothing queued
    for _ in range(200):
        ahead = d.admits(1)
        got = d.submit(1)
        assert (ahead is None) == isinstance(got, Pending), (ahead, got)
        if ahead is not None:
            for k in (1, 3, 8):
                assert isinstance(d.submit(k), Refusal)
        clock.advance(0.0002)
        d.poll()
    assert d.admits(1) is not None  # the arrivals outran the worker: it refuses now
    d2, _ = make(workers=0)
    assert d2.admits(1) == d2.submit(1) == Refusal("no worker is ready", 1.0)
