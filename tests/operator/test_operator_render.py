"""Rendering is pure: every spec field lands where it should, and every child is a valid
Kubernetes object (strict schemas of the oldest and newest supported versions)."""

from __future__ import annotations

import json

import pytest
from jubako.operator.config import OperatorSettings
from jubako.operator.render import Owner, render, service_url
from jubako.operator.spec import parse_spec
from operator_manifests import load_examples, validate_k8s

from jubako.tags import Tag

SETTINGS = OperatorSettings(
    runtime_image="registry.local/jubako-runtime:1",
    registry_url="http://registry.jubako:8000",
    priority=1,
)
OWNER = Owner(name="demo", namespace="ml", uid="uid-1")
TAG = Tag("mlp", "v3")

FULL_SPEC = {
    "bento": "mlp:latest",
    "registry": {"url": "https://reg.example.com", "tokenSecretRef": {"name": "tok", "key": "t"}},
    "runtimeImage": "custom/runtime:2",
    "imagePullPolicy": "Always",
    "imagePullSecrets": [{"name": "pull"}],
    "serviceAccountName": "serving",
    "podLabels": {"team": "vision"},
    "podAnnotations": {"prometheus.io/scrape": "true"},
    "batching": {"predict": {"maxBatchSize": 32, "maxLatencyMs": 25}, "embed": {"maxBatchSize": 8}},
    "proxy": {
        "replicas": 3,
        "resources": {"requests": {"cpu": "250m"}, "limits": {"memory": "512Mi"}},
        "nodeSelector": {"pool": "cpu"},
    },
    "workers": [
        {
            "name": "a100",
            "resources": {"gpu": 2, "requests": {"cpu": "4", "memory": "16Gi"}},
            "gpuType": "NVIDIA-A100-SXM4-80GB",
            "nodeSelector": {"zone": "a"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
            "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                "weight": 100,
                "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                    "labelSelector": {"matchLabels": {"app.kubernetes.io/instance": "demo"}}},
            }]}},
            "env": [
                {"name": "PLAIN", "value": "1"},
                {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            ],
            "envFrom": [{"configMapRef": {"name": "cfg"}}],
            "volumes": [{"name": "cache", "persistentVolumeClaim": {"claimName": "hf-cache"}}],
            "volumeMounts": [{"name": "cache", "mountPath": "/cache"}],
            "autoscaling": {"minReplicas": 2, "maxReplicas": 8, "targetQueueDepth": 16,
                            "targetCPUUtilizationPercentage": 80},
        },
        {"name": "cpu", "replicas": 0},
    ],
    "ingress": {"host": "demo.example.com", "className": "nginx", "path": "/v1",
                "annotations": {"a": "b"}, "tls": {"secretName": "demo-tls"}},
}


def _render(spec, tag=TAG):
    return render(OWNER, parse_spec(OWNER.name, spec), tag, SETTINGS)


def _by(children):
    return {(c["kind"], c["metadata"]["name"]): c for c in children}


def _pod(children, name):
    return _by(children)[("Deployment", name)]["spec"]["template"]["spec"]


def test_every_child_of_the_full_spec_is_a_valid_kubernetes_object():
    children = _render(FULL_SPEC)
    for child in children:
        validate_k8s(child)
    assert sorted(_by(children)) == sorted([
        ("Deployment", "demo-proxy"), ("Service", "demo"), ("PodDisruptionBudget", "demo-proxy"),
        ("Deployment", "demo-worker-a100"), ("Service", "demo-worker-a100"),
        ("HorizontalPodAutoscaler", "demo-worker-a100"), ("PodDisruptionBudget", "demo-worker-a100"),
        ("Deployment", "demo-worker-cpu"), ("Service", "demo-worker-cpu"),
        ("Ingress", "demo"),
    ])


