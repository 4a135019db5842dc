"""The worker's executor on its own: one call in, one RESULT frame out, whatever the input."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

import jubako
from jubako.workers import wire
from jubako.workers.executor import runners


class Item(BaseModel):
    x: float


@jubako.service(name="doubler")
class Doubler:
    @jubako.api(batchable=True, max_batch_size=8)
    def double(self, items: list[Item]) -> list[float]:
        return [2 * i.x for i in items]


def run_call(segments: list[bytes]) -> wire.Result:
    runner = runners(Doubler, Doubler.create(), None)["double"]
    frame = wire.encode_call(7, "double", [1] * len(segments), segments=segments)
    call = wire.decode_call(memoryview(frame)[4:])

    async def pool_call(fn, arg):  # type: ignore[no-untyped-def]
        return fn(arg)

    result = asyncio.run(runner.run(call, 0.0, pool_call))
    return wire.decode_result(memoryview(result)[4:])


def test_a_request_that_is_not_json_fails_alone_and_gets_an_answer() -> None:
    result = run_call([b'[{"x": 1}]', b"{not json", b'[{"x": 2.5}]'])
    assert result.id == 7
    assert list(result.statuses) == [200, 400, 200]
    assert result.segments[0] == b"[2.0]" and result.segments[2] == b"[5.0]"
    assert result.segments[1].startswith(b"body: not valid JSON")
