"""End to end: the real kopf operator over HTTP against the emulator and a registry."""

from __future__ import annotations

import copy

import pytest
from harness import Operator, mark_ready, wait_for
from jubako.operator.reconcile import API_VERSION
from jubako.operator.spec import KIND
from operator_manifests import load_examples

NS = "default"
KOPF_LAST_HANDLED = "serving.jubako.dev/last-handled-configuration"
CHILDREN = [
    ("apps/v1", "Deployment", "mlp-onnx-proxy"),
    ("v1", "Service", "mlp-onnx"),
    ("apps/v1", "Deployment", "mlp-onnx-worker-cpu"),
    ("v1", "Service", "mlp-onnx-worker-cpu"),
    ("autoscaling/v2", "HorizontalPodAutoscaler", "mlp-onnx-worker-cpu"),
    ("policy/v1", "PodDisruptionBudget", "mlp-onnx-worker-cpu"),
]
pytestmark = pytest.mark.timeout(120)


def _example(name: str) -> dict:
    (cr,) = [copy.deepcopy(c) for c in load_examples() if c["metadata"]["name"] == name]
    return cr


def _bd(cluster, name="mlp-onnx"):
    return cluster.kube.get(API_VERSION, KIND, NS, name)


def _condition(cluster, kind, name="mlp-onnx"):
    body = _bd(cluster, name) or {}
    for cond in (body.get("status") or {}).get("conditions", []):
        if cond["type"] == kind:
            return cond
    return None


def _get(cluster, api_version, kind, name):
    return cluster.kube.get(api_version, kind, NS, name)


def _settled(cluster, name="mlp-onnx"):
    """Status caught up with the spec, and kopf's one-time bookkeeping (its finalizer and
    the spec it last handled, for its delete handler) is written."""
    body = _bd(cluster, name) or {}
    status = body.get("status") or {}
    meta = body.get("metadata", {})
    kopf_done = meta.get("finalizers") and KOPF_LAST_HANDLED in meta.get("annotations", {})
    return status.get("observedGeneration") == meta.get("generation") and kopf_done and status


def _create(cluster, name="mlp-onnx"):
    cluster.kube.create(_example(name))
    wait_for("children", lambda: all(_get(cluster, *c) for c in CHILDREN) if name == "mlp-onnx" else True)
    return wait_for("status", lambda: _settled(cluster, name))


def _mark_ready(cluster, name):
    mark_ready(cluster.kube, NS, name)


def test_create_renders_children_pins_latest_and_reports_usage(cluster, registry, operator):
    status = _create(cluster)
    assert status["bento"] == {"requested": "mlp-onnx:latest", "resolved": "mlp-onnx:v1",
                               "digest": registry.digest("mlp-onnx", "v1")}
    proxy = _get(cluster, "apps/v1", "Deployment", "mlp-onnx-proxy")
    assert proxy["spec"]["template"]["spec"]["initContainers"][0]["args"][1] == "mlp-onnx:v1"
    owner = _bd(cluster)["metadata"]["uid"]
    for api_version, kind, name in CHILDREN:
        refs = _get(cluster, api_version, kind, name)["metadata"]["ownerReferences"]
        assert [r["uid"] for r in refs] == [owner]
    # Applied is not available: no pod is ready yet.
    assert _condition(cluster, "Available")["status"] == "False"
    assert _condition(cluster, "BentoResolved")["status"] == "True"
    wait_for("usage report", lambda: registry.deployments.get("default/mlp-onnx"))
    reported = registry.deployments["default/mlp-onnx"]
    assert reported["bento"] == "mlp-onnx:v1"
    # the dashboard's deployments page shows these: counts per component and the reasons
    assert set(reported["status"]["workers"]["cpu"]) == {"ready", "desired"}
    assert {c["type"] for c in reported["status"]["conditions"]} >= {"Available", "BentoResolved"}
    # A newer version in the registry does not move a pinned deployment.
    registry.publish("mlp-onnx", "v2")
    wait_for("a resync", lambda: _bd(cluster) and True)
    assert _bd(cluster)["status"]["bento"]["resolved"] == "mlp-onnx:v1"


def _bd_reads(cluster, name="mlp-onnx"):
    path = f"/apis/{API_VERSION}/namespaces/{NS}/bentodeployments/{name}"
    return sum(1 for r in cluster.requests() if r.method.value == "GET" and r.url.path == path)


def _passes(cluster, count=3):
    """Wait for `count` more reconcile passes (each starts by reading the object)."""
    start = _bd_reads(cluster)
    wait_for(f"{count} reconcile passes", lambda: _bd_reads(cluster) >= start + count)


