"""spec.config: the runtime config file as a ConfigMap mounted into the proxy and worker
pods (JUBAKO_CONFIG names it), checked as the runtime checks it, and a change of it rolls
the pods (a hash on the pod templates). Rendering, the CRD schema, and the real operator
against the emulator."""

from __future__ import annotations

import copy

import pytest
import yaml
from harness import wait_for
from jubako.operator.config import OperatorSettings
from jubako.operator.reconcile import API_VERSION
from jubako.operator.render import CONFIG_HASH_ANNOTATION, Owner, render
from jubako.operator.spec import KIND, SpecError, parse_spec
from operator_manifests import load_examples, validate_cr, validate_k8s

from jubako.runtime_settings import RuntimeSettings
from jubako.tags import Tag

SETTINGS = OperatorSettings(priority=1)
OWNER = Owner("demo", "ml", "u")
CONFIG = {"batching": {"predict": {"max_batch_size": 8, "max_queue_items": 64}},
          "inflight_timeout_s": 12, "log_level": "WARNING"}


def _by(spec: dict) -> dict:
    children = render(OWNER, parse_spec("demo", copy.deepcopy(spec)), Tag("mlp", "v1"), SETTINGS)
    for child in children:
        validate_k8s(child)
    return {(c["kind"], c["metadata"]["name"]): c for c in children}


def _template(by: dict, name: str) -> dict:
    return by[("Deployment", name)]["spec"]["template"]


def test_the_config_is_a_configmap_every_runtime_container_reads(tmp_path) -> None:
    spec = {"bento": "mlp", "config": CONFIG, "workers": [{"name": "a"}, {"name": "b"}]}
    by = _by(spec)
    cm = by[("ConfigMap", "demo-runtime")]
    assert cm["metadata"]["ownerReferences"][0]["uid"] == "u"
    (text,) = cm["data"].values()
    path = tmp_path / "jubako-runtime.yaml"
    path.write_text(text)  # the file as the pods see it loads into the runtime's settings
    s = RuntimeSettings.load(path)
    assert (s.batching["predict"].max_batch_size, s.inflight_timeout_s, s.log_level) == (8, 12, "WARNING")
    hashes = set()
    for name in ("demo-proxy", "demo-worker-a", "demo-worker-b"):
        template = _template(by, name)
        hashes.add(template["metadata"]["annotations"][CONFIG_HASH_ANNOTATION])
        pod = template["spec"]
        (volume,) = [v for v in pod["volumes"] if v.get("configMap")]
        assert volume["configMap"]["name"] == "demo-runtime"
        (container,) = pod["containers"]
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["JUBAKO_CONFIG"] == f"{mount['mountPath']}/{next(iter(cm['data']))}" and mount["readOnly"]
    assert len(hashes) == 1


def test_a_change_of_config_changes_the_pod_templates_and_no_config_renders_none() -> None:
    before = _template(_by({"bento": "mlp", "config": CONFIG}), "demo-proxy")
    changed = copy.deepcopy(CONFIG)
    changed["batching"]["predict"]["max_batch_size"] = 16
    after = _template(_by({"bento": "mlp", "config": changed}), "demo-proxy")
    assert before["metadata"]["annotations"][CONFIG_HASH_ANNOTATION] != \
        after["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]
    plain = _by({"bento": "mlp"})
    assert not [k for k in plain if k[0] == "ConfigMap"]
    template = _template(plain, "demo-proxy")
    assert CONFIG_HASH_ANNOTATION not in template["metadata"]["annotations"]
    assert "JUBAKO_CONFIG" not in {e["name"] for e in template["spec"]["containers"][0]["env"]}


@pytest.mark.parametrize("config, message", [
    ({"max_bach_size": 3}, "unknown key(s) max_bach_size"),
    ({"batching": {"predict": {"max_batch": 3}}}, "batching.predict.max_batch: Extra inputs"),
    ({"port": "many"}, "port: Input should be a valid integer"),
])
def test_a_config_the_runtime_would_refuse_is_a_spec_error(config: dict, message: str) -> None:
    with pytest.raises(SpecError, match=r"config: .*" + message.replace("(", r"\(").replace(")", r"\)")):
        parse_spec("demo", {"bento": "mlp", "config": config})


def test_the_crd_schema_takes_a_free_form_config() -> None:
    validate_cr({"apiVersion": "serving.jubako.dev/v1alpha1", "kind": "BentoDeployment",
                 "metadata": {"name": "demo", "namespace": "ml"}, "spec": {"bento": "mlp", "config": CONFIG}})


@pytest.mark.slow  # the real operator and registry processes
@pytest.mark.timeout(120)
def test_the_operator_creates_updates_and_removes_the_configmap(cluster, operator) -> None:
    (cr,) = [copy.deepcopy(c) for c in load_examples() if c["metadata"]["name"] == "mlp-onnx"]
    cr["spec"]["config"] = CONFIG
    cluster.kube.create(cr)
    get = cluster.kube.get
    cm = wait_for("the ConfigMap", lambda: get("v1", "ConfigMap", "default", "mlp-onnx-runtime"))
    assert yaml.safe_load(next(iter(cm["data"].values()))) == CONFIG

    def config_hash() -> str | None:
        proxy = get("apps/v1", "Deployment", "default", "mlp-onnx-proxy") or {}
        return (proxy.get("spec", {}).get("template", {}).get("metadata", {}).get("annotations") or {}).get(
            CONFIG_HASH_ANNOTATION)

    first = wait_for("the proxy's config hash", config_hash)
    changed = {**CONFIG, "inflight_timeout_s": 99}
    cluster.kube.patch(API_VERSION, KIND, "default", "mlp-onnx", {"spec": {"config": changed}})
    wait_for("the new config", lambda: yaml.safe_load(next(iter(
        get("v1", "ConfigMap", "default", "mlp-onnx-runtime")["data"].values())))["inflight_timeout_s"] == 99)
    wait_for("the pods to roll", lambda: config_hash() not in (None, first))
    cluster.kube.patch(API_VERSION, KIND, "default", "mlp-onnx", {"spec": {"config": None}})
    wait_for("the ConfigMap gone", lambda: get("v1", "ConfigMap", "default", "mlp-onnx-runtime") is None)
    wait_for("the hash gone", lambda: config_hash() is None)
