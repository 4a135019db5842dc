"""The early refusal's decisions (runtime/admission.py), on a fake clock: when the
proxy's own loop is behind and how much it sheds, and the pre-encoded 503. The path through a real
proxy is tested in test_root_path.py."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httptools
from jubako.runtime.admission import BEHIND, MAX_SHED, TARGET, Gate, LoopLag, thread_sched
from jubako.runtime.dispatcher import CostModel, Dispatcher, Refusal


def run_ticks(lag: LoopLag, lateness: float, seconds: float, ran: float = 1.0, waited: float = 0.0) -> list[float]:
    """Ticks every 5 ms + ``lateness``; the loop ran / waited to run those shares of the
    time. Returns the share shed after each tick."""
    t, shares = 0.0, []
    while t < seconds:
        interval = 0.005 + lateness
        lag.observe(lateness, interval, ran * interval, waited * interval)
        shares.append(lag.shed)
        t += interval
    return shares


def test_a_loop_late_from_its_own_work_sheds_a_tenth_within_a_tenth_of_a_second() -> None:
    lag = LoopLag(sched=lambda: (0.0, 0.0))
    run_ticks(lag, 0.0005, 1.0)  # on time: nothing shed
    assert lag.shed == 0.0
    shares = run_ticks(lag, 0.008, 0.1)  # the proxy's own backlog: 8 ms late, busy all along
    assert shares[0] > 0.0 and shares[-1] > 0.15
    assert max(run_ticks(lag, 0.008, 1.0)) == MAX_SHED  # some requests always get through


def test_the_share_settles_where_the_loop_keeps_up_and_falls_once_it_does() -> None:
    lag = LoopLag(sched=lambda: (0.0, 0.0))
    run_ticks(lag, 0.008, 0.2)
    high = lag.shed
    run_ticks(lag, TARGET, 0.2)  # at the target: held, but it drifts down (the smaller share wins)
    assert high - 0.1 < lag.shed < high
    run_ticks(lag, 0.0005, 0.2)  # on time: the overload is over
    assert lag.shed == 0.0


def test_a_stall_and_its_backlog_shed_briefly_then_nothing() -> None:
    lag = LoopLag(sched=lambda: (0.0, 0.0))
    lag.observe(0.030, 0.035, 0.005, 0.030)  # the process was descheduled for 30 ms: not its work
    assert lag.shed == 0.0
    t = shed_time = 0.0
    for k in range(1, 60):  # at 90 % load its backlog takes ~10x as long to clear
        interval = 0.005 + 0.030 * 0.9**k
        lag.observe(0.030 * 0.9**k, interval, interval, 0.0)
        t += interval
        shed_time += lag.shed * interval
    # a real backlog of ~30 ms of requests: some are refused while it clears, ~0.3 s of
    # the requests' worth at most, and none once the loop is on time again
    assert shed_time < 0.35 and t < 0.6
    run_ticks(lag, 0.0005, 0.1)
    assert lag.shed == 0.0


def test_a_loop_late_because_others_had_the_cpu_sheds_nothing() -> None:
    lag = LoopLag(sched=lambda: (0.0, 0.0))
    run_ticks(lag, 0.020, 2.0, ran=0.3, waited=0.0)  # late, but idle most of the time: not its work
    run_ticks(lag, 0.020, 2.0, ran=0.05, waited=0.9)  # a crowded machine: waits to run, little to run
    assert lag.shed == 0.0
    run_ticks(lag, 0.020, 0.5, ran=0.3, waited=0.7)  # work waiting all along, a third of a core: its own
    assert lag.shed > 0.5


def test_the_share_is_refused_evenly() -> None:
    lag = LoopLag(sched=lambda: (0.0, 0.0))
    lag.shed = 0.25
    refused = [lag.refuse() for _ in range(400)]
    assert sum(refused) == 100
    assert all(sum(refused[i : i + 4]) == 1 for i in range(0, 400, 4))  # one in four, not in bursts
    lag.shed = 0.0
    assert not any(lag.refuse() for _ in range(100))


def test_a_late_tick_or_two_refuse_nothing_a_run_of_them_does() -> None:
    lag = LoopLag(sched=lambda: (0.0, 0.0))
    for _ in range(50):  # near capacity: one tick in five 9 ms late
        lag.observe(0.009, 0.014, 0.014, 0.0)
        assert not any(lag.refuse() for _ in range(50))  # the requests read after it
        for _ in range(4):
            lag.observe(0.001, 0.006, 0.006, 0.0)
    run_ticks(lag, 0.009, 0.05)  # a run of late ticks: an overload
    assert sum(lag.refuse() for _ in range(100)) >= 10


def test_the_loop_threads_run_and_wait_times_are_read() -> None:
    ran0, waited0 = thread_sched()()
    x = 0
    for i in range(300_000):  # some CPU
        x += i
    ran1, waited1 = thread_sched()()
    assert ran1 > ran0 and waited1 >= waited0


def test_the_gate_refuses_when_behind_or_when_the_dispatcher_would() -> None:
    now = [0.0]
    d = Dispatcher(8, 0.05, cost=CostModel(0.004, 0.001, span=8), clock=lambda: now[0])

    async def run() -> list[Refusal | None]:
        gate = Gate(LoopLag(clock=lambda: now[0], sched=lambda: (0.0, 0.0)))
        out = [gate.check(d)]  # no worker
        d.add_worker("w")
        out.append(gate.check(d))  # an idle worker: go on
        run_ticks(gate.lag, 0.010, 1.0)  # shedding the most it does: all but one in twenty
        out.extend(gate.check(d) for _ in range(20))
        return out

    out = asyncio.run(run())
    assert out[:2] == [Refusal("no worker is ready", 1.0), None]
    assert out[2:].count(BEHIND) >= 18 and out[2:].count(None) >= 1


def test_the_pre_encoded_answer_is_a_whole_keep_alive_503() -> None:
    gate = Gate()
    raw = gate.response(Refusal("queue full", 2.2))
    assert gate.response(Refusal("queue full", 2.7)) is raw  # built once per reason and Retry-After
    seen: dict[str, object] = {"headers": {}}

    class Sink:
        def on_header(self, name: bytes, value: bytes) -> None:
            seen["headers"][name.decode().lower()] = value.decode()  # type: ignore[index]

        def on_body(self, body: bytes) -> None:
            seen["body"] = body

        def on_message_complete(self) -> None:
            seen["complete"] = True

    p = httptools.HttpResponseParser(Sink())
    p.feed_data(raw)
    assert p.get_status_code() == 503 and seen["complete"]  # no "connection: close" below
    assert seen["headers"] == {"content-type": "application/json", "content-length": str(len(seen["body"])),
                               "retry-after": "3"}
    assert seen["body"] == b'{"error":"overloaded: queue full; retry"}'


def test_the_proxy_lets_its_loop_lag_a_sixteenth_of_the_tightest_budget() -> None:
    from jubako.runtime.proxy import Proxy

    from jubako.manifest import ApiSpec, BatchingSpec, BentoManifest, TextSpec
    from jubako.runtime_settings import ProxySettings, batching

    def manifest(*budgets_ms: int) -> BentoManifest:
        return BentoManifest(
            name="demo", version="v1", service="service:Demo", created_at=datetime(2026, 11, 1, tzinfo=UTC),
            apis=[ApiSpec(name=f"a{i}", route=f"/a{i}", input=TextSpec(), output=TextSpec(), batchable=True,
                          batching=BatchingSpec(max_batch_size=8, max_latency_ms=ms)) for i, ms in enumerate(budgets_ms)])

    async def target(m: BentoManifest) -> float:
        settings = ProxySettings()
        proxy = Proxy(m, [], batching(m, settings), settings)
        await proxy.startup()
        try:
            return proxy.gate.lag.target
        finally:
            await proxy.shutdown()

    assert asyncio.run(target(manifest(200, 800))) == 0.2 / 16
    assert asyncio.run(target(manifest(20))) == TARGET  # never under the floor
