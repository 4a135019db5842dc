"""Canary end to end: the real kopf operator over HTTP against the emulator and the real
registry; `jubako deploy promote|rollback` edit the object through the API as kubectl would.
What the operator applied (each child's last-applied record) is validated strictly."""

from __future__ import annotations

import json

import pytest
from gateway_api import httproute_crd, validate_httproute
from harness import mark_ready, wait_for
from jubako.operator.canary import CANARY_PIN_ANNOTATION, RolloutError
from jubako.operator.reconcile import API_VERSION, PIN_ANNOTATION
from jubako.operator.spec import KIND
from operator_manifests import validate_k8s
from typer.testing import CliRunner

from jubako.cli import app

NS = "default"
LAST_APPLIED = "serving.jubako.dev/last-applied"
pytestmark = pytest.mark.timeout(120)
MAIN_SET = [("apps/v1", "Deployment", "rollout-proxy"), ("v1", "Service", "rollout"),
            ("apps/v1", "Deployment", "rollout-worker-cpu"), ("v1", "Service", "rollout-worker-cpu")]
CANARY_SET = [("apps/v1", "Deployment", "rollout-canary-proxy"), ("v1", "Service", "rollout-canary"),
              ("apps/v1", "Deployment", "rollout-canary-worker-cpu"),
              ("v1", "Service", "rollout-canary-worker-cpu")]


def _create(cluster, **spec):
    cluster.kube.create({
        "apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": "rollout", "namespace": NS},
        "spec": {"bento": "mlp-onnx:v1", "canary": {"bento": "mlp-onnx:latest", "weight": 10},
                 "workers": [{"name": "cpu"}], **spec},
    })


def _bd(cluster):
    return cluster.kube.get(API_VERSION, KIND, NS, "rollout")


def _get(cluster, api_version, kind, name):
    return cluster.kube.get(api_version, kind, NS, name)


def _applied(obj):
    """What the operator rendered and applied (its last-applied record), validated strictly."""
    rendered = json.loads(obj["metadata"]["annotations"][LAST_APPLIED])
    if rendered["kind"] == "HTTPRoute":
        validate_httproute(rendered)
    else:
        validate_k8s(rendered)
    return rendered


def _pulls(cluster, name):
    dep = _get(cluster, "apps/v1", "Deployment", name)
    return dep and dep["spec"]["template"]["spec"]["initContainers"][0]["args"][1]


def _revisions(cluster):
    return ((_bd(cluster) or {}).get("status") or {}).get("revisions")


def _cli(cluster, *args):
    return CliRunner().invoke(app, ["deploy", *args, "rollout", "--kubeconfig", str(cluster.kubeconfig)])


def _condition(cluster, kind):
    conditions = ((_bd(cluster) or {}).get("status") or {}).get("conditions", [])
    return next((c for c in conditions if c["type"] == kind), None)