def test_no_op_resync_writes_nothing(cluster, operator):
    _create(cluster)
    _passes(cluster)  # let any in-flight pass finish
    mark = len(cluster.requests())
    _passes(cluster, 4)
    assert cluster.writes(since=mark) == []


def test_available_only_when_pods_are_ready(cluster, operator):
    _create(cluster)
    assert _condition(cluster, "Available")["status"] == "False"
    _mark_ready(cluster, "mlp-onnx-proxy")
    wait_for("proxy counted", lambda: (_bd(cluster)["status"].get("proxy") or {}).get("ready") == 1)
    assert _condition(cluster, "Available")["status"] == "False"  # workers are not ready yet
    # Play the HPA: it scales the workers to its minReplicas; the operator must not undo that.
    cluster.kube.patch("apps/v1", "Deployment", NS, "mlp-onnx-worker-cpu", {"spec": {"replicas": 2}})
    _mark_ready(cluster, "mlp-onnx-worker-cpu")
    cond = wait_for("available", lambda: (_condition(cluster, "Available") or {}).get("status") == "True"
                    and _condition(cluster, "Available"))
    assert cond["reason"] == "PodsReady"
    assert _bd(cluster)["status"]["ready"] == "3/3"
    assert _condition(cluster, "Progressing")["status"] == "False"
    assert _get(cluster, "apps/v1", "Deployment", "mlp-onnx-worker-cpu")["spec"]["replicas"] == 2
    events = cluster.kube.list("v1", "Event", NS, {})
    assert any(e["reason"] == "PodsReady" and e["involvedObject"]["name"] == "mlp-onnx" for e in events)


def test_update_changes_children_and_removes_unwanted_ones(cluster, operator):
    _create(cluster)
    cluster.kube.patch(API_VERSION, KIND, NS, "mlp-onnx", {"spec": {"workers": [
        {"name": "big", "replicas": 3, "resources": {"gpu": 1}, "gpuType": "L4"},
    ]}})
    big = wait_for("new group", lambda: _get(cluster, "apps/v1", "Deployment", "mlp-onnx-worker-big"))
    pod = big["spec"]["template"]["spec"]
    assert big["spec"]["replicas"] == 3
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "L4"}
    # the old group's children go one DELETE at a time, in no promised order: wait for each
    for api_version, kind, name in CHILDREN[2:]:
        wait_for(f"old {kind} gone", lambda a=api_version, k=kind, n=name: _get(cluster, a, k, n) is None)
    proxy = _get(cluster, "apps/v1", "Deployment", "mlp-onnx-proxy")
    assert "mlp-onnx-worker-big:7000" in proxy["spec"]["template"]["spec"]["containers"][0]["args"]
    status = wait_for("status", lambda: _settled(cluster))
    assert set(status["workers"]) == {"big"}


def test_child_deleted_behind_the_operators_back_comes_back(cluster, operator):
    _create(cluster)
    old = _get(cluster, "apps/v1", "Deployment", "mlp-onnx-proxy")
    cluster.kube.delete("apps/v1", "Deployment", NS, "mlp-onnx-proxy")
    new = wait_for("the proxy back", lambda: _get(cluster, "apps/v1", "Deployment", "mlp-onnx-proxy"))
    assert new["metadata"]["uid"] != old["metadata"]["uid"]
    assert new["spec"] == old["spec"]
    # A drifted field is put back too (on the next pass).
    component = "app.kubernetes.io/component"
    cluster.kube.patch("v1", "Service", NS, "mlp-onnx", {"spec": {"selector": {component: "x"}}})
    wait_for("service repaired",
             lambda: _get(cluster, "v1", "Service", "mlp-onnx")["spec"]["selector"][component] == "proxy")


def test_restart_mid_way_makes_no_duplicates(cluster, settings, operator):
    cluster.kube.create(_example("mlp-onnx"))
    wait_for("first child", lambda: _get(cluster, "apps/v1", "Deployment", "mlp-onnx-proxy"))
    operator.stop()
    second = Operator(cluster, settings)
    try:
        wait_for("status", lambda: _settled(cluster))
        _passes(cluster)
        mark = len(cluster.requests())
        _passes(cluster, 3)
        assert cluster.writes(since=mark) == []
    finally:
        second.stop()
    created = [
        (r.data["kind"], r.data["metadata"]["name"]) for r in cluster.requests()
        if r.method.value == "POST" and r.data and r.data.get("kind") not in (None, "Event", KIND)
        and r.url.path.startswith(("/api/v1/namespaces/default/", "/apis/"))
        and "customresourcedefinitions" not in r.url.path
    ]
    assert sorted(created) == sorted((kind, name) for _, kind, name in CHILDREN)
    for api_version, kind, name in CHILDREN:
        assert _get(cluster, api_version, kind, name) is not None


