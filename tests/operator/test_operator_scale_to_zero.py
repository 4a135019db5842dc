"""Scale to zero: worker groups may autoscale from 0 on the proxy's queue; the proxy never."""

from __future__ import annotations

import copy
import re

import pytest
from jubako.operator.config import OperatorSettings
from jubako.operator.render import Owner, render
from jubako.operator.spec import SpecError, parse_spec
from jubako.operator.status import Observed, compute
from operator_manifests import cel_errors, load_examples, validate_cr, validate_k8s

from jubako.tags import Tag

IDLE = {"bento": "mlp", "workers": [{"name": "gpu", "resources": {"gpu": 1}, "autoscaling": {
    "minReplicas": 0, "maxReplicas": 2, "targetQueueDepth": 4}}]}


def _cr(spec):
    return {"apiVersion": "serving.jubako.dev/v1alpha1", "kind": "BentoDeployment",
            "metadata": {"name": "demo", "namespace": "ml"}, "spec": copy.deepcopy(spec)}


def test_a_worker_group_scales_from_zero_on_the_queue():
    validate_cr(_cr(IDLE))
    assert cel_errors(_cr(IDLE)) == []
    children = render(Owner("demo", "ml", "u"), parse_spec("demo", IDLE), Tag("mlp", "v1"),
                      OperatorSettings(priority=1))
    for child in children:
        validate_k8s(child)
    by = {(c["kind"], c["metadata"]["name"]): c for c in children}
    hpa = by[("HorizontalPodAutoscaler", "demo-worker-gpu")]["spec"]
    assert hpa["minReplicas"] == 0
    assert [m["type"] for m in hpa["metrics"]] == ["Object"]  # what a real server requires for 0
    assert "replicas" not in by[("Deployment", "demo-worker-gpu")]["spec"]
    assert ("PodDisruptionBudget", "demo-worker-gpu") not in by
    (example,) = [c for c in load_examples() if c["metadata"]["name"] == "mlp-torch-idle"]
    assert parse_spec("mlp-torch-idle", example["spec"]).workers[0].autoscaling.min_replicas == 0


@pytest.mark.parametrize(("spec", "message"), [
    ({"bento": "mlp", "workers": [{"name": "g", "autoscaling": {
        "minReplicas": 0, "maxReplicas": 2, "targetCPUUtilizationPercentage": 50}}]},
     "minReplicas 0 (scale to zero) needs targetQueueDepth"),
    ({"bento": "mlp", "proxy": {"autoscaling": {"minReplicas": 0, "maxReplicas": 2, "targetQueueDepth": 1}}},
     "proxy.autoscaling.minReplicas must be at least 1"),
])
def test_what_cannot_wake_up_is_refused(spec, message):
    assert any(message in e for e in cel_errors(_cr(spec)))
    with pytest.raises(SpecError, match=re.escape(message)):
        parse_spec("demo", spec)


def test_a_group_scaled_to_zero_leaves_the_deployment_available():
    ready = {"metadata": {"generation": 1}, "spec": {"replicas": 1},
             "status": {"observedGeneration": 1, "replicas": 1, "readyReplicas": 1, "updatedReplicas": 1}}
    idle = {"metadata": {"generation": 1}, "spec": {"replicas": 0}, "status": {"observedGeneration": 1}}
    observed = Observed(generation=1, requested="m", resolved="m:v1",
                        deployments={"proxy": ready, "worker/gpu": idle})
    conds = {c["type"]: c for c in compute(observed, {}, "2026-01-01T00:00:00Z")["conditions"]}
    assert conds["Available"]["status"] == "True"
    assert conds["Progressing"]["reason"] == "Complete"
