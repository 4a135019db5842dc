"""What a new BentoDeployment costs in writes to itself, and how passes are scheduled.

Counts, never timings: the scale figures live in bench/operator_scale.py.
"""

from __future__ import annotations

import copy
import threading

import pytest
from harness import wait_for
from jubako.operator import handlers
from jubako.operator.reconcile import API_VERSION
from jubako.operator.spec import KIND
from operator_manifests import load_examples

NS = "default"
KOPF_LAST_HANDLED = "serving.jubako.dev/last-handled-configuration"
pytestmark = pytest.mark.timeout(120)


def _settled(cluster, name):
    body = cluster.kube.get(API_VERSION, KIND, NS, name) or {}
    meta, status = body.get("metadata", {}), body.get("status") or {}
    return (status.get("observedGeneration") == meta.get("generation") and meta.get("finalizers")
            and KOPF_LAST_HANDLED in meta.get("annotations", {}))


def test_kopf_adds_its_finalizer_with_one_write(cluster, operator):
    """kopf adds its finalizer with a JSON patch testing the resourceVersion of the event it
    handles; a pass that wrote the object first made that test fail and kopf retry (3 tries
    per new object, each one a PATCH, in every one of the 200 of bench/operator_scale.py;
    with a few objects the race went either way)."""
    (example,) = [c for c in load_examples() if c["metadata"]["name"] == "mlp-onnx"]
    # Created while kopf watches (as in bench/operator_scale.py), not found by its first list.
    wait_for("kopf's watch", lambda: cluster.emulator.counts[("watch", "bentodeployments")] >= 1)
    mark = len(cluster.requests())
    names = [f"writes-{i}" for i in range(3)]
    for name in names:
        cr = copy.deepcopy(example)
        cr["metadata"]["name"] = name
        cluster.kube.create(cr)
    for name in names:
        wait_for(f"{name} settled", lambda name=name: _settled(cluster, name))
    for name in names:
        path = f"/apis/{API_VERSION}/namespaces/{NS}/bentodeployments/{name}"
        tries = [r for r in cluster.requests()[mark:]
                 if r.method.value == "PATCH" and r.url.path == path and isinstance(r.data, list)
                 and any(op.get("path") == "/metadata/finalizers" for op in r.data)]
        assert len(tries) == 1, [r.data for r in tries]


def test_requests_for_an_object_waiting_for_a_thread_coalesce(monkeypatch):
    started: list[tuple[str, str]] = []
    release = threading.Event()

    def fake_pass(ctx, namespace, name):
        started.append((namespace, name))
        release.wait(10)

    monkeypatch.setattr(handlers, "request_pass", fake_pass)
    passes = handlers.Passes(ctx=None, threads=1)  # type: ignore[arg-type]
    try:
        passes.request("ns", "a")
        wait_for("a running", lambda: started == [("ns", "a")])
        for _ in range(5):  # b waits for the only thread: one pass for all five
            passes.request("ns", "b")
        release.set()
        wait_for("b ran", lambda: ("ns", "b") in started)
    finally:
        passes.close()
    assert started == [("ns", "a"), ("ns", "b")]
