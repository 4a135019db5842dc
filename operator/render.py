"""Pure rendering: a BentoDeployment (+ its resolved bento) -> the child manifests it wants.

No I/O here. Every child carries the `app.kubernetes.io/*` labels, the owner reference and
the selector labels the operator uses to find its children again. Names:
`<bd>-proxy` (Deployment, PDB, HPA), `<bd>` (the proxy Service: the URL), `<bd>-worker-<group>`
(Deployment, headless Service, PDB, HPA), `<bd>` (Ingress or HTTPRoute). A canary revision
renders the same set under the prefix `<bd>-canary` (its Ingress too: ingress-nginx splits
traffic with a second, annotated Ingress; an HTTPRoute splits it by backend weights).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, replace
from typing import Any

import yaml

from jubako.tags import Tag

from .config import OperatorSettings
from .spec import CANARY, GROUP, KIND, VERSION, BentoDeploymentSpec, Component

Manifest = dict[str, Any]

MANAGED_BY = "jubako-operator"
DEPLOYMENT_LABEL = f"{GROUP}/deployment"
GROUP_LABEL = f"{GROUP}/worker-group"
PROXY_PORT = 3000
WORKER_PORT = 7000
WORKER_HTTP_PORT = 7001
# The bento's requirements (docs/requirements.md): the install init container points
# DEPS_DIR/env at an environment that has them; the worker runs that environment's python.
DEPS_DIR = "/deps"
INSTALL_CONTAINER = "install-requirements"
WORKER_COMMAND = [f"{DEPS_DIR}/env/bin/python3", "-P", "-c", "from jubako.cli import main; main()"]
QUEUE_DEPTH_METRIC = "jubako_queue_items"
GPU_RESOURCE = "nvidia.com/gpu"
HTTPROUTE_API = "gateway.networking.k8s.io/v1"
NGINX_CANARY = "nginx.ingress.kubernetes.io/canary"
# Extended resources that put a worker on an accelerator, with the taint key of the nodes
# that have them (None: the operator's gpu_taint_key). torch reaches NVIDIA GPUs, MIG slices
# and AMD GPUs (ROCm) alike as "cuda".
ACCELERATORS: list[tuple[re.Pattern[str], str | None]] = [
    (re.compile(r"nvidia\.com/(gpu|mig-[0-9a-z.-]+)"), None),
    (re.compile(r"amd\.com/gpu"), "amd.com/gpu"),
]


def accelerator_taint(resource: str, settings_taint: str) -> str | None:
    """The taint key of the nodes offering `resource`, or None if it is no accelerator."""
    for pattern, taint in ACCELERATORS:
        if pattern.fullmatch(resource):
            return taint or settings_taint
    return None


def is_accelerator(resource: str) -> bool:
    return accelerator_taint(resource, "") is not None


@dataclass(frozen=True)
class Owner:
    """The BentoDeployment being rendered: identity only, the spec comes separately."""

    name: str
    namespace: str
    uid: str
    # Rendering the canary revision: its children's names and selectors take the prefix
    # `<name>-canary`; owner references and the deployment label still name the object.
    canary: bool = False

    @property
    def prefix(self) -> str:
        return f"{self.name}-{CANARY}" if self.canary else self.name


_LABEL_INVALID = re.compile(r"[^-A-Za-z0-9_.]")
_LABEL_EDGES = re.compile(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$")


def label_value(text: str) -> str:
    """A valid label value for `text`: at most 63 characters, alphanumeric at both ends.

    Tags like `edge:v1-` or `edge:2024.1.` are valid versions but not label values; the label
    is informational (selectors never use it), the exact tag stays in the pod's arguments.
    """
    return _LABEL_EDGES.sub("", _LABEL_INVALID.sub("-", text)[:63])


def proxy_name(owner: Owner) -> str:
    return f"{owner.prefix}-proxy"


def worker_name(owner: Owner, group: str) -> str:
    return f"{owner.prefix}-worker-{group}"


def service_url(owner: Owner, spec: BentoDeploymentSpec, settings: OperatorSettings) -> str:
    if spec.ingress:
        scheme = "https" if spec.ingress.tls else "http"
        return f"{scheme}://{spec.ingress.host}{spec.ingress.path.rstrip('/')}"
    port = "" if settings.service_port == 80 else f":{settings.service_port}"
    return f"http://{owner.name}.{owner.namespace}.svc{port}"


def selector_labels(owner: Owner, component: str, group: str | None = None) -> dict[str, str]:
    """Stable labels (a Deployment's selector is immutable: nothing version-dependent here).
    The canary's instance is `<name>-canary`, so no selector of one revision matches the
    other's pods."""
    labels = {
        "app.kubernetes.io/instance": owner.prefix,
        "app.kubernetes.io/component": component,
        DEPLOYMENT_LABEL: owner.name,
    }
    if group is not None:
        labels[GROUP_LABEL] = group
    return labels


def common_labels(owner: Owner, tag: Tag, component: str, group: str | None = None) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": label_value(tag.name),
        "app.kubernetes.io/version": label_value(tag.version),
        "app.kubernetes.io/part-of": "jubako",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        **selector_labels(owner, component, group),
    }


