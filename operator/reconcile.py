"""One level-based reconcile of one BentoDeployment: read, resolve, render, apply, report.

Independent of kopf (handlers.py only decides *when* to call it), so it reads the object
fresh every time and is safe to call for any reason: a watch event, a child's event, a
timer. Calls for the same object are serialised by a lock.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from jubako.tags import Tag

from . import canary as canary_mod
from . import status as status_mod
from .apply import ApplyError, apply, merge_patch
from .children import Children
from .config import OperatorSettings
from .kube import CHILD_KINDS, OPTIONAL_APIS, Kube, KubeError
from .metrics import Metrics
from .registry import RegistryClient, ResolveError
from .render import (
    DEPLOYMENT_LABEL,
    MANAGED_BY,
    Owner,
    proxy_name,
    render,
    service_url,
    worker_name,
)
from .spec import GROUP, KIND, VERSION, BentoDeploymentSpec, SpecError, parse_spec
from .status import Observed, Problem

log = logging.getLogger(__name__)
API_VERSION = f"{GROUP}/{VERSION}"
# Where the resolved tag is pinned (JSON: requested, resolved, digest).
PIN_ANNOTATION = f"{GROUP}/pinned-bento"
STATUS_KEYS = ("observedGeneration", "bento", "ready", "url", "proxy", "workers", "revisions", "conditions")


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Context:
    """What every reconcile shares: settings, clients, and a little memory."""

    settings: OperatorSettings
    kube: Kube
    _registries: dict[str, RegistryClient] = field(default_factory=dict)
    _locks: defaultdict[tuple[str, str], threading.Lock] = field(
        default_factory=lambda: defaultdict(threading.Lock)
    )
    _guard: threading.Lock = field(default_factory=threading.Lock)
    # Last usage report sent per object, so an unchanged deployment is not re-reported.
    _reported: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    metrics: Metrics = field(default_factory=Metrics)
    # What exists, fed by watches: a pass reads its children here, never with a LIST.
    children: Children = field(default_factory=Children)
    # Coalescing: objects with a pass running, and those to pass again when it ends.
    _running: set[tuple[str, str]] = field(default_factory=set)
    _again: set[tuple[str, str]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.kube.on_request = self.metrics.api_request

    def registry(self, url: str) -> RegistryClient:
        with self._guard:
            if url not in self._registries:
                self._registries[url] = RegistryClient(
                    url, self.settings.registry_token, self.settings.registry_timeout_s
                )
            return self._registries[url]

    def lock(self, namespace: str, name: str) -> threading.Lock:
        with self._guard:
            return self._locks[(namespace, name)]

    def close(self) -> None:
        for client in self._registries.values():
            client.close()


def warm_up(ctx: Context) -> None:
    """Fill the children view once, before kopf's handlers run (one LIST per kind)."""
    scopes: list[str | None] = list(ctx.settings.namespaces) or [None]
    for namespace in scopes:
        for api_version, kind in CHILD_KINDS:
            if api_version in OPTIONAL_APIS and not ctx.kube.served(api_version):
                continue  # no such API (yet): kopf's watch lists it if its CRD appears
            objects = ctx.kube.list_selected(
                api_version, kind, namespace, f"app.kubernetes.io/managed-by={MANAGED_BY}")
            ctx.children.load(objects, kind, api_version)
        ctx.children.load(ctx.kube.list_selected("v1", "Pod", namespace, DEPLOYMENT_LABEL), "Pod", "v1")


def request_pass(ctx: Context, namespace: str, name: str) -> None:
    """Reconcile now, or, if a pass for this object is running, once more after it.

    Events come in bursts (a pass's own writes, a rollout's status updates): callers that
    find a pass running return at once instead of queueing behind it, and the running pass
    repeats once for all of them.
    """
    key = (namespace, name)
    with ctx._guard:
        if key in ctx._running:
            ctx._again.add(key)
            return
        ctx._running.add(key)
    try:
        while True:
            reconcile(ctx, namespace, name)
            with ctx._guard:
                if key not in ctx._again:
                    ctx._running.discard(key)
                    return
                ctx._again.discard(key)
    except BaseException:
        with ctx._guard:
            ctx._running.discard(key)
            ctx._again.discard(key)
        raise