def test_registry_down_leaves_children_untouched(cluster, registry, operator):
    _create(cluster)
    before = {c: _get(cluster, *c)["metadata"]["resourceVersion"] for c in CHILDREN}
    registry.stop()
    # A new tag cannot be resolved now: keep serving v1, say why, write no child.
    cluster.kube.patch(API_VERSION, KIND, NS, "mlp-onnx", {"spec": {"bento": "mlp-onnx:v2"}})
    cond = wait_for("unreachable", lambda: (_condition(cluster, "BentoResolved") or {}).get("reason")
                    == "RegistryUnreachable" and _condition(cluster, "BentoResolved"))
    assert cond["status"] == "False"
    assert "still serving mlp-onnx:v1" in cond["message"]
    assert _condition(cluster, "Degraded")["reason"] == "RegistryUnreachable"
    assert _bd(cluster)["status"]["bento"]["resolved"] == "mlp-onnx:v1"
    _passes(cluster, 3)
    assert {c: _get(cluster, *c)["metadata"]["resourceVersion"] for c in CHILDREN} == before
    # Back up: the new version rolls out.
    registry.start()
    registry.publish("mlp-onnx", "v2")
    wait_for("v2", lambda: (_bd(cluster)["status"]["bento"].get("resolved")) == "mlp-onnx:v2")
    proxy = wait_for("rollout", lambda: "mlp-onnx:v2" in str(_get(cluster, "apps/v1", "Deployment", "mlp-onnx-proxy")))
    assert proxy


def test_unknown_bento_and_invalid_spec_degrade_without_hot_loop(cluster, registry, operator):
    cr = _example("mlp-onnx")
    cr["spec"]["bento"] = "nope:latest"
    cluster.kube.create(cr)
    cond = wait_for("degraded", lambda: _settled(cluster) and _condition(cluster, "Degraded"))
    assert cond["reason"] == "BentoNotFound"
    assert _get(cluster, "apps/v1", "Deployment", "mlp-onnx-proxy") is None
    # The API server's CEL rules would refuse this; the operator copes when they are absent.
    cluster.kube.patch(API_VERSION, KIND, NS, "mlp-onnx", {"spec": {
        "bento": "mlp-onnx:latest", "workers": [{"name": "g", "gpuType": "A100"}]}})
    cond = wait_for("invalid", lambda: (_condition(cluster, "Degraded") or {}).get("reason") == "InvalidSpec"
                    and _condition(cluster, "Degraded"))
    assert "gpuType needs resources.gpu > 0" in cond["message"]
    _passes(cluster)
    mark = len(cluster.requests())
    _passes(cluster, 3)
    assert cluster.writes(since=mark) == []


def test_delete_clears_usage_through_the_finalizer(cluster, registry, operator):
    _create(cluster)
    wait_for("usage report", lambda: registry.deployments.get("default/mlp-onnx"))
    wait_for("finalizer", lambda: _bd(cluster)["metadata"].get("finalizers"))
    cluster.kube.delete(API_VERSION, KIND, NS, "mlp-onnx")
    wait_for("gone", lambda: _bd(cluster) is None)
    assert "default/mlp-onnx" not in registry.deployments


@pytest.mark.parametrize("spec", ["oops", {"bento": "mlp-onnx", "proxy": {"resources": {"limits": {"memory": "lots"}}}}],
                         ids=["not-an-object", "bad-quantity"])
def test_spec_the_schema_would_refuse_is_reported_not_crashed_on(cluster, operator, spec):
    # Without the API server's schema (an old CRD, a server that skipped it) the operator
    # still writes a status that says what is wrong, and creates nothing.
    cr = _example("mlp-onnx")
    cr["spec"] = spec
    cluster.kube.create(cr)
    cond = wait_for("degraded", lambda: _settled(cluster) and _condition(cluster, "Degraded"))
    assert (cond["status"], cond["reason"]) == ("True", "InvalidSpec")
    assert ("must be an object" if spec == "oops" else "'lots' is not a Kubernetes quantity") in cond["message"]
    assert _get(cluster, "apps/v1", "Deployment", "mlp-onnx-proxy") is None