@pytest.mark.parametrize("cr", load_examples(), ids=lambda cr: cr["metadata"]["name"])
def test_examples_render_valid_children(cr):
    owner = Owner(cr["metadata"]["name"], cr["metadata"]["namespace"], "u")
    spec = parse_spec(owner.name, cr["spec"])
    children = render(owner, spec, Tag(spec.tag.name, "v1"), SETTINGS)
    assert children
    for child in children:
        validate_k8s(child)


def test_minimal_spec_renders_proxy_and_one_default_worker_group():
    children = _render({"bento": "mlp"})
    for child in children:
        validate_k8s(child)
    assert sorted(_by(children)) == sorted([
        ("Deployment", "demo-proxy"), ("Service", "demo"),
        ("Deployment", "demo-worker-default"), ("Service", "demo-worker-default"),
    ])
    pod = _pod(children, "demo-worker-default")
    assert pod["containers"][0]["image"] == SETTINGS.runtime_image
    assert "nodeSelector" not in pod and "tolerations" not in pod
    assert _by(children)[("Deployment", "demo-proxy")]["spec"]["replicas"] == 1


def test_every_child_is_labelled_and_owned():
    for child in _render(FULL_SPEC):
        meta = child["metadata"]
        assert meta["namespace"] == "ml"
        assert meta["ownerReferences"] == [{
            "apiVersion": "serving.jubako.dev/v1alpha1", "kind": "BentoDeployment", "name": "demo",
            "uid": "uid-1", "controller": True, "blockOwnerDeletion": True,
        }]
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "jubako-operator"
        assert meta["labels"]["app.kubernetes.io/instance"] == "demo"
        assert meta["labels"]["app.kubernetes.io/name"] == "mlp"
        assert meta["labels"]["app.kubernetes.io/version"] == "v3"
        assert meta["labels"]["serving.jubako.dev/deployment"] == "demo"


def test_selectors_do_not_depend_on_the_version():
    # A Deployment's selector is immutable: a new bento version must not change it.
    old, new = _render(FULL_SPEC, Tag("mlp", "v3")), _render(FULL_SPEC, Tag("mlp", "v4"))
    for a, b in zip(old, new, strict=True):
        if a["kind"] == "Deployment":
            assert a["spec"]["selector"] == b["spec"]["selector"]
            assert "app.kubernetes.io/version" not in a["spec"]["selector"]["matchLabels"]
            assert a["spec"]["template"] != b["spec"]["template"]


