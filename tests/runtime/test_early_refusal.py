"""The early refusal's decisions (runtime/admission.py), on a fake clock: when the
proxy's own loop counts as behind, and the pre-encoded 503. The path through a real
proxy is tested in test_root_path.py."""

from __future__ import annotations

import asyncio

import httptools
from jubako.runtime.admission import BEHIND, Gate, LoopLag, thread_sched
from jubako.runtime.dispatcher import CostModel, Dispatcher, Refusal


def run_ticks(lag: LoopLag, lateness: float, seconds: float, ran: float = 1.0, waited: float = 0.0) -> None:
    """Ticks every 5 ms + ``lateness``; the loop ran / waited to run those shares of the time."""
    t = 0.0
    while t < seconds:
        interval = 0.005 + lateness
        lag.observe(lateness, interval, ran * interval, waited * interval)
        t += interval


def test_a_stall_and_its_backlog_are_not_an_overload() -> None:
    lag = LoopLag(sched=lambda: (0.0, 0.0))
    lag.observe(0.030, 0.035, 0.005, 0.030)  # the process was descheduled for 30 ms
    for k in range(1, 18):  # at 90 % load its backlog takes ~10x as long to clear
        lag.observe(0.030 * 0.9**k, 0.005 + 0.030 * 0.9**k, 0.005 + 0.030 * 0.9**k, 0.0)
        assert not lag.overloaded and not lag.behind
    run_ticks(lag, 0.0005, 2.5)
    assert lag.late_share < 0.01


def test_a_loop_late_most_of_the_time_is_overloaded_until_it_catches_up() -> None:
    lag = LoopLag(sched=lambda: (0.0, 0.0))
    run_ticks(lag, 0.008, 0.2)
    assert not lag.overloaded  # not yet: 200 ms late could still be a stall's backlog
    run_ticks(lag, 0.008, 0.5)
    assert lag.overloaded and lag.behind
    lag.observe(0.001, 0.006, 0.006, 0.0)  # read now: on time; still overloaded, but nothing to refuse
    assert lag.overloaded and not lag.behind
    lag.observe(0.003, 0.008, 0.008, 0.0)  # shedding keeps the lag at a few ms: that is still refused
    assert lag.behind
    run_ticks(lag, 0.001, 0.3)  # on time for a while: the overload is over
    assert lag.overloaded
    run_ticks(lag, 0.001, 0.5)
    assert not lag.overloaded and not lag.behind


def test_a_loop_late_without_work_of_its_own_waiting_is_not_overloaded() -> None:
    lag = LoopLag(sched=lambda: (0.0, 0.0))
    run_ticks(lag, 0.020, 2.0, ran=0.3, waited=0.0)  # late, but idle most of the time: not its work
    run_ticks(lag, 0.020, 2.0, ran=0.05, waited=0.9)  # a crowded machine: waits to run, little to run
    assert not lag.overloaded and lag.late_share == 0.0
    run_ticks(lag, 0.020, 2.0, ran=0.3, waited=0.7)  # work waiting all along, a third of a core: its own
    assert lag.overloaded


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
        run_ticks(gate.lag, 0.010, 1.0)
        out.append(gate.check(d))
        return out

    assert asyncio.run(run()) == [Refusal("no worker is ready", 1.0), None, BEHIND]


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
