"""The CRD is a valid CustomResourceDefinition and its schema accepts/refuses what it should."""

from __future__ import annotations

import copy

import jsonschema
import pytest
from jubako.operator import spec as spec_module
from operator_manifests import (
    EXAMPLES,
    cr_schema,
    load_crd,
    load_examples,
    validate_cr,
    validate_k8s,
)


def _cr(**spec):
    return {
        "apiVersion": "serving.jubako.dev/v1alpha1",
        "kind": "BentoDeployment",
        "metadata": {"name": "demo", "namespace": "default"},
        "spec": {"bento": "mlp:latest", **spec},
    }


def test_crd_is_a_valid_custom_resource_definition():
    validate_k8s(load_crd())


def test_crd_names_match_the_operator():
    crd = load_crd()
    assert crd["spec"]["group"] == spec_module.GROUP
    assert crd["spec"]["names"]["plural"] == spec_module.PLURAL
    assert crd["spec"]["names"]["kind"] == spec_module.KIND
    assert crd["spec"]["names"]["shortNames"] == ["bd"]
    assert crd["spec"]["scope"] == "Namespaced"
    (version,) = crd["spec"]["versions"]
    assert version["name"] == spec_module.VERSION
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Bento", "Ready", "Available", "URL", "Age"]


def test_worker_groups_share_every_component_field():
    schema = cr_schema()["properties"]["spec"]["properties"]
    proxy = schema["proxy"]["properties"]
    worker = schema["workers"]["items"]["properties"]
    assert set(worker) == set(proxy) | {"name"}
    assert schema["workers"]["items"]["x-kubernetes-validations"] == schema["proxy"]["x-kubernetes-validations"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_match_the_schema_and_the_operator(path):
    (cr,) = [c for c in load_examples() if c["metadata"]["name"] == path.stem]
    validate_cr(cr)
    spec_module.parse_spec(cr["metadata"]["name"], cr["spec"])


def test_examples_cover_both_example_bentos():
    assert {c["spec"]["bento"].split(":")[0] for c in load_examples()} == {"mlp-torch", "mlp-onnx"}


@pytest.mark.parametrize(
    "spec",
    [
        {"bento": "Not_A_Name"},
        {"workers": []},
        {"workers": [{"name": "UPPER"}]},
        {"workers": [{"name": "g", "replicas": -1}]},
        {"proxy": {"resources": {"gpu": -1}}},
        {"proxy": {"resources": {"limits": {"memory": "lots"}}}},
        {"proxy": {"autoscaling": {"minReplicas": 1}}},
        {"imagePullPolicy": "Sometimes"},
        {"registry": {"url": "ftp://registry"}},
        {"ingress": {"className": "nginx"}},
        {"batching": {"predict": {"maxBatchSize": 0}}},
        {"ingress": {"host": "a.example.com", "path": "/a b"}},
        {"ingress": {"host": "a.example.com", "path": "v1"}},
    ],
)
def test_schema_refuses_invalid_specs(spec):
    cr = _cr(**spec)
    if "bento" in spec:
        cr["spec"]["bento"] = spec["bento"]
    with pytest.raises(jsonschema.ValidationError):
        validate_cr(cr)


def test_schema_accepts_a_minimal_spec_and_quantities():
    validate_cr(_cr())
    validate_cr(_cr(proxy={"resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}}))
    validate_cr(_cr(bento="mlp"))


def test_operator_refuses_what_the_cel_rules_refuse():
    # CEL rules run on the API server only; the operator repeats them so it never renders them.
    for spec in (
        {"bento": "mlp", "workers": [{"name": "g", "gpuType": "A100"}]},
        {"bento": "mlp", "proxy": {"autoscaling": {"minReplicas": 3, "maxReplicas": 2,
                                                   "targetQueueDepth": 1}}},
        {"bento": "mlp", "proxy": {"autoscaling": {"maxReplicas": 2}}},
        {"bento": "mlp", "workers": [{"name": "a"}, {"name": "a"}]},
    ):
        with pytest.raises(spec_module.SpecError):
            spec_module.parse_spec("demo", copy.deepcopy(spec))
    with pytest.raises(spec_module.SpecError, match="40 characters"):
        spec_module.parse_spec("x" * 41, {"bento": "mlp"})


def test_rbac_and_peering_manifests_are_valid():
    import yaml
    from operator_manifests import ROOT

    for name in ("rbac.yaml", "kopf-peering.yaml"):
        for doc in yaml.safe_load_all((ROOT / "crds" / name).read_text()):
            if doc["apiVersion"] != "kopf.dev/v1":
                validate_k8s(doc)


def test_rbac_covers_every_kind_the_operator_writes():
    import yaml
    from jubako.operator.kube import CHILD_KINDS, PLURALS
    from operator_manifests import ROOT

    (role,) = [d for d in yaml.safe_load_all((ROOT / "crds" / "rbac.yaml").read_text())
               if d["kind"] == "ClusterRole"]
    allowed = {(g, r): set(rule["verbs"]) for rule in role["rules"]
               for g in rule["apiGroups"] for r in rule["resources"]}
    for api_version, kind in CHILD_KINDS:
        group = api_version.rpartition("/")[0]
        # watch too: the operator's view of its children is fed by watches
        assert {"get", "list", "watch", "create", "patch", "delete"} <= allowed[(group, PLURALS[(api_version, kind)])]
    assert {"list", "watch"} <= allowed[("", "pods")]
    assert "patch" in allowed[("serving.jubako.dev", "bentodeployments/status")]
    assert "*" not in {v for verbs in allowed.values() for v in verbs}
