"""A quick closed-loop load test: ``python -m jubako.runtime.loadtest URL [--concurrency 1,16,64]``.

Raw asyncio sockets with keep-alive (no HTTP client library in the measurement), one
16-float row per request. The full benchmark against peers lives in bench/.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from urllib.parse import urlparse

import numpy as np
import orjson


async def _client(host: str, port: int, path: str, body: bytes, stop: float, lat: list[float], codes: dict[int, int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    req = (f"POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
           f"content-length: {len(body)}\r\n\r\n").encode() + body
    while time.perf_counter() < stop:
        t0 = time.perf_counter()
        writer.write(req)
        head = await reader.readuntil(b"\r\n\r\n")
        n = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                n = int(line.split(b":")[1])
        await reader.readexactly(n)
        lat.append(time.perf_counter() - t0)
        code = int(head[9:12])
        codes[code] = codes.get(code, 0) + 1
    writer.close()


async def run(url: str, concurrency: int, seconds: float) -> dict[str, float]:
    u = urlparse(url)
    body = orjson.dumps(np.random.default_rng(0).standard_normal((1, 16)).astype(np.float32), option=orjson.OPT_SERIALIZE_NUMPY)
    lat: list[float] = []
    codes: dict[int, int] = {}
    stop = time.perf_counter() + seconds
    await asyncio.gather(*(_client(u.hostname or "127.0.0.1", u.port or 80, u.path, body, stop, lat, codes)
                           for _ in range(concurrency)))
    a = np.array(lat) * 1000
    return {"concurrency": concurrency, "rps": len(lat) / seconds, "p50_ms": float(np.percentile(a, 50)),
            "p99_ms": float(np.percentile(a, 99)), "codes": {str(k): v for k, v in codes.items()}}  # type: ignore[dict-item]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--concurrency", default="1,16,64")
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    for c in map(int, args.concurrency.split(",")):
        asyncio.run(run(args.url, 4, 1.0))  # warm-up: the cost model learns
        print(orjson.dumps(asyncio.run(run(args.url, c, args.seconds))).decode(), flush=True)


if __name__ == "__main__":
    main()