def test_enabling_autoscaling_keeps_the_current_replicas(cluster, operator):
    cr = _example("mlp-onnx")
    cr["spec"]["workers"] = [{"name": "cpu", "replicas": 5}]
    cluster.kube.create(cr)
    wait_for("5 workers", lambda: (_get(cluster, "apps/v1", "Deployment", "mlp-onnx-worker-cpu") or {})
             .get("spec", {}).get("replicas") == 5)
    mark = len(cluster.requests())
    cluster.kube.patch(API_VERSION, KIND, NS, "mlp-onnx", {"spec": {"workers": [
        {"name": "cpu", "replicas": 5, "autoscaling": {"minReplicas": 2, "maxReplicas": 8,
                                                       "targetQueueDepth": 4}}]}})
    wait_for("the HPA", lambda: _get(cluster, "autoscaling/v2", "HorizontalPodAutoscaler", "mlp-onnx-worker-cpu"))
    wait_for("status", lambda: _settled(cluster))
    # A real API server defaults a null `replicas` to 1 until the HPA acts: never send one.
    patches = [r.data for r in cluster.requests()[mark:] if r.method.value == "PATCH"
               and r.url.path.endswith("/deployments/mlp-onnx-worker-cpu")]
    assert all("replicas" not in (p.get("spec") or {}) for p in patches), patches
    assert _get(cluster, "apps/v1", "Deployment", "mlp-onnx-worker-cpu")["spec"]["replicas"] == 5
    # Handing replicas back to the spec sets them again.
    cluster.kube.patch(API_VERSION, KIND, NS, "mlp-onnx", {"spec": {"workers": [{"name": "cpu", "replicas": 3}]}})
    wait_for("3 workers", lambda: _get(cluster, "apps/v1", "Deployment", "mlp-onnx-worker-cpu")["spec"]
             .get("replicas") == 3)
    wait_for("HPA gone", lambda: _get(cluster, "autoscaling/v2", "HorizontalPodAutoscaler", "mlp-onnx-worker-cpu") is None)


def test_a_lost_status_does_not_move_the_pin(cluster, registry, operator):
    _create(cluster)
    registry.publish("mlp-onnx", "v2")
    # A restore from backup, or a replace of the status subresource: status is gone.
    cluster.kube.patch(API_VERSION, KIND, NS, "mlp-onnx", {"status": None}, subresource="status")
    status = wait_for("status rewritten", lambda: (_bd(cluster).get("status") or {}).get("bento"))
    _passes(cluster, 3)
    assert _bd(cluster)["status"]["bento"]["resolved"] == "mlp-onnx:v1"
    assert status["resolved"] == "mlp-onnx:v1"
    proxy = _get(cluster, "apps/v1", "Deployment", "mlp-onnx-proxy")
    assert proxy["spec"]["template"]["spec"]["initContainers"][0]["args"][1] == "mlp-onnx:v1"
    # Only a spec change moves it.
    cluster.kube.patch(API_VERSION, KIND, NS, "mlp-onnx", {"spec": {"bento": "mlp-onnx:v2"}})
    wait_for("v2", lambda: _bd(cluster)["status"]["bento"].get("resolved") == "mlp-onnx:v2")


def test_rollout_strategy_follows_the_spec_and_defaults_for_gpu_groups(cluster, operator):
    cr = _example("mlp-onnx")
    cr["spec"]["workers"] = [{"name": "cpu"}, {"name": "gpu", "resources": {"gpu": 1}}]
    cluster.kube.create(cr)
    gpu = wait_for("gpu group", lambda: _get(cluster, "apps/v1", "Deployment", "mlp-onnx-worker-gpu"))
    assert gpu["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    # To Recreate: a real API server refuses Recreate with rollingUpdate still set, so the
    # patch must remove it.
    cluster.kube.patch(API_VERSION, KIND, NS, "mlp-onnx", {"spec": {"workers": [
        {"name": "cpu", "strategy": {"type": "Recreate"}, "terminationGracePeriodSeconds": 5},
        {"name": "gpu", "resources": {"gpu": 1}}]}})
    cpu = wait_for("recreate", lambda: (d := _get(cluster, "apps/v1", "Deployment", "mlp-onnx-worker-cpu"))
                   ["spec"]["strategy"]["type"] == "Recreate" and d)
    assert cpu["spec"]["strategy"] == {"type": "Recreate"}
    assert cpu["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 5


@pytest.mark.parametrize(("api_version", "kind", "name"), CHILDREN[4:])
def test_hpa_and_pdb_deleted_behind_the_operators_back_come_back_without_a_resync(
        cluster, settings, api_version, kind, name):
    # A resync far away: only the watch on these kinds can bring them back in time.
    op = Operator(cluster, settings.model_copy(update={"resync_interval_s": 600.0}))
    try:
        _create(cluster)
        old = _get(cluster, api_version, kind, name)
        cluster.kube.delete(api_version, kind, NS, name)
        new = wait_for(f"{kind} back", lambda: _get(cluster, api_version, kind, name), timeout=30)
        assert new["metadata"]["uid"] != old["metadata"]["uid"]
    finally:
        op.stop()