def test_canary_with_ingress_then_promote_serves_the_canarys_pinned_version(cluster, registry, operator):
    registry.publish("mlp-onnx", "v2")
    _create(cluster, ingress={"host": "mlp.example.com", "className": "nginx"})
    for child in MAIN_SET + CANARY_SET + [("networking.k8s.io/v1", "Ingress", "rollout-canary")]:
        _applied(wait_for(f"{child[2]}", lambda c=child: _get(cluster, *c)))
    assert _pulls(cluster, "rollout-proxy") == "mlp-onnx:v1"
    assert _pulls(cluster, "rollout-canary-worker-cpu") == "mlp-onnx:v2"
    canary_ingress = _applied(_get(cluster, "networking.k8s.io/v1", "Ingress", "rollout-canary"))
    assert canary_ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"] == "10"
    pin = json.loads(_bd(cluster)["metadata"]["annotations"][CANARY_PIN_ANNOTATION])
    assert pin == {"requested": "mlp-onnx:latest", "resolved": "mlp-onnx:v2",
                   "digest": registry.digest("mlp-onnx", "v2")}
    # the canary's version is reported in use (the registry refuses to delete a used version)
    wait_for("canary usage", lambda: registry.deployments.get("default/rollout-canary", {}).get("bento")
             == "mlp-onnx:v2")

    # `latest` moves on; the canary stays on what it was pinned to, across spec changes too
    registry.publish("mlp-onnx", "v3")
    cluster.kube.patch(API_VERSION, KIND, NS, "rollout", {"spec": {"canary": {"weight": 25}}})
    wait_for("weight 25", lambda: _get(cluster, "networking.k8s.io/v1", "Ingress", "rollout-canary")[
        "metadata"]["annotations"].get("nginx.ingress.kubernetes.io/canary-weight") == "25")
    assert _pulls(cluster, "rollout-canary-proxy") == "mlp-onnx:v2"

    # promote refuses a canary whose pods are not ready, unless forced
    refused = _cli(cluster, "promote")
    assert isinstance(refused.exception, RolloutError) and "not all ready" in str(refused.exception)
    for _, _, name in [c for c in MAIN_SET + CANARY_SET if c[1] == "Deployment"]:
        mark_ready(cluster.kube, NS, name)
    wait_for("revisions ready", lambda: _revisions(cluster) == [
        {"name": "main", "requested": "mlp-onnx:v1", "bento": "mlp-onnx:v1", "ready": "2/2", "weight": 75},
        {"name": "canary", "requested": "mlp-onnx:latest", "bento": "mlp-onnx:v2", "ready": "2/2", "weight": 25},
    ])

    result = _cli(cluster, "promote")
    assert result.exit_code == 0, result.output
    assert "promoted mlp-onnx:v2" in result.output
    spec = _bd(cluster)["spec"]
    assert spec["bento"] == "mlp-onnx:latest" and "canary" not in spec
    # the main revision now runs v2 (the canary's pin), not v3 (latest by now)
    wait_for("main on v2", lambda: _pulls(cluster, "rollout-worker-cpu") == "mlp-onnx:v2")
    assert _pulls(cluster, "rollout-proxy") == "mlp-onnx:v2"
    for child in CANARY_SET + [("networking.k8s.io/v1", "Ingress", "rollout-canary")]:
        wait_for(f"{child[2]} deleted", lambda c=child: _get(cluster, *c) is None)
    body = wait_for("status caught up", lambda: (b := _bd(cluster)) and "revisions" not in b["status"]
                    and b["status"]["observedGeneration"] == b["metadata"]["generation"] and b)
    assert body["status"]["bento"]["resolved"] == "mlp-onnx:v2"
    assert json.loads(body["metadata"]["annotations"][PIN_ANNOTATION])["resolved"] == "mlp-onnx:v2"
    assert CANARY_PIN_ANNOTATION not in body["metadata"]["annotations"]
    wait_for("usage follows", lambda: "default/rollout-canary" not in (d := registry.deployments)
             and d.get("default/rollout", {}).get("bento") == "mlp-onnx:v2")


def test_rollback_removes_the_canary_and_leaves_the_main_revision_alone(cluster, registry, operator):
    registry.publish("mlp-onnx", "v2")
    _create(cluster)
    for child in MAIN_SET + CANARY_SET:
        wait_for(child[2], lambda c=child: _get(cluster, *c))
    main_before = {c[2]: _get(cluster, *c)["metadata"]["resourceVersion"] for c in MAIN_SET}
    wait_for("revisions", lambda: [r.get("bento") for r in _revisions(cluster) or []]
             == ["mlp-onnx:v1", "mlp-onnx:v2"])

    result = _cli(cluster, "rollback")
    assert result.exit_code == 0, result.output
    assert "canary mlp-onnx:latest removed" in result.output
    for child in CANARY_SET:
        wait_for(f"{child[2]} deleted", lambda c=child: _get(cluster, *c) is None)
    wait_for("no revisions", lambda: "revisions" not in (_bd(cluster)["status"] or {}))
    assert {c[2]: _get(cluster, *c)["metadata"]["resourceVersion"] for c in MAIN_SET} == main_before
    assert _pulls(cluster, "rollout-proxy") == "mlp-onnx:v1"
    assert CANARY_PIN_ANNOTATION not in _bd(cluster)["metadata"]["annotations"]
    wait_for("canary usage cleared", lambda: "default/rollout-canary" not in registry.deployments)
    assert registry.deployments["default/rollout"]["bento"] == "mlp-onnx:v1"
    # nothing left to promote or roll back
    for verb in ("promote", "rollback"):
        result = _cli(cluster, verb)
        assert isinstance(result.exception, RolloutError) and "has no canary" in str(result.exception)


