"""A typed view of a BentoDeployment's spec.

The CRD's schema (crds/bentodeployment.yaml) validates and defaults on the API server; this
model repeats the defaults so the operator behaves the same when a server did not apply
them, and turns what the schema cannot express into a `SpecError` with a readable message.
Kubernetes-native sub-objects (env, volumes, tolerations...) pass through untouched.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from kubernetes.utils import parse_quantity
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from jubako.errors import InvalidTag, JubakoError
from jubako.tags import Tag

GROUP = "serving.jubako.dev"
VERSION = "v1alpha1"
PLURAL = "bentodeployments"
KIND = "BentoDeployment"
MAX_NAME = 40
# Names become Services (DNS-1035 labels). A name with a `-worker` or `-canary` segment could
# render a child another BentoDeployment renders too (`col` + group `default` vs
# `col-worker-default` both want Service col-worker-default; `col`'s canary and
# `col-canary` both want Service col-canary): refusing them makes child names collision-free
# (tests/operator/test_operator_validation.py and test_operator_canary.py check this
# exhaustively on a small alphabet). The CRD's CEL rules say the same.
NAME_PATTERN = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
RESERVED_SEGMENT = re.compile(r"-(worker|canary)(-|$)")
CANARY = "canary"  # the name segment of the canary's children: <name>-canary[-proxy|-worker-<group>]
MAX_CHILD_NAME = 63  # a Service name is a DNS-1035 label


class SpecError(JubakoError):
    """The spec cannot be rendered; the message says which field and why."""


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class TokenSecretRef(_Model):
    name: str
    key: str = "token"


class Registry(_Model):
    url: str | None = None
    token_secret_ref: TokenSecretRef | None = None


class IndexSecretRef(_Model):
    name: str
    key: str = "indexUrl"


class PythonPackages(_Model):
    """Where worker pods install a bento's requirements from (docs/requirements.md)."""

    index_url: str | None = None
    index_url_secret_ref: IndexSecretRef | None = None  # a URL with credentials: never in the spec


def _quantity(value: str | int) -> str | int:
    # The API server would refuse the Deployment later, half-way through applying.
    try:
        parse_quantity(value)
    except (ValueError, TypeError):
        raise ValueError(f"{value!r} is not a Kubernetes quantity") from None
    return value


Quantity = Annotated[str | int, AfterValidator(_quantity)]


def _runtime_config(value: dict[str, Any] | None) -> dict[str, Any] | None:
    # Checked here as the runtime would read the file, so a typo is a SpecError on the
    # object, not pods crash-looping; only the bento's API names wait for the runtime.
    from jubako.runtime_settings import check_config

    if value is not None:
        try:
            check_config(value, "runtime config")
        except JubakoError as e:
            raise ValueError(str(e)) from None
    return value


class Resources(_Model):
    gpu: int = Field(default=0, ge=0)
    requests: dict[str, Quantity] = Field(default_factory=dict)
    limits: dict[str, Quantity] = Field(default_factory=dict)


