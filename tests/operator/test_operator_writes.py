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


def _events_about(cluster, name):
    return [r.data for r in cluster.requests() if r.method.value == "POST"
            and r.url.path.endswith("/events") and r.data["involvedObject"]["name"] == name]


def test_a_new_object_posts_events_for_problems_not_for_its_start(cluster, registry, operator):
    """A healthy new object's first conditions (not available yet, progressing, resolved,
    not degraded) were 4 events per object; a problem found at once is still one."""
    (example,) = [c for c in load_examples() if c["metadata"]["name"] == "mlp-onnx"]
    healthy, broken = copy.deepcopy(example), copy.deepcopy(example)
    broken["metadata"]["name"] = "broken"
    broken["spec"]["bento"] = "nope:latest"
    for cr in (healthy, broken):
        cluster.kube.create(cr)
    for cr in (healthy, broken):
        wait_for("settled", lambda cr=cr: _settled(cluster, cr["metadata"]["name"]))
    # A pass reports usage after its status write and that write's events: once reported,
    # the events of the first status are all posted.
    wait_for("usage report", lambda: "default/mlp-onnx" in registry.deployments)
    assert _events_about(cluster, "mlp-onnx") == []
    wait_for("a warning", lambda: ("BentoNotFound", "Warning") in {
        (e["reason"], e["type"]) for e in _events_about(cluster, "broken")})
    # A change of a condition the object already had is news.
    cluster.kube.patch(API_VERSION, KIND, NS, "mlp-onnx", {"spec": {"bento": "nope:latest"}})
    wait_for("an event for the change", lambda: _events_about(cluster, "mlp-onnx"))


class _RecordingKube:
    """Stands in for operator.kube.Kube: records writes, answers nothing."""

    def __init__(self) -> None:
        self.on_request = None
        self.calls: list[tuple[str, str]] = []

    def patch(self, api_version, kind, namespace, name, patch, subresource=None):
        self.calls.append(("PATCH", kind))
        return {}

    def create(self, manifest):
        self.calls.append(("POST", manifest["kind"]))
        return manifest


def _condition(type_, status, reason):
    return {"type": type_, "status": status, "reason": reason, "message": reason,
            "lastTransitionTime": "2026-01-01T00:00:00Z"}


@pytest.mark.parametrize(("conditions", "events"), [
    # A healthy start: one status write, no event (it was 4).
    ([("BentoResolved", "True", "Resolved"), ("Available", "False", "PodsNotReady"),
      ("Progressing", "True", "RollingOut"), ("Degraded", "False", "AsExpected")], 0),
    # A problem found at once is news.
    ([("BentoResolved", "False", "BentoNotFound"), ("Available", "False", "NotDeployed"),
      ("Progressing", "False", "NotDeployed"), ("Degraded", "True", "BentoNotFound")], 2),
], ids=["healthy", "problem"])
def test_first_status_write_posts_events_only_for_problems(conditions, events):
    from jubako.operator.config import OperatorSettings
    from jubako.operator.reconcile import Context, _write_status

    kube = _RecordingKube()
    ctx = Context(settings=OperatorSettings(), kube=kube)  # type: ignore[arg-type]
    body = {"metadata": {"name": "x", "namespace": NS, "uid": "u"}}
    new_status = {"observedGeneration": 1, "conditions": [_condition(*c) for c in conditions]}
    _write_status(ctx, body, {}, new_status)
    assert kube.calls == [("PATCH", KIND)] + [("POST", "Event")] * events
    # Once known, a condition that changes is an event whatever it says.
    kube.calls.clear()
    later = {"observedGeneration": 1, "conditions": [
        _condition("Available", "True", "PodsReady") if c[0] == "Available" else _condition(*c)
        for c in conditions]}
    _write_status(ctx, body, new_status, later)
    assert kube.calls == [("PATCH", KIND), ("POST", "Event")]
