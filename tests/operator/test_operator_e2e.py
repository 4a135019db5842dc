"""End to end: the real kopf operator over HTTP against the emulator and a registry."""

from __future__ import annotations

import copy

import pytest
from harness import Operator, wait_for
from operator_manifests import load_examples

from jubako.operator.reconcile import API_VERSION
from jubako.operator.spec import KIND

NS = "default"
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
    body = _bd(cluster, name) or {}
    status = body.get("status") or {}
    return status.get("observedGeneration") == body.get("metadata", {}).get("generation") and status


def _create(cluster, name="mlp-onnx"):
    cluster.kube.create(_example(name))
    wait_for("children", lambda: all(_get(cluster, *c) for c in CHILDREN) if name == "mlp-onnx" else True)
    return wait_for("status", lambda: _settled(cluster, name))


def _mark_ready(cluster, name):
    dep = _get(cluster, "apps/v1", "Deployment", name)
    replicas = dep["spec"].get("replicas", 1)
    cluster.kube.patch("apps/v1", "Deployment", NS, name, {"status": {
        "observedGeneration": dep["metadata"]["generation"], "replicas": replicas,
        "readyReplicas": replicas, "updatedReplicas": replicas, "availableReplicas": replicas,
    }}, subresource="status")


def test_create_renders_children_pins_latest_and_reports_usage(cluster, registry, operator):
    status = _create(cluster)
    assert status["bento"] == {"requested": "mlp-onnx:latest", "resolved": "mlp-onnx:v1",
                               "digest": "sha256:v1"}
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
    assert registry.deployments["default/mlp-onnx"]["bento"] == "mlp-onnx:v1"
    # A newer version in the registry does not move a pinned deployment.
    registry.bentos["mlp-onnx"].append("v2")
    wait_for("a resync", lambda: _bd(cluster) and True)
    assert _bd(cluster)["status"]["bento"]["resolved"] == "mlp-onnx:v1"
