"""Admission, bounds and validation on every path, through one real `jubako serve` of the
toy bento: non-batchable APIs are queued and refused like batchable ones, every validation
error is reported with its location, JSON APIs refuse other content types."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from jubako.store import Store

from .conftest import Server, serve
from .test_serve import post_all

# the first module of tests/runtime: its first test may pay for building the example store
pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]


@pytest.fixture(scope="module")
def toy(runtime_store: Store) -> Iterator[Server]:
    with serve(runtime_store, "toy") as server:
        yield server


def test_non_batchable_api_has_a_bounded_queue_and_refuses_with_retry_after(toy: Server) -> None:
    bodies = [f"r{i}".encode() for i in range(300)]
    responses = post_all(toy.url + "/nap", bodies, concurrency=150, raw=True)
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 503}, codes
    assert codes.count(503) > 0 and codes.count(200) > 0
    for b, r in zip(bodies, responses, strict=True):
        if r.status_code == 200:
            assert r.text == b.decode()[::-1]
        else:
            assert int(r.headers["retry-after"]) >= 1 and "overloaded" in r.json()["error"]
    text = httpx.get(toy.url + "/metrics").text
    assert 'jubako_queue_items{api="nap"}' in text


def test_every_validation_error_is_reported_with_its_location(toy: Server) -> None:
    r = httpx.post(toy.url + "/greet", json={"name": 3, "age": "old"})
    assert r.status_code == 422
    msg = r.json()["error"]
    assert "body.name" in msg and "body.age" in msg, msg


@pytest.mark.parametrize("route", ["/greet", "/inverse", "/scale"])
def test_json_apis_refuse_a_body_declared_as_another_type(toy: Server, route: str) -> None:
    body = {"/greet": b'{"name": "ada", "age": 3}', "/inverse": b"[[1.0, 2.0]]", "/scale": b"[1.0, 2.0]"}[route]
    r = httpx.post(toy.url + route, content=body, headers={"content-type": "text/plain"})
    assert r.status_code == 415, r.text
    assert "application/json" in r.json()["error"]
    for ctype in ("application/json", "application/json; charset=utf-8", "application/vnd.api+json"):
        assert httpx.post(toy.url + route, content=body, headers={"content-type": ctype}).status_code == 200
    assert httpx.post(toy.url + route, content=body).status_code == 200  # no content type: JSON assumed


def test_a_request_larger_than_a_batch_is_split_and_answered_as_one(toy: Server) -> None:
    rows = [[float(i + 20), 2.0] for i in range(40)]  # /inverse batches at most 16 items; 13 raises
    r = httpx.post(toy.url + "/inverse", json=rows, timeout=20)
    assert r.status_code == 200, r.text
    assert r.json() == [[1.0 / (i + 20), 0.5] for i in range(40)]
    xs = [float(i % 5) for i in range(20)]  # JSON API, 8 items per batch
    r = httpx.post(toy.url + "/scale", json=xs, timeout=20)
    assert r.status_code == 200 and r.json() == [2 * x for x in xs], r.text
    # a part that fails fails the whole request
    r = httpx.post(toy.url + "/inverse", json=rows[:30] + [[13.0, 1.0]], timeout=20)
    assert r.status_code == 500 and "unlucky" in r.json()["error"]
    # past the hard cap (the queue bound: 16 x 16 items) it is refused
    r = httpx.post(toy.url + "/inverse", json=[[1.0, 2.0]] * 257, timeout=20)
    assert r.status_code == 413 and "256" in r.json()["error"], r.text