def owner_reference(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(owner: Owner, name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels,
        "ownerReferences": [owner_reference(owner)],
    }


def render(
    owner: Owner,
    spec: BentoDeploymentSpec,
    tag: Tag,
    settings: OperatorSettings,
    canary: Tag | None = None,
    gateway_api: bool = True,
) -> list[Manifest]:
    """Every child the BentoDeployment asks for, in a stable order.

    `canary`: the canary's resolved tag (None: no canary, or not resolved yet, so every
    request goes to the main revision). `gateway_api`: whether the cluster serves HTTPRoutes
    (without it spec.gateway renders nothing; the caller reports why)."""
    weight = spec.canary.weight if spec.canary is not None and canary is not None else None
    children = _revision(owner, spec, tag, settings)
    if weight is not None:
        assert canary is not None
        assert spec.canary is not None
        canary_spec = spec.model_copy(update={"image": spec.canary.image})
        children += _revision(replace(owner, canary=True), canary_spec, canary, settings)
    proxy_labels = common_labels(owner, tag, "proxy")
    if spec.ingress:
        children.append(_ingress(owner, spec, proxy_labels))
        if weight is not None:
            assert canary is not None
            canary_owner = replace(owner, canary=True)
            children.append(_ingress(canary_owner, spec, common_labels(canary_owner, canary, "proxy"),
                                     canary_weight=weight))
    if spec.gateway and gateway_api:
        children.append(_http_route(owner, spec, proxy_labels, weight))
    return with_runtime_config(owner, spec, tag, children)


def _revision(owner: Owner, spec: BentoDeploymentSpec, tag: Tag, settings: OperatorSettings) -> list[Manifest]:
    """One revision's proxy and worker groups, with their Services and scaling."""
    children: list[Manifest] = []
    proxy_labels = common_labels(owner, tag, "proxy")
    children.append(_deployment(owner, spec, tag, settings, spec.proxy, proxy_name(owner), "proxy"))
    children.append(_proxy_service(owner, proxy_labels))
    children += _scaling(owner, spec.proxy, proxy_name(owner), proxy_labels, "proxy", None)
    for group in spec.workers:
        name = worker_name(owner, group.name)
        labels = common_labels(owner, tag, "worker", group.name)
        children.append(_deployment(owner, spec, tag, settings, group, name, "worker", group.name))
        children.append(_worker_service(owner, name, labels, group.name))
        children += _scaling(owner, group, name, labels, "worker", group.name)
    return children


# --- pods -------------------------------------------------------------------------------


def _deployment(
    owner: Owner,
    spec: BentoDeploymentSpec,
    tag: Tag,
    settings: OperatorSettings,
    component: Component,
    name: str,
    role: str,
    group: str | None = None,
) -> Manifest:
    labels = common_labels(owner, tag, role, group)
    deployment_spec: dict[str, Any] = {
        "selector": {"matchLabels": selector_labels(owner, role, group)},
        "strategy": _strategy(component, settings),
        "template": {
            "metadata": {
                "labels": {**spec.pod_labels, **labels},
                "annotations": dict(spec.pod_annotations),
            },
            "spec": _pod_spec(owner, spec, tag, settings, component, role),
        },
    }
    # With an HPA the HPA owns replicas; writing them here would fight it on every resync.
    if component.autoscaling is None:
        deployment_spec["replicas"] = component.replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(owner, name, labels),
        "spec": deployment_spec,
    }