def reconcile(ctx: Context, namespace: str, name: str) -> None:
    with ctx.lock(namespace, name), ctx.metrics.reconcile():
        body = ctx.kube.get(API_VERSION, KIND, namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return  # gone or going: the delete handler takes it from here
        _reconcile(ctx, body)


def _reconcile(ctx: Context, body: dict[str, Any]) -> None:
    meta = body["metadata"]
    owner = Owner(meta["name"], meta["namespace"], meta["uid"])
    old_status = body.get("status") or {}
    if not isinstance(old_status, dict):
        old_status = {}
    pinned = previous_pin(body)
    raw_spec = body.get("spec")
    # Validated by parse_spec below; the schema may not have run (an old CRD, a lax server).
    requested = raw_spec.get("bento", "") if isinstance(raw_spec, dict) else ""
    observed = Observed(generation=int(meta.get("generation", 1)), requested=str(requested))
    live: dict[tuple[str, str], dict[str, Any]] | None = None
    spec: BentoDeploymentSpec | None = None
    try:
        spec = parse_spec(owner.name, raw_spec)
    except SpecError as exc:
        # No retry loop: the spec will not fix itself; the next spec change or resync re-checks.
        observed.spec_problem = Problem("InvalidSpec", str(exc))
        _keep_previous_resolution(observed, pinned)
    if spec is not None:
        pinned = canary_mod.promoted(spec, pinned, canary_mod.pin_of(body))
        _resolve(ctx, spec, pinned, observed)
        canary = canary_mod.resolve(ctx, body, spec, observed)
        _write_pin(ctx, body, pinned, observed)
        canary_mod.write_pin(ctx, body, observed)
        observed.url = service_url(owner, spec, ctx.settings)
        if observed.resolved and not observed.spec_problem:
            children = render(owner, spec, Tag.parse(observed.resolved), ctx.settings, canary,
                              canary_mod.gateway_api(ctx, spec, observed))
            try:
                result = apply(ctx.kube, owner, children, ctx.children)
                live = result.live
                ctx.metrics.count_writes(result.created, result.patched, result.deleted)
            except ApplyError as exc:
                observed.spec_problem = Problem("ApplyFailed", str(exc))
    if live is None:  # nothing applied this time: report on whatever is there
        live = ctx.children.of(owner)
    _observe_children(ctx, owner, spec, live, observed)
    canary_mod.observe(owner, spec, live, observed)
    new_status = status_mod.compute(observed, old_status, now())
    _write_status(ctx, body, old_status, new_status)
    registry_url = (spec.registry.url if spec else None) or ctx.settings.registry_url
    _report_usage(ctx, owner, registry_url, new_status)
    canary_mod.report_usage(ctx, owner, registry_url, new_status)


def previous_pin(body: dict[str, Any]) -> dict[str, str]:
    """The last resolution: the pin annotation, else (objects from before it) the status.

    The annotation survives what status does not (a restore from backup, a replace of the
    status subresource), so a lost status never re-resolves `latest` behind the user's back.
    """
    text = (body.get("metadata", {}).get("annotations") or {}).get(PIN_ANNOTATION)
    try:
        pin = json.loads(text) if text else None
    except ValueError:
        pin = None
    if not isinstance(pin, dict):
        status = body.get("status")
        pin = (status.get("bento") if isinstance(status, dict) else None) or {}
    return {k: str(pin[k]) for k in ("requested", "resolved", "digest") if isinstance(pin.get(k), str)}


def _write_pin(ctx: Context, body: dict[str, Any], pinned: dict[str, str], observed: Observed) -> None:
    if not observed.resolved or observed.resolve_problem:
        return
    pin = {"requested": observed.requested, "resolved": observed.resolved, "digest": observed.digest}
    text = json.dumps(pin, sort_keys=True, separators=(",", ":"))
    if (body["metadata"].get("annotations") or {}).get(PIN_ANNOTATION) == text:
        return
    meta = body["metadata"]
    # Written before any child: whatever runs from now on is recorded where it survives.
    ctx.kube.patch(API_VERSION, KIND, meta["namespace"], meta["name"],
                   {"metadata": {"annotations": {PIN_ANNOTATION: text}}})


def _keep_previous_resolution(observed: Observed, previous: dict[str, str]) -> None:
    if previous.get("resolved"):
        observed.requested = previous.get("requested", observed.requested)
        observed.resolved = previous["resolved"]
        observed.digest = previous.get("digest", "")


def _resolve(
    ctx: Context, spec: BentoDeploymentSpec, previous: dict[str, str], observed: Observed
) -> None:
    """Pin the tag: ask the registry only when the request changed since the last answer."""
    if previous.get("requested") == spec.bento and previous.get("resolved"):
        observed.resolved, observed.digest = previous["resolved"], previous.get("digest", "")
        return
    registry = ctx.registry(spec.registry.url or ctx.settings.registry_url)
    try:
        resolved = registry.resolve(spec.tag)
    except ResolveError as exc:
        observed.resolve_problem = Problem(exc.reason, exc.message)
        # A registry outage (or a typo in a new tag) must not disturb what already runs.
        _keep_previous_resolution(observed, previous)
        return
    observed.resolved, observed.digest = str(resolved.tag), resolved.digest


def _observe_children(
    ctx: Context,
    owner: Owner,
    spec: BentoDeploymentSpec | None,
    live: dict[tuple[str, str], dict[str, Any]],
    observed: Observed,
) -> None:
    components = {"proxy": proxy_name(owner)}
    if spec is not None:
        components.update({f"worker/{w.name}": worker_name(owner, w.name) for w in spec.workers})
    else:  # invalid spec: report whatever worker Deployments exist
        prefix = f"{owner.name}-worker-"
        components.update({
            f"worker/{n[len(prefix):]}": n for kind, n in live if kind == "Deployment" and n.startswith(prefix)
        })
    observed.deployments = {key: live.get(("Deployment", name)) for key, name in components.items()}
    if not any(observed.deployments.values()):
        observed.deployments = {}
        return
    observed.pods = ctx.children.pods(owner.namespace, owner.name)


def _write_status(
    ctx: Context, body: dict[str, Any], old_status: dict[str, Any], new_status: dict[str, Any]
) -> None:
    ours = {key: old_status[key] for key in STATUS_KEYS if key in old_status}
    if ours == new_status:
        return
    meta = body["metadata"]
    patch = {"status": merge_patch(ours, new_status)}
    ctx.kube.patch(API_VERSION, KIND, meta["namespace"], meta["name"], patch, subresource="status")
    known = {c.get("type") for c in old_status.get("conditions", []) if isinstance(c, dict)}
    for condition in status_mod.transitions(old_status, new_status):
        if condition["type"] in known or _problem(condition):
            _event(ctx, body, condition)


def _healthy(condition: dict[str, Any]) -> bool:
    return (condition["type"] == status_mod.DEGRADED) == (condition["status"] == "False")


def _problem(condition: dict[str, Any]) -> bool:
    """Worth an event when a condition first appears: a new object's start (not available
    yet, progressing, resolved, not degraded) is not news, and was 4 events per object."""
    return condition["type"] in (status_mod.DEGRADED, status_mod.BENTO_RESOLVED) and not _healthy(condition)


def _event(ctx: Context, body: dict[str, Any], condition: dict[str, Any]) -> None:
    meta = body["metadata"]
    healthy = _healthy(condition)
    stamp = now()
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:12]}", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": API_VERSION, "kind": KIND, "name": meta["name"],
            "namespace": meta["namespace"], "uid": meta["uid"],
        },
        "reason": condition["reason"],
        "message": f"{condition['type']}={condition['status']}: {condition['message']}"[:1024],
        "type": "Normal" if healthy else "Warning",
        "source": {"component": "jubako-operator"},
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
    try:
        ctx.kube.create(event)
    except KubeError as exc:  # events are for people; never fail a reconcile over one
        log.warning("cannot post event %s: %s", condition["reason"], exc)


