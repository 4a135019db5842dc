"""A model-free service exercising every API kind the runtime supports."""

from __future__ import annotations

import asyncio
import time

import numpy as np
from pydantic import BaseModel

import jubako
from jubako import Tensor


class Person(BaseModel):
    name: str
    age: int


class Greeting(BaseModel):
    message: str


@jubako.service(name="toy")
class Toy:
    @jubako.api
    async def shout(self, text: str) -> str:
        await asyncio.sleep(0)
        return text.upper()

    @jubako.api
    def size(self, data: bytes) -> dict[str, int]:
        return {"n": len(data)}

    @jubako.api
    def greet(self, person: Person) -> Greeting:
        return Greeting(message=f"hello {person.name}, {person.age}")

    @jubako.api(batchable=True, max_batch_size=16, max_latency_ms=2000)
    def inverse(self, x: Tensor[np.float64, (None, 2)]) -> Tensor[np.float64, (None, 2)]:
        """1/x; a row holding 13 makes the whole batch raise."""
        if (x == 13).any():
            raise ValueError("13 is unlucky")
        return 1.0 / x

    @jubako.api(batchable=True, max_batch_size=4, max_latency_ms=100)
    def slow(self, items: list[int]) -> list[int]:
        """20 ms per batch, whatever its size: easy to overload."""
        time.sleep(0.02)
        return [i * 2 for i in items]

    @jubako.api(batchable=True, max_batch_size=8, max_latency_ms=5000)
    def steady(self, items: list[int]) -> list[int]:
        """5 ms per batch: long enough to kill a worker mid-batch."""
        time.sleep(0.005)
        return [i + 1 for i in items]



    @jubako.api(batchable=True, max_batch_size=1, max_latency_ms=60_000)
    def linger(self, items: list[int]) -> list[int]:
        """300 ms per item: requests are still in flight when the server is told to stop."""
        time.sleep(0.3)
        return items

    @jubako.api(batchable=True, max_batch_size=8, max_latency_ms=5000)
    def scale(self, xs: list[float]) -> list[float]:
        """2x; 13 makes the batch raise, 7 comes back as a numpy scalar that the declared
        output type (list[float]) cannot serialise."""
        if 13 in xs:
            raise ValueError("13 is unlucky")
        return [np.float32(x) if x == 7 else 2 * x for x in xs]

    @jubako.api(batchable=True, max_batch_size=8, max_latency_ms=5000)
    def pairs(self, x: Tensor[np.float64, (None, 2)]) -> Tensor[np.float64, (None, 2)]:
        """x + 1; a row holding 99 makes it return one sum per row (1-D), not the declared
        (n, 2), and a row holding 98 makes it return strings."""
        if (x == 99).any():
            return x.sum(axis=1)
        if (x == 98).any():
            return x.astype(str)
        return x + 1

    @jubako.api
    def nap(self, text: str) -> str:
        """Not batchable, 50 ms per request: easy to overload."""
        time.sleep(0.05)
        return text[::-1]