def _accelerator_taints(component: Component, settings: OperatorSettings) -> list[str]:
    """Taint keys of the accelerators the component's pods ask for (empty: CPU only)."""
    resources = _resources(component)
    asked = {*resources.get("requests", {}), *resources.get("limits", {})}
    return sorted({t for r in asked if (t := accelerator_taint(r, settings.gpu_taint_key))})


def _strategy(component: Component, settings: OperatorSettings) -> dict[str, Any]:
    """The spec's strategy, else: surge one pod for CPU pods (no capacity lost), but replace
    one at a time for accelerator pods, which roll out on a full node (no spare GPU)."""
    chosen = component.strategy
    if chosen is not None and chosen.type == "Recreate":
        return {"type": "Recreate"}
    if _accelerator_taints(component, settings):
        rolling: dict[str, Any] = {"maxSurge": 0, "maxUnavailable": 1}
    else:
        rolling = {"maxSurge": 1, "maxUnavailable": 0}
    if chosen is not None and chosen.rolling_update is not None:
        given = chosen.rolling_update
        if given.max_surge is not None:
            rolling["maxSurge"] = given.max_surge
        if given.max_unavailable is not None:
            rolling["maxUnavailable"] = given.max_unavailable
    return {"type": "RollingUpdate", "rollingUpdate": rolling}


def _tune_probes(container: dict[str, Any], component: Component) -> None:
    for key, probe in (("livenessProbe", component.probes.liveness),
                       ("readinessProbe", component.probes.readiness),
                       ("startupProbe", component.probes.startup)):
        if probe is not None:
            container[key].update(probe.model_dump(by_alias=True, exclude_none=True))


def _pod_spec(
    owner: Owner,
    spec: BentoDeploymentSpec,
    tag: Tag,
    settings: OperatorSettings,
    component: Component,
    role: str,
) -> dict[str, Any]:
    # spec.image: a bento's own image (`jubako containerize`) holds the bento at /bento and its
    # requirements installed, so its pods neither pull nor install anything first.
    baked = spec.image is not None
    image = spec.image or spec.runtime_image or settings.runtime_image
    pull_policy = spec.image_pull_policy or settings.image_pull_policy
    resources = _resources(component)
    taints = _accelerator_taints(component, settings)
    node_selector = dict(component.node_selector)
    tolerations = list(component.tolerations)
    if component.gpu_type:
        node_selector[settings.gpu_label] = component.gpu_type
    for taint in taints:
        if not any(t.get("key") == taint for t in tolerations):
            tolerations.append({"key": taint, "operator": "Exists", "effect": "NoSchedule"})
    if role == "proxy":
        container = _proxy_container(owner, spec)
    else:
        container = _worker_container(bool(taints))
    container.update(
        image=image,
        imagePullPolicy=pull_policy,
        resources=resources,
        securityContext=_container_security(),
    )
    _tune_probes(container, component)
    container["env"] = container["env"] + list(component.env)
    if component.env_from:
        container["envFrom"] = list(component.env_from)
    container["volumeMounts"] = [
        *([] if baked else [{"name": "bento", "mountPath": "/bento", "readOnly": True}]),
        {"name": "tmp", "mountPath": "/tmp"},
        *component.volume_mounts,
    ]
    init = [] if baked else [_pull_container(spec, tag, settings, image, pull_policy)]
    volumes = [*([] if baked else [{"name": "bento", "emptyDir": {}}]), {"name": "tmp", "emptyDir": {}}]
    if role == "worker" and not baked:  # only workers import the bento's code
        init.append(_install_container(spec, image, pull_policy))
        container["command"] = list(WORKER_COMMAND)
        container["volumeMounts"].append({"name": "deps", "mountPath": DEPS_DIR, "readOnly": True})
        volumes.append({"name": "deps", "emptyDir": {}})
    pod: dict[str, Any] = {
        "initContainers": init,
        "containers": [container, *component.extra_containers],
        "volumes": [*volumes, *component.volumes],
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "fsGroup": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "enableServiceLinks": False,
    }
    if node_selector:
        pod["nodeSelector"] = node_selector
    if tolerations:
        pod["tolerations"] = tolerations
    if component.affinity:
        pod["affinity"] = component.affinity
    if spec.image_pull_secrets:
        pod["imagePullSecrets"] = list(spec.image_pull_secrets)
    if spec.service_account_name:
        pod["serviceAccountName"] = spec.service_account_name
    for key, value in (
        ("topologySpreadConstraints", component.topology_spread_constraints),
        ("priorityClassName", component.priority_class_name),
        ("runtimeClassName", component.runtime_class_name),
        ("terminationGracePeriodSeconds", component.termination_grace_period_seconds),
    ):
        if value is not None and value != []:
            pod[key] = value
    return pod


