"""Canary and traffic split, rendered: a second proxy + workers set under `<name>-canary`,
split by weight through ingress-nginx canary annotations or a Gateway API HTTPRoute; child
names stay collision-free with the reserved `canary` segment; status per revision. Every
rendered object is validated strictly (Kubernetes' schemas; the Gateway API's CRD)."""

from __future__ import annotations

import copy
import re

import celpy
import pytest
from gateway_api import validate_httproute
from jubako.operator.canary import promoted
from jubako.operator.config import OperatorSettings
from jubako.operator.render import Owner, render
from jubako.operator.spec import SpecError, parse_spec
from jubako.operator.status import CanaryObserved, Observed, compute
from operator_manifests import cel_errors, load_crd, load_examples, validate_cr, validate_k8s

from jubako.tags import Tag

SETTINGS = OperatorSettings(priority=1)
OWNER = Owner("demo", "ml", "u")
MAIN, NEXT = Tag("mlp", "v1"), Tag("mlp", "v2")
SPEC = {
    "bento": "mlp:v1",
    "canary": {"bento": "mlp:latest", "weight": 10},
    "proxy": {"autoscaling": {"minReplicas": 2, "maxReplicas": 3, "targetCPUUtilizationPercentage": 50}},
    "workers": [
        {"name": "cpu", "replicas": 2},
        {"name": "gpu", "resources": {"gpu": 1},
         "autoscaling": {"minReplicas": 0, "maxReplicas": 2, "targetQueueDepth": 4}},
    ],
}
GATEWAY = {"parentRefs": [{"name": "edge", "namespace": "gateways"}], "hostnames": ["mlp.example.com"]}


def _cr(spec, name="demo"):
    return {"apiVersion": "serving.jubako.dev/v1alpha1", "kind": "BentoDeployment",
            "metadata": {"name": name, "namespace": "ml"}, "spec": copy.deepcopy(spec)}


def _render(spec, canary=NEXT, gateway_api=True):
    children = render(OWNER, parse_spec("demo", spec), MAIN, SETTINGS, canary, gateway_api)
    for child in children:
        if child["kind"] == "HTTPRoute":
            validate_httproute(child)
        else:
            validate_k8s(child)
    return {(c["kind"], c["metadata"]["name"]): c for c in children}


def _pulls(deployment):
    return deployment["spec"]["template"]["spec"]["initContainers"][0]["args"][1]


