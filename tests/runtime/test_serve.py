"""`jubako serve` of real bentos over real HTTP: correctness under concurrency, bad input,
worker loss and overload. No timing assertions (timing belongs to the benchmark)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
from typing import Any

import httpx
import numpy as np
import pytest
from pydantic import TypeAdapter

import jubako.models
from jubako.loader import load_service, open_bento
from jubako.store import Store

from .conftest import serve, wait_for

pytestmark = pytest.mark.timeout(180)


def direct(store: Store, bento: str) -> tuple[Any, Any]:
    """The service run in-process: the reference each response must equal."""
    os.environ["JUBAKO_HOME"] = str(store.home)
    b = open_bento(bento, store=store)
    for name in ("service", "model"):  # every example names its module "service"
        sys.modules.pop(name, None)
    svc = load_service(b)
    with jubako.models.bento_context(b.path, b.manifest, store):
        return svc, svc.create()


async def _post_all(url: str, bodies: list[Any], concurrency: int, headers: dict[str, str] | None = None,
                    raw: bool = False) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        async def one(body: Any) -> httpx.Response:
            async with sem:
                if raw:
                    return await client.post(url, content=body, headers=headers)
                return await client.post(url, json=body, headers=headers)
        return await asyncio.gather(*(one(b) for b in bodies))


def post_all(url: str, bodies: list[Any], concurrency: int = 32, **kw: Any) -> list[httpx.Response]:
    return asyncio.run(_post_all(url, bodies, concurrency, **kw))


@pytest.mark.parametrize("bento", ["mlp-onnx", "mlp-torch"])
def test_concurrent_clients_get_exactly_their_own_answer(runtime_store: Store, bento: str) -> None:
    svc, inst = direct(runtime_store, bento)
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((int(rng.integers(1, 5)), 16)).astype(np.float32) for _ in range(300)]
    # This checks correctness under concurrency, not latency: a generous budget keeps a busy
    # CI machine from turning it into an admission test (overload has its own test below).
    budget = {"JUBAKO_BATCHING": json.dumps({"predict": {"max_latency_ms": 10_000}})}
    with serve(runtime_store, bento, workers=2, env=budget) as server:
        responses = post_all(server.url + "/predict", [x.tolist() for x in inputs], concurrency=64)
        metrics = httpx.get(server.url + "/metrics").text
    for x, r in zip(inputs, responses, strict=True):
        assert r.status_code == 200, r.text
        want = svc.apis["predict"].func(inst, x)
        np.testing.assert_allclose(np.asarray(r.json(), dtype=np.float32), want, rtol=1e-4, atol=1e-6)
    # batching happened: fewer batches than requests
    count = next(float(line.split()[1]) for line in metrics.splitlines()
                 if line.startswith('jubako_batch_size_count{api="predict"}'))
    assert count < len(inputs)


def test_torch_json_api_and_bad_items_mixed_with_good_ones(runtime_store: Store) -> None:
    svc, inst = direct(runtime_store, "mlp-torch")
    rng = np.random.default_rng(1)
    good = [[{"values": rng.standard_normal(16).tolist()} for _ in range(int(rng.integers(1, 4)))] for _ in range(120)]
    bad: list[tuple[bytes, int, str]] = [
        (b'[{"values": [1, 2]}]', 422, "body[0].values"),
        (b'[{"values": "nope"}]', 422, "body[0].values"),
        (b'[{"vals": []}]', 422, "body[0].values"),
        (b"{not json", 400, "not valid JSON"),
        (b"[]", 422, "non-empty"),
        (b'{"values": []}', 422, "array"),
    ]
    bodies: list[tuple[bytes, Any]] = [(httpx.Request("POST", "/", json=g).content, g) for g in good]
    bodies += [(b, (status, field)) for b, status, field in bad * 10]
    random.Random(2).shuffle(bodies)
    with serve(runtime_store, "mlp-torch") as server:
        responses = post_all(server.url + "/classify", [b for b, _ in bodies], concurrency=32,
                             headers={"content-type": "application/json"}, raw=True)
        tensor_bad = post_all(server.url + "/predict", [[[1.0] * 15], [["a"] * 16], [[1.0] * 16, [1.0]]],
                              concurrency=3)
    adapter = TypeAdapter(svc.apis["classify"].input_type)
    for (_, expect), r in zip(bodies, responses, strict=True):
        if isinstance(expect, tuple):
            status, field = expect
            assert r.status_code == status, r.text
            assert field in r.json()["error"]
            continue
        assert r.status_code == 200, r.text
        want = svc.apis["classify"].func(inst, adapter.validate_python(expect))
        got = r.json()
        assert [g["label"] for g in got] == [w.label for w in want]
        np.testing.assert_allclose([g["probability"] for g in got], [w.probability for w in want], rtol=1e-4)
    assert [r.status_code for r in tensor_bad] == [422, 422, 422]
    assert "(n, 16)" in tensor_bad[0].json()["error"]


def test_non_batchable_apis_and_partial_batch_failure(runtime_store: Store) -> None:
    with serve(runtime_store, "toy") as server:
        u = server.url
        assert httpx.post(u + "/shout", content=b"hello").text == "HELLO"
        assert httpx.post(u + "/size", content=b"\x00\x01\x02").json() == {"n": 3}
        assert httpx.post(u + "/greet", json={"name": "ada", "age": 36}).json() == {"message": "hello ada, 36"}
        r = httpx.post(u + "/greet", json={"name": "ada", "age": "old"})
        assert r.status_code == 422 and "body.age" in r.json()["error"]
        assert httpx.post(u + "/shout", content=b"\xff\xfe").status_code == 400
        assert httpx.get(u + "/shout").status_code == 405
        # a batch holding one bad request: only that request fails
        rows = [[[float(i + 1), 2.0]] for i in range(40)] + [[[13.0, 1.0]]] * 5
        random.Random(0).shuffle(rows)
        responses = post_all(u + "/inverse", rows, concurrency=45)
        for x, r in zip(rows, responses, strict=True):
            if x[0][0] == 13.0:
                assert r.status_code == 500 and "unlucky" in r.json()["error"]
            else:
                assert r.status_code == 200, r.text
                assert r.json() == [[1.0 / x[0][0], 0.5]]


def test_probes_docs_and_metrics(runtime_store: Store) -> None:
    with serve(runtime_store, "mlp-torch") as server:
        u = server.url
        assert httpx.get(u + "/livez").status_code == 200
        assert httpx.get(u + "/readyz").status_code == 200
        spec = httpx.get(u + "/openapi.json").json()
        assert set(spec["paths"]) == {"/predict", "/classify"}
        schema = spec["paths"]["/classify"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert schema["items"]["$ref"] == "#/components/schemas/Features"
        assert "Features" in spec["components"]["schemas"]
        page = httpx.get(u + "/docs")
        assert page.status_code == 200 and "/openapi.json" in page.text
        assert httpx.get(u + "/docs/static/swagger-ui-bundle.js").status_code == 200
        httpx.post(u + "/predict", json=[[0.0] * 16])
        m = httpx.get(u + "/metrics").text
        for name in ("jubako_requests_total", "jubako_request_seconds_bucket", "jubako_queue_items",
                     "jubako_batch_size_bucket", "jubako_batch_seconds_bucket", "jubako_workers_ready 1.0",
                     "jubako_proxy_shed_ratio 0.0"):
            assert name in m, name


def test_worker_killed_under_load_fails_fast_and_recovers(runtime_store: Store) -> None:
    with serve(runtime_store, "toy", workers=2) as server:
        url = server.url + "/steady"
        victim = server.children("worker")[0]

        async def load() -> list[httpx.Response]:
            task = asyncio.ensure_future(_post_all(url, [[i] for i in range(1500)], 32))
            await asyncio.sleep(0.5)
            os.kill(victim, signal.SIGKILL)
            return await task

        responses = asyncio.run(load())  # every request answered: nothing hangs
        codes = {r.status_code for r in responses}
        assert codes <= {200, 503}, codes
        for i, r in enumerate(responses):
            if r.status_code == 200:
                assert r.json() == [i + 1]
            else:
                assert "retry" in r.json()["error"]
        wait_for(lambda: server.workers_ready() == 2 and victim not in server.children("worker"),
                 90, "the worker to be restarted")
        again = post_all(url, [[i] for i in range(50)], concurrency=8)
        assert [r.json() for r in again] == [[i + 1] for i in range(50)]


def test_overload_is_refused_fast_with_retry_after(runtime_store: Store) -> None:
    with serve(runtime_store, "toy") as server:
        responses = post_all(server.url + "/slow", [[i] for i in range(600)], concurrency=150)
        codes = [r.status_code for r in responses]
        assert set(codes) <= {200, 503}
        assert codes.count(503) > 0 and codes.count(200) > 0
        for i, r in enumerate(responses):
            if r.status_code == 503:
                assert int(r.headers["retry-after"]) >= 1
            else:
                assert r.json() == [2 * i]
        # a client's own shorter budget is honoured at admission
        r = httpx.post(server.url + "/slow", json=[1], headers={"x-jubako-deadline-ms": "0.001"})
        assert r.status_code == 503
        text = httpx.get(server.url + "/metrics").text
        assert 'jubako_requests_total{api="slow",status="503"}' in text


def _descendants(pid: int) -> set[int]:
    out: set[int] = set()
    try:
        children = open(f"/proc/{pid}/task/{pid}/children").read().split()
    except OSError:
        return out
    for c in map(int, children):
        out |= {c} | _descendants(c)
    return out


def _alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_ctrl_c_drains_in_flight_requests_and_stops_every_process(runtime_store: Store) -> None:
    import concurrent.futures
    import time

    with serve(runtime_store, "toy", workers=2) as server:
        children = _descendants(server.proc.pid)
        assert len(children) >= 3  # the proxy and two workers
        clients = [httpx.Client(base_url=server.url, timeout=60) for _ in range(8)]
        for c in clients:  # connections open before the requests: sending is then immediate
            assert c.get("/livez").status_code == 200
        with concurrent.futures.ThreadPoolExecutor(len(clients)) as pool:
            futures = [pool.submit(c.post, "/linger", json=[i]) for i, c in enumerate(clients)]
            # 8 requests x 300 ms on 2 workers take 1.2 s; all have arrived well before
            # this (a setup wait, not a timing assertion)
            time.sleep(0.5)
            server.proc.send_signal(signal.SIGINT)
            answers = [f.result() for f in futures]
        for c in clients:
            c.close()
        assert server.proc.wait(60) == 0
    # every request in flight at Ctrl-C was answered, with its own result
    assert [r.status_code for r in answers] == [200] * len(clients)
    assert [r.json() for r in answers] == [[i] for i in range(len(clients))]
    wait_for(lambda: not any(_alive(p) for p in children), 30, "every child process to exit")
