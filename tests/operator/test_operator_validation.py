"""What the CRD's CEL rules and the operator's own checks refuse, and why it matters: names
become Services (DNS-1035 labels) and child names must never collide; label values must be
valid; a spec that is not an object or holds a bad quantity is an InvalidSpec, not a crash.

The CEL rules are evaluated for real (cel-python), so the CRD and the operator are checked
against the same cases."""

from __future__ import annotations

import re

import celpy
import pytest
from jubako.operator.config import OperatorSettings
from jubako.operator.render import Owner, label_value, render
from jubako.operator.spec import SpecError, parse_spec
from operator_manifests import load_crd

from jubako.tags import Tag

# https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#syntax-and-character-set
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
SETTINGS = OperatorSettings(priority=1)


def _root_rules() -> list[tuple[str, str]]:
    schema = load_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return [(r["rule"], r["message"]) for r in schema["x-kubernetes-validations"]]


def cel_refuses(name: str) -> list[str]:
    """Messages of the CRD's object-level rules that refuse a BentoDeployment named `name`."""
    env = celpy.Environment()
    obj = celpy.json_to_cel({"metadata": {"name": name}, "spec": {"bento": "mlp"}})
    return [message for rule, message in _root_rules()
            if not env.program(env.compile(rule)).evaluate({"self": obj})]


def operator_refuses(name: str) -> bool:
    try:
        parse_spec(name, {"bento": "mlp"})
    except SpecError:
        return True
    return False


BAD_NAMES = ["1model", "my.model", "col-worker-default", "a-worker", "x" * 41, "-a", "a-"]
GOOD_NAMES = ["demo", "mlp-onnx", "workers", "a-workers-b", "worker-a", "x" * 40]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_cel_and_operator_refuse_names_that_break_children(name):
    assert cel_refuses(name)
    assert operator_refuses(name)


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_cel_and_operator_accept_good_names(name):
    assert cel_refuses(name) == []
    assert not operator_refuses(name)


def _child_keys(name: str, groups: list[str]) -> set[tuple[str, str]]:
    spec = parse_spec(name, {"bento": "mlp", "ingress": {"host": "a.example.com"},
                             "proxy": {"replicas": 2},
                             "workers": [{"name": g, "replicas": 2,
                                          "autoscaling": {"maxReplicas": 3, "targetQueueDepth": 1}}
                                         for g in groups]})
    children = render(Owner(name, "ns", "u"), spec, Tag("mlp", "v1"), SETTINGS)
    return {(c["kind"], c["metadata"]["name"]) for c in children}


def _words(max_pieces: int) -> list[str]:
    """Every name joined from up to `max_pieces` of the pieces children's names are made of."""
    pieces = ["a", "b", "worker", "proxy", "wor"]
    words = list(pieces)
    for _ in range(max_pieces - 1):
        words += [f"{w}-{p}" for w in words if w.count("-") == _ for p in pieces]
    return words


def test_no_two_valid_deployments_render_the_same_child():
    # Exhaustive over a small alphabet of the pieces that make up children's names.
    groups = _words(2)
    owners: dict[tuple[str, str], str] = {}
    for name in _words(3):
        if operator_refuses(name):
            continue
        for i in range(0, len(groups), 8):
            for key in _child_keys(name, groups[i:i + 8]):
                assert owners.setdefault(key, name) == name, (key, owners[key], name)


def test_the_collision_from_the_issue_is_refused():
    # `col` (group default) and `col-worker-default` both wanted Service col-worker-default.
    assert ("Service", "col-worker-default") in _child_keys("col", ["default"])
    assert operator_refuses("col-worker-default") and cel_refuses("col-worker-default")


@pytest.mark.parametrize("version", ["v1-", "2024.1.", "a_", "v" * 63, "1.0.0-rc.1"])
def test_label_values_are_valid_for_any_tag_the_registry_accepts(version):
    tag = Tag.parse(f"edge:{version}")
    assert LABEL_VALUE.fullmatch(label_value(tag.version)) and len(label_value(tag.version)) <= 63
    spec = parse_spec("demo", {"bento": "edge"})
    for child in render(Owner("demo", "ns", "u"), spec, tag, SETTINGS):
        labels = dict(child["metadata"]["labels"])
        if child["kind"] == "Deployment":
            labels.update(child["spec"]["template"]["metadata"]["labels"])
            # the exact tag still reaches the pod, only the label is sanitised
            assert child["spec"]["template"]["spec"]["initContainers"][0]["args"][1] == str(tag)
        for value in labels.values():
            assert LABEL_VALUE.fullmatch(value) and len(value) <= 63, value
    assert label_value("1.0.0-rc.1") == "1.0.0-rc.1"


@pytest.mark.parametrize("raw", ["oops", ["bento"], 3, None])
def test_a_spec_that_is_not_an_object_is_an_invalid_spec(raw):
    with pytest.raises(SpecError, match="must be an object"):
        parse_spec("demo", raw)


@pytest.mark.parametrize("field", ["requests", "limits"])
def test_quantities_are_checked_by_the_operator_too(field):
    with pytest.raises(SpecError, match=rf"proxy.resources.{field}.memory: .*'lots'"):
        parse_spec("demo", {"bento": "mlp", "proxy": {"resources": {field: {"memory": "lots"}}}})
    spec = parse_spec("demo", {"bento": "mlp", "workers": [
        {"name": "g", "resources": {field: {"memory": "1Gi", "cpu": "0.5", "nvidia.com/gpu": 1}}}]})
    assert spec.workers[0].resources.model_dump()[field]["memory"] == "1Gi"


def test_every_cel_rule_of_the_crd_compiles_and_the_examples_pass_them():
    from operator_manifests import cel_errors, load_examples

    for cr in load_examples():
        assert cel_errors(cr) == [], cr["metadata"]["name"]
    bad = {"apiVersion": "serving.jubako.dev/v1alpha1", "kind": "BentoDeployment",
           "metadata": {"name": "x"}, "spec": {"bento": "mlp", "workers": [
               {"name": "g", "gpuType": "A100"},
               {"name": "h", "autoscaling": {"minReplicas": 3, "maxReplicas": 2}}]}}
    assert sorted(cel_errors(bad)) == sorted([
        "gpuType needs resources.gpu > 0", "minReplicas must not exceed maxReplicas",
        "set targetCPUUtilizationPercentage, targetQueueDepth or both"])