def _matches(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def test_a_canary_is_a_second_proxy_and_workers_set_for_its_version():
    by = _render({**SPEC, "ingress": {"host": "mlp.example.com", "path": "/v1"}})
    main = {k for k in by if "canary" not in k[1]}
    canary = {k for k in by if "canary" in k[1]}
    assert {(kind, name.replace("demo-canary", "demo")) for kind, name in canary} == main
    assert _pulls(by[("Deployment", "demo-proxy")]) == "mlp:v1"
    for name in ("demo-canary-proxy", "demo-canary-worker-cpu", "demo-canary-worker-gpu"):
        assert _pulls(by[("Deployment", name)]) == "mlp:v2"
        assert by[("Deployment", name)]["metadata"]["labels"]["app.kubernetes.io/version"] == "v2"
    proxy = by[("Deployment", "demo-canary-proxy")]["spec"]["template"]["spec"]["containers"][0]
    assert proxy["args"][-1] == "demo-canary-worker-cpu:7000,demo-canary-worker-gpu:7000"
    assert {"name": "JUBAKO_ROOT_PATH", "value": "/v1"} in proxy["env"]
    # the canary's queue wakes the canary's workers, not the main revision's
    hpa = by[("HorizontalPodAutoscaler", "demo-canary-worker-gpu")]["spec"]
    assert hpa["metrics"][0]["object"]["describedObject"]["name"] == "demo-canary"
    assert by[("Service", "demo-canary")]["spec"]["selector"]["app.kubernetes.io/instance"] == "demo-canary"
    # every child names the BentoDeployment as its owner; pods keep its deployment label
    for child in by.values():
        assert child["metadata"]["ownerReferences"][0]["name"] == "demo"
    template = by[("Deployment", "demo-canary-worker-cpu")]["spec"]["template"]["metadata"]["labels"]
    assert template["serving.jubako.dev/deployment"] == "demo"


def test_no_selector_of_one_revision_matches_the_other_revisions_pods():
    by = _render(SPEC)
    pods = {name: d["spec"]["template"]["metadata"]["labels"]
            for (kind, name), d in by.items() if kind == "Deployment"}
    for (kind, name), child in by.items():
        selector = child["spec"].get("selector")
        if selector is None:
            continue
        selector = selector.get("matchLabels", selector)  # Deployment/PDB vs Service
        matched = {pod for pod, labels in pods.items() if _matches(selector, labels)}
        owner = name if kind != "Service" else {"demo": "demo-proxy", "demo-canary": "demo-canary-proxy"}.get(name, name)
        assert matched == {owner}, (kind, name, matched)


def test_ingress_nginx_splits_traffic_with_a_second_canary_ingress():
    by = _render({**SPEC, "ingress": {"host": "mlp.example.com", "path": "/v1",
                                      "annotations": {"a.example.com/x": "y"}}})
    main, canary = by[("Ingress", "demo")], by[("Ingress", "demo-canary")]
    assert main["metadata"]["annotations"] == {"a.example.com/x": "y"}
    assert canary["metadata"]["annotations"] == {
        "a.example.com/x": "y",
        "nginx.ingress.kubernetes.io/canary": "true",
        "nginx.ingress.kubernetes.io/canary-weight": "10",
    }
    rule = canary["spec"]["rules"][0]
    assert rule["host"] == main["spec"]["rules"][0]["host"]
    assert rule["http"]["paths"][0]["path"] == "/v1"
    assert rule["http"]["paths"][0]["backend"]["service"]["name"] == "demo-canary"


def test_the_gateway_api_splits_traffic_by_backend_weight():
    by = _render({**SPEC, "gateway": {**GATEWAY, "path": "/v1"}})
    route = by[("HTTPRoute", "demo")]["spec"]
    assert route["parentRefs"] == GATEWAY["parentRefs"]
    assert route["hostnames"] == ["mlp.example.com"]
    assert route["rules"] == [{
        "matches": [{"path": {"type": "PathPrefix", "value": "/v1"}}],
        "backendRefs": [{"name": "demo", "port": 80, "weight": 90},
                        {"name": "demo-canary", "port": 80, "weight": 10}],
    }]
    assert not any(kind == "Ingress" for kind, _ in by)
    proxy = by[("Deployment", "demo-proxy")]["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "JUBAKO_ROOT_PATH", "value": "/v1"} in proxy["env"]
    # without a canary (or before it resolves) every request goes to the main revision
    no_canary = {k: v for k, v in SPEC.items() if k != "canary"}
    for spec, canary in ((no_canary, None), (SPEC, None)):
        by = _render({**spec, "gateway": GATEWAY}, canary=canary)
        assert by[("HTTPRoute", "demo")]["spec"]["rules"][0]["backendRefs"] == [
            {"name": "demo", "port": 80, "weight": 100}]
        assert not any("canary" in name for _, name in by)
    # a cluster without the Gateway API gets no HTTPRoute (reconcile reports why)
    assert ("HTTPRoute", "demo") not in _render({**SPEC, "gateway": GATEWAY}, gateway_api=False)


def test_the_example_passes_the_crd_and_renders_a_canary():
    (cr,) = [c for c in load_examples() if c["metadata"]["name"] == "mlp-onnx-rollout"]
    validate_cr(cr)
    assert cel_errors(cr) == []
    spec = parse_spec("mlp-onnx-rollout", cr["spec"])
    assert spec.canary is not None and spec.canary.weight == 10
    owner = Owner("mlp-onnx-rollout", "default", "u")
    children = render(owner, spec, Tag("mlp-onnx", "v1"), SETTINGS, Tag("mlp-onnx", "v2"))
    for child in children:
        validate_k8s(child)
    assert ("Ingress", "mlp-onnx-rollout-canary") in {(c["kind"], c["metadata"]["name"]) for c in children}


def test_with_baked_images_the_canary_runs_its_own_image():
    by = _render({**SPEC, "image": "reg.example.com/mlp:v1",
                  "canary": {"bento": "mlp:v2", "weight": 5, "image": "reg.example.com/mlp:v2"}})
    for (kind, name), child in by.items():
        if kind == "Deployment":
            pod = child["spec"]["template"]["spec"]
            want = "reg.example.com/mlp:v2" if "canary" in name else "reg.example.com/mlp:v1"
            assert pod["containers"][0]["image"] == want, name
            assert pod["initContainers"] == []  # baked: nothing to pull or install


@pytest.mark.parametrize(("spec", "message"), [
    ({"bento": "mlp:v1", "canary": {"bento": "mlp:v1"}}, "canary.bento must differ from bento"),
    ({"bento": "mlp:v1", "image": "r/mlp:v1", "canary": {"bento": "mlp:v2"}},
     "set canary.image exactly when image is set"),
    ({"bento": "mlp:v1", "canary": {"bento": "mlp:v2", "image": "r/mlp:v2"}},
     "set canary.image exactly when image is set"),
    ({"bento": "mlp", "ingress": {"host": "a.example.com"}, "gateway": GATEWAY}, "set ingress or gateway, not both"),
])
def test_specs_that_cannot_split_traffic_are_refused(spec, message):
    assert any(message in e for e in cel_errors(_cr(spec)))
    with pytest.raises(SpecError, match=re.escape(message)):
        parse_spec("demo", spec)


def test_the_crd_schema_checks_the_canary_and_gateway_fields():
    validate_cr(_cr({**SPEC, "gateway": GATEWAY}))
    for bad in ({"bento": "mlp", "canary": {"bento": "mlp:v2", "weight": 101}},
                {"bento": "mlp", "canary": {"weight": 10}},
                {"bento": "mlp", "gateway": {"parentRefs": []}}):
        with pytest.raises(Exception, match="101|bento|parentRefs|non-empty|too short"):
            validate_cr(_cr(bad))
        with pytest.raises(SpecError):
            parse_spec("demo", bad)


# --- names -----------------------------------------------------------------------------------


def _cel_refuses(cr) -> list[str]:
    schema = load_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    env = celpy.Environment()
    obj = celpy.json_to_cel(cr)
    return [r["message"] for r in schema["x-kubernetes-validations"]
            if not env.program(env.compile(r["rule"])).evaluate({"self": obj})]


def _refuses(name, spec) -> bool:
    try:
        parse_spec(name, spec)
    except SpecError:
        return True
    return False


@pytest.mark.parametrize("name", ["a-canary", "a-canary-b", "mlp-canary-proxy", "x-canary-worker-a"])
def test_names_with_a_canary_segment_are_refused(name):
    assert _cel_refuses(_cr({"bento": "mlp"}, name))
    assert _refuses(name, {"bento": "mlp"})


@pytest.mark.parametrize("name", ["canary", "canary-a", "a-canarys", "canaryb"])
def test_names_merely_containing_canary_are_fine(name):
    assert _cel_refuses(_cr({"bento": "mlp"}, name)) == []
    assert not _refuses(name, {"bento": "mlp"})


def test_a_canary_refuses_names_whose_canary_workers_would_exceed_63_characters():
    name, group = "x" * 40, "g" * 8  # demo-canary-worker-<group>: 40 + 15 + 8 = 63
    ok = {"bento": "mlp", "canary": {"bento": "mlp:v2"}, "workers": [{"name": group}]}
    long = {**ok, "workers": [{"name": group + "h"}]}
    assert _cel_refuses(_cr(ok, name)) == [] and not _refuses(name, ok)
    assert _cel_refuses(_cr(long, name)) and _refuses(name, long)
    assert not _refuses(name, {k: v for k, v in long.items() if k != "canary"})  # fine without one
    children = render(Owner(name, "ns", "u"), parse_spec(name, ok), MAIN, SETTINGS, NEXT)
    assert max(len(c["metadata"]["name"]) for c in children) == 63


def _words(pieces: list[str], max_pieces: int) -> list[str]:
    words = list(pieces)
    for n in range(max_pieces - 1):
        words += [f"{w}-{p}" for w in words if w.count("-") == n for p in pieces]
    return words


def test_no_two_valid_deployments_render_the_same_child_with_canaries():
    # Exhaustive over a small alphabet of the pieces children's names are made of: every
    # valid name, each with every group name, with a canary and an ingress.
    pieces = ["a", "worker", "canary", "proxy"]
    groups = _words(pieces, 2)
    owners: dict[tuple[str, str], str] = {}
    for name in _words(pieces, 3):
        if _refuses(name, {"bento": "mlp"}):
            assert _cel_refuses(_cr({"bento": "mlp"}, name))
            continue
        for i in range(0, len(groups), 8):  # at most 8 groups a spec
            spec = {"bento": "mlp:v1", "canary": {"bento": "mlp:v2"}, "ingress": {"host": "a.example.com"},
                    "proxy": {"replicas": 2},
                    "workers": [{"name": g, "replicas": 2,
                                 "autoscaling": {"maxReplicas": 3, "targetQueueDepth": 1}}
                                for g in groups[i:i + 8]]}
            for child in render(Owner(name, "ns", "u"), parse_spec(name, spec), MAIN, SETTINGS, NEXT):
                key = (child["kind"], child["metadata"]["name"])
                assert owners.setdefault(key, name) == name, (key, owners[key], name)
    assert ("Service", "a-canary") in owners and owners[("Service", "a-canary")] == "a"


# --- pins and status -------------------------------------------------------------------------


def test_promotion_adopts_the_canarys_pin_and_rollback_keeps_the_main_one():
    main_pin = {"requested": "mlp:v1", "resolved": "mlp:v1", "digest": "d1"}
    canary_pin = {"requested": "mlp:latest", "resolved": "mlp:v2", "digest": "d2"}
    promote = parse_spec("demo", {"bento": "mlp:latest"})
    assert promoted(promote, main_pin, canary_pin) == canary_pin
    rollback = parse_spec("demo", {"bento": "mlp:v1"})
    assert promoted(rollback, main_pin, canary_pin) == main_pin
    # while the canary is still in the spec nothing is adopted
    both = parse_spec("demo", {"bento": "mlp:v3", "canary": {"bento": "mlp:latest"}})
    assert promoted(both, main_pin, canary_pin) == main_pin


def _deployment(ready, desired):
    return {"metadata": {"generation": 1}, "spec": {"replicas": desired},
            "status": {"observedGeneration": 1, "replicas": desired, "readyReplicas": ready,
                       "updatedReplicas": desired}}


def test_status_reports_each_revision_with_its_bento_ready_pods_and_weight():
    observed = Observed(
        generation=3, requested="mlp:v1", resolved="mlp:v1",
        canary=CanaryObserved(requested="mlp:latest", weight=10, resolved="mlp:v2"),
        deployments={"proxy": _deployment(1, 1), "worker/cpu": _deployment(2, 2),
                     "canary/proxy": _deployment(1, 1), "canary/worker/cpu": _deployment(0, 2)},
    )
    status = compute(observed, {}, "2026-01-01T00:00:00Z")
    assert status["revisions"] == [
        {"name": "main", "requested": "mlp:v1", "bento": "mlp:v1", "ready": "3/3", "weight": 90},
        {"name": "canary", "requested": "mlp:latest", "bento": "mlp:v2", "ready": "1/3", "weight": 10},
    ]
    assert status["proxy"] == {"ready": 1, "desired": 1} and list(status["workers"]) == ["cpu"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Progressing"]["message"] == "waiting for canary/worker/cpu"
    validate_cr({**_cr({"bento": "mlp"}), "status": status})


@pytest.mark.parametrize(("weight", "available"), [(0, "True"), (1, "False")])
def test_a_canary_without_ready_pods_is_unavailable_only_when_it_takes_requests(weight, available):
    observed = Observed(
        generation=1, requested="mlp:v1", resolved="mlp:v1",
        canary=CanaryObserved(requested="mlp:v2", weight=weight, resolved="mlp:v2"),
        deployments={"proxy": _deployment(1, 1), "worker/cpu": _deployment(1, 1),
                     "canary/proxy": _deployment(0, 1), "canary/worker/cpu": _deployment(0, 1)},
    )
    conditions = {c["type"]: c for c in compute(observed, {}, "2026-01-01T00:00:00Z")["conditions"]}
    assert conditions["Available"]["status"] == available
    if available == "False":
        assert conditions["Available"]["message"] == "canary/proxy 0/1 ready, canary/worker/cpu 0/1 ready"
    assert conditions["Progressing"]["reason"] == "RollingOut"  # the canary is still coming up


def test_an_unresolved_canary_takes_no_traffic_and_says_why():
    from jubako.operator.status import Problem

    observed = Observed(
        generation=1, requested="mlp:v1", resolved="mlp:v1",
        canary=CanaryObserved(requested="mlp:v9", weight=30,
                              resolve_problem=Problem("BentoNotFound", "mlp:v9 not found")),
        deployments={"proxy": _deployment(1, 1), "worker/cpu": _deployment(1, 1)},
    )
    status = compute(observed, {}, "2026-01-01T00:00:00Z")
    assert [r["weight"] for r in status["revisions"]] == [100, 0]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["BentoResolved"]["status"] == "False"
    assert conditions["BentoResolved"]["message"].startswith("canary mlp:v9: mlp:v9 not found")
    assert conditions["Degraded"]["reason"] == "BentoNotFound"
    assert conditions["Available"]["status"] == "True"


# --- the CLI's cluster access ------------------------------------------------------------------


def test_deploy_commands_use_the_contexts_namespace_and_say_when_the_api_is_unreachable(tmp_path):
    import socket

    import yaml
    from typer.testing import CliRunner

    from jubako.cli import app
    from jubako.errors import JubakoError

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "a",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "a", "context": {"cluster": "c", "user": "u", "namespace": "team-a"}},
                     {"name": "b", "context": {"cluster": "c", "user": "u"}}],
    }))
    for extra, namespace in (([], "team-a"), (["--context", "b"], "default"), (["-n", "x"], "x")):
        result = CliRunner().invoke(app, ["deploy", "rollback", "demo", "--kubeconfig", str(kubeconfig), *extra])
        assert isinstance(result.exception, JubakoError)
        assert "cannot reach the Kubernetes API" in str(result.exception)
        assert f"/namespaces/{namespace}/bentodeployments/demo" in str(result.exception)