class Autoscaling(_Model):
    # 0 scales an idle worker group to zero (woken by the proxy's queue; never the proxy).
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(ge=1)
    target_cpu_utilization_percentage: int | None = Field(
        default=None, ge=1, le=100, alias="targetCPUUtilizationPercentage"
    )
    target_queue_depth: int | None = Field(default=None, ge=1)
    # The HPA's own `behavior` (scale-up/down policies), passed through.
    behavior: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _check(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError("minReplicas must not exceed maxReplicas")
        if self.target_cpu_utilization_percentage is None and self.target_queue_depth is None:
            raise ValueError("set targetCPUUtilizationPercentage, targetQueueDepth or both")
        if self.min_replicas == 0 and self.target_queue_depth is None:
            # With no pod there is no CPU to measure: only the proxy's queue can wake the group.
            raise ValueError("minReplicas 0 (scale to zero) needs targetQueueDepth")
        return self


IntOrPercent = Annotated[int | str, Field(union_mode="left_to_right")]


def _int_or_percent(value: int | str | None) -> int | str | None:
    if isinstance(value, str) and not re.fullmatch(r"[0-9]+%", value):
        raise ValueError(f"{value!r} is neither a number nor a percentage")
    if isinstance(value, int) and value < 0:
        raise ValueError("must not be negative")
    return value


class RollingUpdate(_Model):
    max_surge: Annotated[IntOrPercent | None, AfterValidator(_int_or_percent)] = None
    max_unavailable: Annotated[IntOrPercent | None, AfterValidator(_int_or_percent)] = None


class Strategy(_Model):
    type: Literal["RollingUpdate", "Recreate"] = "RollingUpdate"
    rolling_update: RollingUpdate | None = None

    @model_validator(mode="after")
    def _check(self) -> Strategy:
        if self.type == "Recreate" and self.rolling_update is not None:
            raise ValueError("a Recreate strategy takes no rollingUpdate")
        return self


class Probe(_Model):
    """Timing only: the operator owns what is probed (the runtime's /livez and /readyz)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")
    initial_delay_seconds: int | None = Field(default=None, ge=0)
    period_seconds: int | None = Field(default=None, ge=1)
    timeout_seconds: int | None = Field(default=None, ge=1)
    success_threshold: int | None = Field(default=None, ge=1)
    failure_threshold: int | None = Field(default=None, ge=1)


class Probes(_Model):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")
    liveness: Probe | None = None
    readiness: Probe | None = None
    startup: Probe | None = None


# The operator's own containers in a pod; an extra container must not take their names.
RESERVED_CONTAINERS = ("proxy", "worker", "pull-bento", "install-requirements")


class Component(_Model):
    replicas: int = Field(default=1, ge=0)
    resources: Resources = Field(default_factory=Resources)
    gpu_type: str | None = None
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    affinity: dict[str, Any] | None = None
    env: list[dict[str, Any]] = Field(default_factory=list)
    env_from: list[dict[str, Any]] = Field(default_factory=list)
    volumes: list[dict[str, Any]] = Field(default_factory=list)
    volume_mounts: list[dict[str, Any]] = Field(default_factory=list)
    autoscaling: Autoscaling | None = None
    # How the Deployment rolls out; the default depends on whether the pods hold accelerators.
    strategy: Strategy | None = None
    # Pod-spec fields passed through as given.
    topology_spread_constraints: list[dict[str, Any]] = Field(default_factory=list)
    priority_class_name: str | None = None
    runtime_class_name: str | None = None
    termination_grace_period_seconds: int | None = Field(default=None, ge=0)
    probes: Probes = Field(default_factory=Probes)
    extra_containers: list[dict[str, Any]] = Field(default_factory=list, max_length=8)

    @model_validator(mode="after")
    def _check(self) -> Component:
        if self.gpu_type and self.resources.gpu == 0:
            raise ValueError("gpuType needs resources.gpu > 0")
        names = [c.get("name") for c in self.extra_containers]
        if not all(isinstance(n, str) and n for n in names):
            raise ValueError("extraContainers: every container needs a name")
        taken = sorted(set(names) & set(RESERVED_CONTAINERS))
        if taken or len(set(names)) != len(names):
            raise ValueError(f"extraContainers: names must be unique and not {list(RESERVED_CONTAINERS)}")
        return self


class WorkerGroup(Component):
    name: str = Field(pattern=r"^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$")


class Batching(_Model):
    max_batch_size: int | None = Field(default=None, ge=1)
    max_latency_ms: int | None = Field(default=None, ge=0)


class TLS(_Model):
    secret_name: str


class Ingress(_Model):
    host: str
    class_name: str | None = None
    # What the proxy accepts as its root path (jubako/runtime_settings.py), so it always starts.
    path: str = Field(default="/", pattern=r"^(/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)*/?$")
    annotations: dict[str, str] = Field(default_factory=dict)
    tls: TLS | None = None


RoutePath = Annotated[str, Field(pattern=r"^(/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)*/?$")]


class Canary(_Model):
    """A second proxy + workers set serving another bento, taking `weight` percent of requests."""

    bento: str
    weight: int = Field(default=0, ge=0, le=100)
    # The canary bento's own image, when `image` bakes the main one in (required then).
    image: str | None = Field(default=None, min_length=1)


class Gateway(_Model):
    """Route through the Gateway API (an HTTPRoute attached to these parents), not an Ingress."""

    parent_refs: list[dict[str, Any]] = Field(min_length=1, max_length=32)
    hostnames: list[str] = Field(default_factory=list, max_length=16)
    # Like ingress.path: the proxy serves its APIs under it.
    path: RoutePath = "/"


class BentoDeploymentSpec(_Model):
    bento: str
    registry: Registry = Field(default_factory=Registry)
    python: PythonPackages = Field(default_factory=PythonPackages)
    runtime_image: str | None = None
    # A bento's own image (`jubako containerize`): the bento baked in, no pull or install.
    image: str | None = Field(default=None, min_length=1)
    image_pull_policy: str | None = None
    image_pull_secrets: list[dict[str, str]] = Field(default_factory=list)
    service_account_name: str | None = None
    pod_labels: dict[str, str] = Field(default_factory=dict)
    pod_annotations: dict[str, str] = Field(default_factory=dict)
    batching: dict[str, Batching] = Field(default_factory=dict)
    # The runtime config file (docs/configuration.md) as an object: a ConfigMap mounted into
    # the proxy and worker pods (render.with_runtime_config).
    config: Annotated[dict[str, Any] | None, AfterValidator(_runtime_config)] = None
    proxy: Component = Field(default_factory=Component)
    workers: list[WorkerGroup] = Field(
        default_factory=lambda: [WorkerGroup(name="default")], min_length=1, max_length=8
    )
    ingress: Ingress | None = None
    gateway: Gateway | None = None
    canary: Canary | None = None

    @property
    def tag(self) -> Tag:
        return Tag.parse(self.bento)

    @property
    def route_path(self) -> str:
        """The path prefix external traffic arrives under ("" for the root)."""
        route = self.ingress or self.gateway
        return route.path.rstrip("/") if route else ""

    @model_validator(mode="after")
    def _check(self) -> BentoDeploymentSpec:
        try:
            Tag.parse(self.bento)
            if self.canary is not None:
                Tag.parse(self.canary.bento)
        except InvalidTag as exc:
            raise ValueError(str(exc)) from None
        if self.canary is not None and self.canary.bento == self.bento:
            # Promotion sets bento to the canary's tag: the two must differ to tell them apart.
            raise ValueError("canary.bento must differ from bento (to promote, set bento to"
                             " the canary's tag and remove canary)")
        if self.canary is not None and (self.image is None) != (self.canary.image is None):
            # A baked image holds one bento: the canary needs its own (or neither has one).
            raise ValueError("set canary.image exactly when image is set (a bento's own image"
                             " holds that bento only)")
        if self.ingress is not None and self.gateway is not None:
            raise ValueError("set ingress or gateway, not both")
        if self.proxy.autoscaling is not None and self.proxy.autoscaling.min_replicas == 0:
            raise ValueError("proxy.autoscaling.minReplicas must be at least 1: the proxy holds"
                             " the queue that wakes worker groups scaled to zero")
        names = [w.name for w in self.workers]
        if len(set(names)) != len(names):
            raise ValueError(f"worker group names must be unique, got {names}")
        return self


def check_name(name: str) -> None:
    if len(name) > MAX_NAME:
        raise SpecError(f"name {name!r} is longer than {MAX_NAME} characters")
    if not NAME_PATTERN.fullmatch(name):
        raise SpecError(
            f"name {name!r} is not a DNS-1035 label (lower-case letters, digits and '-',"
            " starting with a letter): its Services could not be created"
        )
    if RESERVED_SEGMENT.search(name):
        raise SpecError(
            f"name {name!r} contains a '-worker' or '-canary' segment: its children's names"
            " could collide with another BentoDeployment's"
        )


def parse_spec(name: str, spec: Any) -> BentoDeploymentSpec:
    """Validate a raw spec; raise SpecError with every problem on one line."""
    check_name(name)
    if not isinstance(spec, dict):
        raise SpecError(f"invalid spec: spec must be an object, got {type(spec).__name__}")
    try:
        parsed = BentoDeploymentSpec.model_validate(spec)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'spec'}: {err['msg']}" for err in exc.errors()
        )
        raise SpecError(f"invalid spec: {problems}") from None
    if parsed.canary is not None:
        for group in parsed.workers:
            child = f"{name}-{CANARY}-worker-{group.name}"
            if len(child) > MAX_CHILD_NAME:
                raise SpecError(
                    f"invalid spec: canary: its worker group {group.name!r} would be named {child!r},"
                    f" longer than {MAX_CHILD_NAME} characters (shorten the name or the group's)"
                )
    return parsed