def test_gateway_api_split_when_the_cluster_serves_it(cluster, registry, operator):
    registry.publish("mlp-onnx", "v2")
    _create(cluster, gateway={"parentRefs": [{"name": "edge"}], "hostnames": ["mlp.example.com"]})
    # no Gateway API in this cluster yet: said so, and everything else is applied
    wait_for("GatewayAPIMissing", lambda: (_condition(cluster, "Degraded") or {}).get("reason")
             == "GatewayAPIMissing")
    for child in MAIN_SET + CANARY_SET:
        wait_for(child[2], lambda c=child: _get(cluster, *c))

    cluster.install_crd(httproute_crd())
    route = _applied(wait_for("HTTPRoute", lambda: _get(
        cluster, "gateway.networking.k8s.io/v1", "HTTPRoute", "rollout")))
    assert route["spec"]["rules"][0]["backendRefs"] == [
        {"name": "rollout", "port": 80, "weight": 90}, {"name": "rollout-canary", "port": 80, "weight": 10}]
    wait_for("Degraded clears", lambda: (_condition(cluster, "Degraded") or {}).get("reason") == "AsExpected")
    # HTTPRoutes are watched once the API exists: a hand edit is reverted, a deleted one returns
    cluster.kube.patch("gateway.networking.k8s.io/v1", "HTTPRoute", NS, "rollout", {"spec": {"rules": [
        {"backendRefs": [{"name": "rollout-canary", "port": 80, "weight": 100}]}]}})
    wait_for("hand edit reverted", lambda: _get(cluster, "gateway.networking.k8s.io/v1", "HTTPRoute", "rollout")[
        "spec"]["rules"][0]["backendRefs"][0] == {"name": "rollout", "port": 80, "weight": 90})
    cluster.kube.delete("gateway.networking.k8s.io/v1", "HTTPRoute", NS, "rollout")
    wait_for("HTTPRoute back", lambda: _get(cluster, "gateway.networking.k8s.io/v1", "HTTPRoute", "rollout"))

    assert _cli(cluster, "rollback").exit_code == 0
    wait_for("all traffic to main", lambda: _get(cluster, "gateway.networking.k8s.io/v1", "HTTPRoute", "rollout")[
        "spec"]["rules"][0]["backendRefs"] == [{"name": "rollout", "port": 80, "weight": 100}])
    for child in CANARY_SET:
        wait_for(f"{child[2]} deleted", lambda c=child: _get(cluster, *c) is None)


def test_promote_refuses_an_unresolved_canary_and_carries_a_baked_image(cluster):
    # No operator here: the object is written as the operator would leave it.
    cluster.kube.create({
        "apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": "rollout", "namespace": NS},
        "spec": {"bento": "mlp-onnx:v1", "image": "reg.example.com/mlp-onnx:v1",
                 "canary": {"bento": "mlp-onnx:v2", "weight": 10, "image": "reg.example.com/mlp-onnx:v2"}},
    })
    refused = _cli(cluster, "promote", "--force")
    assert isinstance(refused.exception, RolloutError) and "not resolved yet" in str(refused.exception)
    pin = {"requested": "mlp-onnx:v2", "resolved": "mlp-onnx:v2", "digest": "sha256:0"}
    cluster.kube.patch(API_VERSION, KIND, NS, "rollout", {"metadata": {"annotations": {
        CANARY_PIN_ANNOTATION: json.dumps(pin)}}})
    result = _cli(cluster, "promote", "--force")  # no status at all: forced
    assert result.exit_code == 0, result.output
    spec = _bd(cluster)["spec"]
    assert (spec["bento"], spec["image"], "canary" in spec) == (
        "mlp-onnx:v2", "reg.example.com/mlp-onnx:v2", False)
