"""Rollout strategy and the pod-spec fields users pass through: rendered where they belong,
valid for Kubernetes (strict), accepted by the CRD schema and refused when wrong."""

from __future__ import annotations

import copy

import jsonschema
import pytest
from jubako.operator.config import OperatorSettings
from jubako.operator.render import Owner, render
from jubako.operator.spec import SpecError, parse_spec
from operator_manifests import cel_errors, validate_cr, validate_k8s

from jubako.tags import Tag

SETTINGS = OperatorSettings(priority=1)
OWNER = Owner("demo", "ml", "u")
SPREAD = [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
           "labelSelector": {"matchLabels": {"app.kubernetes.io/instance": "demo"}}}]
SIDECAR = {"name": "log-shipper", "image": "fluent/fluent-bit:3", "args": ["-c", "/etc/fb.conf"],
           "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}
BEHAVIOR = {"scaleDown": {"stabilizationWindowSeconds": 600,
                          "policies": [{"type": "Pods", "value": 1, "periodSeconds": 120}]}}
SPEC = {
    "bento": "mlp",
    "proxy": {
        "replicas": 2,
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "50%", "maxUnavailable": 0}},
        "topologySpreadConstraints": SPREAD,
        "priorityClassName": "serving-high",
        "terminationGracePeriodSeconds": 45,
        "probes": {"readiness": {"periodSeconds": 2, "failureThreshold": 5},
                   "startup": {"failureThreshold": 360}},
        "extraContainers": [SIDECAR],
    },
    "workers": [
        {"name": "gpu", "resources": {"gpu": 1}, "runtimeClassName": "nvidia",
         "autoscaling": {"minReplicas": 1, "maxReplicas": 4, "targetQueueDepth": 8, "behavior": BEHAVIOR}},
        {"name": "cpu", "strategy": {"type": "Recreate"}},
        {"name": "mig", "resources": {"limits": {"nvidia.com/mig-1g.10gb": 1}}},
    ],
}


def _by(spec):
    children = render(OWNER, parse_spec("demo", copy.deepcopy(spec)), Tag("mlp", "v1"), SETTINGS)
    for child in children:
        validate_k8s(child)
    return {(c["kind"], c["metadata"]["name"]): c for c in children}


def _cr(spec):
    return {"apiVersion": "serving.jubako.dev/v1alpha1", "kind": "BentoDeployment",
            "metadata": {"name": "demo", "namespace": "ml"}, "spec": copy.deepcopy(spec)}


def test_the_crd_schema_accepts_every_option():
    validate_cr(_cr(SPEC))
    assert cel_errors(_cr(SPEC)) == []


def test_strategies_default_to_what_works_on_a_full_gpu_node():
    by = _by(SPEC)
    strategy = {name: by[("Deployment", f"demo-{name}")]["spec"]["strategy"]
                for name in ("proxy", "worker-gpu", "worker-cpu", "worker-mig")}
    assert strategy["proxy"] == {"type": "RollingUpdate",
                                 "rollingUpdate": {"maxSurge": "50%", "maxUnavailable": 0}}
    assert strategy["worker-cpu"] == {"type": "Recreate"}
    # No spare GPU is needed to roll out: replace one pod at a time instead of surging.
    for gpu in ("worker-gpu", "worker-mig"):
        assert strategy[gpu] == {"type": "RollingUpdate",
                                 "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    assert _by({"bento": "mlp"})[("Deployment", "demo-worker-default")]["spec"]["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}


def test_pod_fields_pass_through():
    by = _by(SPEC)
    proxy = by[("Deployment", "demo-proxy")]["spec"]["template"]["spec"]
    assert proxy["topologySpreadConstraints"] == SPREAD
    assert proxy["priorityClassName"] == "serving-high"
    assert proxy["terminationGracePeriodSeconds"] == 45
    main, sidecar = proxy["containers"]
    assert main["name"] == "proxy" and sidecar == SIDECAR
    assert main["readinessProbe"]["periodSeconds"] == 2 and main["readinessProbe"]["failureThreshold"] == 5
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}  # ours, kept
    assert main["startupProbe"]["failureThreshold"] == 360
    assert main["livenessProbe"]["periodSeconds"] == 10  # untouched default
    gpu = by[("Deployment", "demo-worker-gpu")]["spec"]["template"]["spec"]
    assert gpu["runtimeClassName"] == "nvidia"
    for key in ("priorityClassName", "topologySpreadConstraints", "terminationGracePeriodSeconds"):
        assert key not in gpu
    assert by[("HorizontalPodAutoscaler", "demo-worker-gpu")]["spec"]["behavior"] == BEHAVIOR
    assert "behavior" not in by.get(("HorizontalPodAutoscaler", "demo-proxy"), {"spec": {}})["spec"]


@pytest.mark.parametrize(("component", "message"), [
    ({"strategy": {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}}, "Recreate"),
    ({"strategy": {"type": "Sideways"}}, "strategy.type"),
    ({"terminationGracePeriodSeconds": -1}, "terminationGracePeriodSeconds"),
    ({"extraContainers": [{"name": "proxy", "image": "x"}]}, "extraContainers"),
    ({"extraContainers": [{"image": "x"}]}, "name"),
    ({"probes": {"readiness": {"periodSeconds": 0}}}, "periodSeconds"),
    ({"probes": {"readiness": {"httpGet": {"path": "/x", "port": 1}}}}, "httpGet"),
])
def test_the_schema_and_the_operator_refuse_wrong_options(component, message):
    spec = {"bento": "mlp", "proxy": component}
    with pytest.raises(SpecError, match=message):
        parse_spec("demo", copy.deepcopy(spec))
    if message in ("Recreate", "extraContainers"):  # CEL rules
        assert cel_errors(_cr(spec)), spec
    elif message != "httpGet":  # an unknown field: pruned (or refused by strict field validation)
        with pytest.raises(jsonschema.ValidationError):
            validate_cr(_cr(spec))