def _report_usage(
    ctx: Context, owner: Owner, registry_url: str, new_status: dict[str, Any]
) -> None:
    resolved = (new_status.get("bento") or {}).get("resolved")
    if not resolved:
        return
    available = next(
        (c["status"] for c in new_status["conditions"] if c["type"] == status_mod.AVAILABLE), "Unknown"
    )
    payload = {
        "bento": resolved,
        "cluster": ctx.settings.cluster_name,
        # What the dashboard shows: counts per component and the conditions' reasons.
        "status": {
            "available": available == "True",
            "ready": new_status.get("ready"),
            "url": new_status.get("url"),
            "proxy": new_status.get("proxy"),
            "workers": new_status.get("workers"),
            "conditions": [
                {k: c.get(k) for k in ("type", "status", "reason", "message")}
                for c in new_status["conditions"]
            ],
        },
    }
    key = (owner.namespace, owner.name)
    if ctx._reported.get(key) == payload:
        return
    # Best effort: a failed report is retried on the next reconcile, never blocks this one.
    if ctx.registry(registry_url).report(owner.namespace, owner.name, payload):
        ctx._reported[key] = payload


def forget(ctx: Context, namespace: str, name: str, registry_url: str | None) -> bool:
    """The object is being deleted: clear its usage in the registry (True when done)."""
    ctx._reported.pop((namespace, name), None)
    url = registry_url or ctx.settings.registry_url
    return ctx.registry(url).clear(namespace, name) and canary_mod.forget(ctx, namespace, name, url)