def test_gpu_workers_get_gpu_limits_requests_node_selector_and_toleration():
    pod = _pod(_render(FULL_SPEC), "demo-worker-a100")
    resources = pod["containers"][0]["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == "2"
    assert resources["requests"]["nvidia.com/gpu"] == "2"
    assert resources["requests"]["cpu"] == "4" and resources["requests"]["memory"] == "16Gi"
    assert pod["nodeSelector"] == {"zone": "a", "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert pod["tolerations"] == [
        {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"},
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
    ]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["JUBAKO_DEVICE"]["value"] == "cuda"


def test_gpu_label_and_taint_come_from_the_operator_settings():
    settings = SETTINGS.model_copy(update={"gpu_label": "gpu.example/model", "gpu_taint_key": "gpu"})
    spec = parse_spec("demo", FULL_SPEC)
    pod = _pod(render(OWNER, spec, TAG, settings), "demo-worker-a100")
    assert pod["nodeSelector"]["gpu.example/model"] == "NVIDIA-A100-SXM4-80GB"
    assert {"key": "gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]


def test_cpu_components_get_no_gpu_and_user_fields_pass_through():
    children = _render(FULL_SPEC)
    proxy = _pod(children, "demo-proxy")
    assert proxy["nodeSelector"] == {"pool": "cpu"}
    assert "tolerations" not in proxy
    assert proxy["containers"][0]["resources"] == {
        "requests": {"cpu": "250m"}, "limits": {"memory": "512Mi"}}
    worker = _pod(children, "demo-worker-a100")
    container = worker["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["SECRET"]["valueFrom"] == {"secretKeyRef": {"name": "s", "key": "k"}}
    assert env["POD"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert container["envFrom"] == [{"configMapRef": {"name": "cfg"}}]
    assert {"name": "cache", "persistentVolumeClaim": {"claimName": "hf-cache"}} in worker["volumes"]
    assert {"name": "cache", "mountPath": "/cache"} in container["volumeMounts"]
    assert worker["affinity"] == FULL_SPEC["workers"][0]["affinity"]
    assert _pod(children, "demo-worker-cpu")["containers"][0]["env"][-1] == {
        "name": "JUBAKO_DEVICE", "value": "cpu"}


def test_pods_share_one_image_and_pull_the_bento_in_an_init_container():
    children = _render(FULL_SPEC)
    for name in ("demo-proxy", "demo-worker-a100", "demo-worker-cpu"):
        pod = _pod(children, name)
        init = pod["initContainers"][0]  # workers also install requirements: test_operator_requirements.py
        assert init["image"] == pod["containers"][0]["image"] == "custom/runtime:2"
        assert init["imagePullPolicy"] == pod["containers"][0]["imagePullPolicy"] == "Always"
        assert init["args"] == ["pull", "mlp:v3", "--output", "/bento"]
        env = {e["name"]: e for e in init["env"]}
        assert env["JUBAKO_REGISTRY_URL"]["value"] == "https://reg.example.com"
        assert env["JUBAKO_TOKEN"]["valueFrom"]["secretKeyRef"] == {
            "name": "tok", "key": "t", "optional": True}
        assert {"name": "bento", "emptyDir": {}} in pod["volumes"]
        assert pod["imagePullSecrets"] == [{"name": "pull"}]
        assert pod["serviceAccountName"] == "serving"
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


def test_default_registry_and_token_secret_come_from_settings():
    init = _pod(_render({"bento": "mlp"}), "demo-proxy")["initContainers"][0]
    env = {e["name"]: e for e in init["env"]}
    assert env["JUBAKO_REGISTRY_URL"]["value"] == "http://registry.jubako:8000"
    assert env["JUBAKO_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == SETTINGS.token_secret_name


def test_runtime_commands_ports_and_probes_follow_the_contract():
    children = _render(FULL_SPEC)
    proxy = _pod(children, "demo-proxy")["containers"][0]
    assert proxy["args"] == ["runtime", "proxy", "--bento", "/bento", "--port", "3000",
                             "--workers", "demo-worker-a100:7000,demo-worker-cpu:7000"]
    env = {e["name"]: e.get("value") for e in proxy["env"]}
    assert env["JUBAKO_WORKERS"] == "demo-worker-a100:7000,demo-worker-cpu:7000"
    assert json.loads(env["JUBAKO_BATCHING"]) == {
        "predict": {"max_batch_size": 32, "max_latency_ms": 25}, "embed": {"max_batch_size": 8}}
    worker = _pod(children, "demo-worker-a100")["containers"][0]
    assert worker["args"] == ["runtime", "worker", "--bento", "/bento", "--port", "7000",
                              "--http-port", "7001"]
    for container, port in ((proxy, 3000), (worker, 7001)):
        assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert {p["name"]: p["containerPort"] for p in container["ports"]}["http"] == port


def test_services_proxy_front_door_and_headless_workers():
    by = _by(_render(FULL_SPEC))
    front = by[("Service", "demo")]["spec"]
    assert front["selector"]["app.kubernetes.io/component"] == "proxy"
    assert front["ports"][0]["port"] == 80
    workers = by[("Service", "demo-worker-a100")]["spec"]
    assert workers["clusterIP"] == "None"
    assert workers["selector"]["serving.jubako.dev/worker-group"] == "a100"


def test_autoscaling_owns_replicas_and_scales_on_cpu_and_queue_depth():
    by = _by(_render(FULL_SPEC))
    assert "replicas" not in by[("Deployment", "demo-worker-a100")]["spec"]
    assert by[("Deployment", "demo-proxy")]["spec"]["replicas"] == 3
    assert by[("Deployment", "demo-worker-cpu")]["spec"]["replicas"] == 0
    hpa = by[("HorizontalPodAutoscaler", "demo-worker-a100")]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": "demo-worker-a100"}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 8)
    cpu, queue = hpa["metrics"]
    assert cpu["resource"]["target"] == {"type": "Utilization", "averageUtilization": 80}
    assert queue["object"]["metric"] == {"name": "jubako_queue_items"}
    assert queue["object"]["describedObject"]["name"] == "demo"
    assert queue["object"]["target"] == {"type": "AverageValue", "averageValue": "16"}


def test_disruption_budgets_only_where_a_replica_can_be_spared():
    by = _by(_render(FULL_SPEC))
    assert by[("PodDisruptionBudget", "demo-proxy")]["spec"]["maxUnavailable"] == 1
    assert ("PodDisruptionBudget", "demo-worker-cpu") not in by


def test_pod_labels_and_annotations_are_added_without_overriding_ours():
    spec = dict(FULL_SPEC, podLabels={"team": "vision", "app.kubernetes.io/instance": "hijack"})
    template = _by(_render(spec))[("Deployment", "demo-proxy")]["spec"]["template"]
    assert template["metadata"]["labels"]["team"] == "vision"
    assert template["metadata"]["labels"]["app.kubernetes.io/instance"] == "demo"
    assert template["metadata"]["annotations"] == {"prometheus.io/scrape": "true"}


def test_ingress_host_class_path_tls_and_url():
    spec = parse_spec("demo", FULL_SPEC)
    ingress = _by(render(OWNER, spec, TAG, SETTINGS))[("Ingress", "demo")]
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["metadata"]["annotations"] == {"a": "b"}
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "demo.example.com"
    assert rule["http"]["paths"][0]["path"] == "/v1"
    assert rule["http"]["paths"][0]["backend"]["service"]["name"] == "demo"
    assert ingress["spec"]["tls"] == [{"hosts": ["demo.example.com"], "secretName": "demo-tls"}]
    assert service_url(OWNER, spec, SETTINGS) == "https://demo.example.com/v1"
    assert service_url(OWNER, parse_spec("demo", {"bento": "mlp"}), SETTINGS) == "http://demo.ml.svc"


def test_rendering_is_deterministic():
    assert _render(FULL_SPEC) == _render(FULL_SPEC)


def test_the_validator_is_strict():
    # Guards the guard: an unknown field in a rendered child must fail validation.
    import kubernetes_validate

    child = _by(_render({"bento": "mlp"}))[("Deployment", "demo-proxy")]
    child["spec"]["template"]["spec"]["containers"][0]["gpus"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_k8s(child)


@pytest.mark.parametrize(("resource", "taint"), [
    ("nvidia.com/mig-1g.10gb", "nvidia.com/gpu"),
    ("nvidia.com/gpu", "nvidia.com/gpu"),
    ("amd.com/gpu", "amd.com/gpu"),
])
def test_accelerators_in_limits_run_on_the_accelerator_and_tolerate_its_taint(resource, taint):
    children = _render({"bento": "mlp", "workers": [
        {"name": "acc", "resources": {"limits": {resource: 1, "memory": "4Gi"}}}]})
    for child in children:
        validate_k8s(child)
    pod = _pod(children, "demo-worker-acc")
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["JUBAKO_DEVICE"] == "cuda"
    assert {"key": taint, "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["containers"][0]["resources"]["limits"][resource] == "1"
    # the proxy asks for none and stays on the CPU
    proxy = _pod(children, "demo-proxy")
    assert "tolerations" not in proxy
    assert {e["name"]: e.get("value") for e in proxy["containers"][0]["env"]}["JUBAKO_DEVICE"] == "cpu"