def _container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _pull_container(
    spec: BentoDeploymentSpec, tag: Tag, settings: OperatorSettings, image: str, pull_policy: str
) -> dict[str, Any]:
    """Fetches the bento into the shared emptyDir: one image for every version, no builds."""
    secret = spec.registry.token_secret_ref
    secret_name = secret.name if secret else settings.token_secret_name
    secret_key = secret.key if secret else settings.token_secret_key
    return {
        "name": "pull-bento",
        "image": image,
        "imagePullPolicy": pull_policy,
        "args": ["pull", str(tag), "--output", "/bento"],
        "env": [
            {"name": "JUBAKO_REGISTRY_URL", "value": spec.registry.url or settings.registry_url},
            {
                "name": "JUBAKO_TOKEN",
                # Optional: a registry without auth needs no Secret at all.
                "valueFrom": {
                    "secretKeyRef": {"name": secret_name, "key": secret_key, "optional": True}
                },
            },
        ],
        "volumeMounts": [{"name": "bento", "mountPath": "/bento"}, {"name": "tmp", "mountPath": "/tmp"}],
        "securityContext": _container_security(),
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
    }


def _install_container(spec: BentoDeploymentSpec, image: str, pull_policy: str) -> dict[str, Any]:
    """Installs what the bento needs beyond the image into DEPS_DIR (a venv per digest, from the
    bento's wheels or the index); a failure is written to the termination log, which status.py
    turns into a RequirementsFailed condition naming the package and pip's error."""
    env: list[dict[str, Any]] = []
    source = spec.python
    if source.index_url_secret_ref:
        ref = source.index_url_secret_ref
        env.append({"name": "PIP_INDEX_URL",
                    "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
    elif source.index_url:
        env.append({"name": "PIP_INDEX_URL", "value": source.index_url})
    return {
        "name": INSTALL_CONTAINER,
        "image": image,
        "imagePullPolicy": pull_policy,
        "args": ["runtime", "install", "--bento", "/bento", "--target", DEPS_DIR],
        "env": env,
        "volumeMounts": [
            {"name": "bento", "mountPath": "/bento", "readOnly": True},
            {"name": "deps", "mountPath": DEPS_DIR},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "securityContext": _container_security(),
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def _probes(port: str | int) -> dict[str, Any]:
    return {
        "livenessProbe": {
            "httpGet": {"path": "/livez", "port": port},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": port},
            "periodSeconds": 5,
            "failureThreshold": 2,
        },
        # Loading large models can take minutes: allow it before liveness kicks in.
        "startupProbe": {
            "httpGet": {"path": "/livez", "port": port},
            "periodSeconds": 5,
            "failureThreshold": 120,
        },
    }


def _proxy_container(owner: Owner, spec: BentoDeploymentSpec) -> dict[str, Any]:
    workers = ",".join(f"{worker_name(owner, w.name)}:{WORKER_PORT}" for w in spec.workers)
    env = [
        {"name": "JUBAKO_BENTO", "value": "/bento"},
        {"name": "JUBAKO_PORT", "value": str(PROXY_PORT)},
        {"name": "JUBAKO_WORKERS", "value": workers},
        {"name": "JUBAKO_DEVICE", "value": "cpu"},
    ]
    if spec.route_path:
        # The Ingress (or HTTPRoute) forwards /v1/predict as is: the proxy serves its APIs
        # under the prefix (probes and /metrics stay at the root too).
        env.append({"name": "JUBAKO_ROOT_PATH", "value": spec.route_path})
    if spec.batching:
        batching = {
            api: {
                key: value
                for key, value in (
                    ("max_batch_size", b.max_batch_size),
                    ("max_latency_ms", b.max_latency_ms),
                )
                if value is not None
            }
            for api, b in sorted(spec.batching.items())
        }
        env.append({"name": "JUBAKO_BATCHING", "value": json.dumps(batching, sort_keys=True)})
    return {
        "name": "proxy",
        "args": ["runtime", "proxy", "--bento", "/bento", "--port", str(PROXY_PORT),
                 "--workers", workers],
        "ports": [{"name": "http", "containerPort": PROXY_PORT, "protocol": "TCP"}],
        "env": env,
        **_probes("http"),
    }


def _worker_container(accelerated: bool) -> dict[str, Any]:
    return {
        "name": "worker",
        "args": ["runtime", "worker", "--bento", "/bento", "--port", str(WORKER_PORT),
                 "--http-port", str(WORKER_HTTP_PORT)],
        "ports": [
            {"name": "batches", "containerPort": WORKER_PORT, "protocol": "TCP"},
            {"name": "http", "containerPort": WORKER_HTTP_PORT, "protocol": "TCP"},
        ],
        "env": [
            {"name": "JUBAKO_BENTO", "value": "/bento"},
            {"name": "JUBAKO_WORKER_PORT", "value": str(WORKER_PORT)},
            {"name": "JUBAKO_WORKER_HTTP_PORT", "value": str(WORKER_HTTP_PORT)},
            {"name": "JUBAKO_DEVICE", "value": "cuda" if accelerated else "cpu"},
        ],
        **_probes("http"),
    }


def _resources(component: Component) -> dict[str, Any]:
    requests = {k: str(v) for k, v in component.resources.requests.items()}
    limits = {k: str(v) for k, v in component.resources.limits.items()}
    if component.resources.gpu:
        # Extended resources must be equal in requests and limits.
        requests[GPU_RESOURCE] = limits[GPU_RESOURCE] = str(component.resources.gpu)
    resources: dict[str, Any] = {}
    if requests:
        resources["requests"] = requests
    if limits:
        resources["limits"] = limits
    return resources


# --- services, scaling, ingress -----------------------------------------------------------


def _proxy_service(owner: Owner, labels: dict[str, str]) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(owner, owner.prefix, labels),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(owner, "proxy"),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def _worker_service(owner: Owner, name: str, labels: dict[str, str], group: str) -> Manifest:
    """Headless: DNS answers one address per ready worker pod, which the proxy dials."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(owner, name, labels),
        "spec": {
            "clusterIP": "None",
            "selector": selector_labels(owner, "worker", group),
            "ports": [
                {"name": "batches", "port": WORKER_PORT, "targetPort": "batches", "protocol": "TCP"},
                {"name": "http", "port": WORKER_HTTP_PORT, "targetPort": "http", "protocol": "TCP"},
            ],
        },
    }


def _scaling(
    owner: Owner,
    component: Component,
    name: str,
    labels: dict[str, str],
    role: str,
    group: str | None,
) -> list[Manifest]:
    children: list[Manifest] = []
    scaling = component.autoscaling
    if scaling is not None:
        metrics: list[dict[str, Any]] = []
        if scaling.target_cpu_utilization_percentage is not None:
            metrics.append({
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {
                        "type": "Utilization",
                        "averageUtilization": scaling.target_cpu_utilization_percentage,
                    },
                },
            })
        if scaling.target_queue_depth is not None:
            # The queue lives in the proxy: scale on its depth divided by this group's pods
            # (served by a Prometheus adapter from the proxy's /metrics).
            metrics.append({
                "type": "Object",
                "object": {
                    "describedObject": {"apiVersion": "v1", "kind": "Service", "name": owner.prefix},
                    "metric": {"name": QUEUE_DEPTH_METRIC},
                    "target": {"type": "AverageValue", "averageValue": str(scaling.target_queue_depth)},
                },
            })
        children.append({
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": _metadata(owner, name, labels),
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "minReplicas": scaling.min_replicas,
                "maxReplicas": scaling.max_replicas,
                "metrics": metrics,
                **({"behavior": scaling.behavior} if scaling.behavior else {}),
            },
        })
    # A budget only helps when there is a replica to spare.
    floor = scaling.min_replicas if scaling is not None else component.replicas
    if floor >= 2:
        children.append({
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": _metadata(owner, name, labels),
            "spec": {
                "maxUnavailable": 1,
                "selector": {"matchLabels": selector_labels(owner, role, group)},
            },
        })
    return children


def _ingress(
    owner: Owner, spec: BentoDeploymentSpec, labels: dict[str, str], canary_weight: int | None = None
) -> Manifest:
    """The revision's Ingress; the canary's is a second one for the same host and path that
    ingress-nginx reads as a canary taking `canary_weight` percent of the requests."""
    ingress = spec.ingress
    assert ingress is not None
    metadata = _metadata(owner, owner.prefix, labels)
    annotations = dict(ingress.annotations)
    if canary_weight is not None:
        annotations[NGINX_CANARY] = "true"
        annotations[f"{NGINX_CANARY}-weight"] = str(canary_weight)
    if annotations:
        metadata["annotations"] = annotations
    body: dict[str, Any] = {
        "rules": [{
            "host": ingress.host,
            "http": {"paths": [{
                "path": ingress.path,
                "pathType": "Prefix",
                "backend": {"service": {"name": owner.prefix, "port": {"name": "http"}}},
            }]},
        }],
    }
    if ingress.class_name:
        body["ingressClassName"] = ingress.class_name
    if ingress.tls:
        body["tls"] = [{"hosts": [ingress.host], "secretName": ingress.tls.secret_name}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": metadata,
        "spec": body,
    }


def _http_route(
    owner: Owner, spec: BentoDeploymentSpec, labels: dict[str, str], canary_weight: int | None
) -> Manifest:
    """One rule to the proxy Services, split by weight when there is a canary."""
    gateway = spec.gateway
    assert gateway is not None
    backends = [{"name": owner.name, "port": 80, "weight": 100 - (canary_weight or 0)}]
    if canary_weight is not None:
        backends.append({"name": replace(owner, canary=True).prefix, "port": 80, "weight": canary_weight})
    body: dict[str, Any] = {
        "parentRefs": [dict(ref) for ref in gateway.parent_refs],
        "rules": [{
            "matches": [{"path": {"type": "PathPrefix", "value": gateway.path}}],
            "backendRefs": backends,
        }],
    }
    if gateway.hostnames:
        body["hostnames"] = list(gateway.hostnames)
    return {
        "apiVersion": HTTPROUTE_API,
        "kind": "HTTPRoute",
        "metadata": _metadata(owner, owner.name, labels),
        "spec": body,
    }


# --- the runtime config file ---------------------------------------------------------------

CONFIG_DIR = "/etc/jubako"
CONFIG_FILE = "jubako-runtime.yaml"
CONFIG_HASH_ANNOTATION = f"{GROUP}/runtime-config-hash"


def config_map_name(owner: Owner) -> str:
    return f"{owner.name}-runtime"


def with_runtime_config(owner: Owner, spec: BentoDeploymentSpec, tag: Tag, children: list[Manifest]) -> list[Manifest]:
    """spec.config as the runtime's config file: a ConfigMap (one for every revision) mounted
    read-only into each proxy and worker container, with JUBAKO_CONFIG naming it. The pod
    templates carry the file's hash, so a change of config rolls the pods (a mounted
    ConfigMap changes under a running process, which reads its file once at start)."""
    if spec.config is None:
        return children
    text = yaml.safe_dump(spec.config, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    name = config_map_name(owner)
    volume = "runtime-config"
    for child in children:
        if child["kind"] != "Deployment":
            continue
        template = child["spec"]["template"]
        template["metadata"].setdefault("annotations", {})[CONFIG_HASH_ANNOTATION] = digest
        pod = template["spec"]
        pod["volumes"].append({"name": volume, "configMap": {"name": name}})
        for container in pod["containers"]:
            if container["name"] in ("proxy", "worker"):
                container["volumeMounts"].append({"name": volume, "mountPath": CONFIG_DIR, "readOnly": True})
                container["env"].append({"name": "JUBAKO_CONFIG", "value": f"{CONFIG_DIR}/{CONFIG_FILE}"})
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(owner, name, common_labels(owner, tag, "runtime-config")),
        "data": {CONFIG_FILE: text},
    }
    return [config_map, *children]  # first: the pods mount it
