"""The canary revision's part of a reconcile pass: its pin, its resolution, and its children.

The canary's resolved tag is pinned like the main bento's (an annotation on the object, so a
lost status never moves it), and promotion (spec.bento set to the canary's tag, canary
removed, in one edit) adopts that pin instead of resolving the tag again: `latest` promoted
is the version that ran as the canary, not whatever is newest by then.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from jubako.errors import JubakoError
from jubako.tags import Tag

from .kube import Kube, KubeError
from .registry import ResolveError
from .render import HTTPROUTE_API, Owner, proxy_name, worker_name
from .spec import CANARY, GROUP, KIND, VERSION, BentoDeploymentSpec
from .status import CanaryObserved, Observed, Problem

if TYPE_CHECKING:
    from .reconcile import Context

API_VERSION = f"{GROUP}/{VERSION}"
CANARY_PIN_ANNOTATION = f"{GROUP}/pinned-canary"


def pin_of(body: dict[str, Any]) -> dict[str, str]:
    """The canary's last resolution (requested, resolved, digest), or {}."""
    text = (body.get("metadata", {}).get("annotations") or {}).get(CANARY_PIN_ANNOTATION)
    try:
        pin = json.loads(text) if text else {}
    except ValueError:
        pin = {}
    if not isinstance(pin, dict):
        return {}
    return {k: str(pin[k]) for k in ("requested", "resolved", "digest") if isinstance(pin.get(k), str)}


def promoted(spec: BentoDeploymentSpec, pinned: dict[str, str], canary_pin: dict[str, str]) -> dict[str, str]:
    """The main bento's pin to start from: the canary's when this spec promotes it."""
    if (spec.canary is None and canary_pin.get("resolved")
            and canary_pin.get("requested") == spec.bento != pinned.get("requested")):
        return canary_pin
    return pinned


def resolve(ctx: Context, body: dict[str, Any], spec: BentoDeploymentSpec, observed: Observed) -> Tag | None:
    """Resolve the canary's tag (once per tag: the pin answers after that); its resolved tag,
    or None when there is no canary or it cannot be resolved (no canary is rendered then)."""
    if spec.canary is None:
        return None
    canary = observed.canary = CanaryObserved(requested=spec.canary.bento, weight=spec.canary.weight)
    pin = pin_of(body)
    if pin.get("requested") == canary.requested and pin.get("resolved"):
        canary.resolved, canary.digest = pin["resolved"], pin.get("digest", "")
        return Tag.parse(canary.resolved)
    registry = ctx.registry(spec.registry.url or ctx.settings.registry_url)
    try:
        resolved = registry.resolve(Tag.parse(canary.requested))
    except ResolveError as exc:
        # A new canary tag that does not resolve keeps serving the previous canary, if any.
        canary.resolve_problem = Problem(exc.reason, exc.message)
        if pin.get("resolved"):
            canary.resolved, canary.digest = pin["resolved"], pin.get("digest", "")
            return Tag.parse(canary.resolved)
        return None
    canary.resolved, canary.digest = str(resolved.tag), resolved.digest
    return resolved.tag


def write_pin(ctx: Context, body: dict[str, Any], observed: Observed) -> None:
    """Record the canary's resolution (or drop it once the canary is gone). Called after the
    main pin is written, so a promotion never leaves both pins missing."""
    canary = observed.canary
    text: str | None = None
    if canary is not None and canary.resolved and not canary.resolve_problem:
        pin = {"requested": canary.requested, "resolved": canary.resolved, "digest": canary.digest}
        text = json.dumps(pin, sort_keys=True, separators=(",", ":"))
    elif canary is not None:
        return  # unresolved: keep the previous canary's pin, which still runs
    meta = body["metadata"]
    if (meta.get("annotations") or {}).get(CANARY_PIN_ANNOTATION) == text:
        return
    if text is None:  # the canary is gone: clear its usage report too (report_usage)
        ctx._reported.setdefault((meta["namespace"], usage_name(meta["name"])), {})
    ctx.kube.patch(API_VERSION, KIND, meta["namespace"], meta["name"],
                   {"metadata": {"annotations": {CANARY_PIN_ANNOTATION: text}}})


def gateway_api(ctx: Context, spec: BentoDeploymentSpec, observed: Observed) -> bool:
    """Whether an HTTPRoute can be rendered; when spec.gateway asks for one on a cluster
    without the Gateway API, say so in the status (the rest is applied all the same)."""
    if spec.gateway is None:
        return True
    if ctx.kube.served(HTTPROUTE_API):
        return True
    observed.route_problem = Problem(
        "GatewayAPIMissing",
        f"spec.gateway needs the Gateway API ({HTTPROUTE_API} HTTPRoute), which this cluster"
        " does not serve: install its CRDs, or use spec.ingress",
    )
    return False


def observe(owner: Owner, spec: BentoDeploymentSpec | None, live: dict[tuple[str, str], Any],
            observed: Observed) -> None:
    """Add the canary's Deployments to what status reports (keys `canary/...`)."""
    if spec is None or observed.canary is None or not observed.canary.resolved or not observed.deployments:
        return  # an unresolved canary is not rendered: nothing to wait for
    canary = Owner(owner.name, owner.namespace, owner.uid, canary=True)
    observed.deployments["canary/proxy"] = live.get(("Deployment", proxy_name(canary)))
    for group in spec.workers:
        observed.deployments[f"canary/worker/{group.name}"] = live.get(
            ("Deployment", worker_name(canary, group.name)))


# --- promote and roll back: spec edits, as `jubako deploy promote|rollback` makes them ---------


class RolloutError(JubakoError):
    """The BentoDeployment cannot be promoted or rolled back as asked; the message says why."""


def _get(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    try:
        body = kube.get(API_VERSION, KIND, namespace, name)
    except KubeError as exc:
        raise RolloutError(f"cannot read BentoDeployment {namespace}/{name}: {exc.message}") from None
    if body is None:
        raise RolloutError(f"BentoDeployment {namespace}/{name} not found")
    canary = (body.get("spec") or {}).get("canary")
    if not isinstance(canary, dict) or not canary.get("bento"):
        raise RolloutError(f"BentoDeployment {namespace}/{name} has no canary")
    return body


def _patch(kube: Kube, body: dict[str, Any], spec: dict[str, Any]) -> None:
    meta = body["metadata"]
    # The resourceVersion makes the edit conditional: a concurrent change fails it (409).
    try:
        kube.patch(API_VERSION, KIND, meta["namespace"], meta["name"],
                   {"metadata": {"resourceVersion": meta["resourceVersion"]}, "spec": spec})
    except KubeError as exc:
        raise RolloutError(f"cannot edit BentoDeployment {meta['namespace']}/{meta['name']}:"
                           f" {exc.message}") from None


def promote(kube: Kube, namespace: str, name: str, force: bool = False) -> str:
    """Make the canary the main revision: bento := canary.bento and no canary, in one edit.
    The operator then serves the canary's pinned version; returns that version."""
    body = _get(kube, namespace, name)
    tag = body["spec"]["canary"]["bento"]
    pin = pin_of(body)
    if pin.get("requested") != tag or not pin.get("resolved"):
        raise RolloutError(f"the canary {tag} is not resolved yet: promoting it now would resolve"
                           " the tag again instead of serving the version tested as the canary")
    revisions = (body.get("status") or {}).get("revisions") or []
    ready = next((r.get("ready", "") for r in revisions if r.get("name") == "canary"), "")
    done, _, wanted = ready.partition("/")
    if not force and not (done == wanted and wanted not in ("", "0")):
        raise RolloutError(f"the canary's pods are not all ready ({ready or 'unknown'});"
                           " promote with --force to go ahead anyway")
    spec: dict[str, Any] = {"bento": tag, "canary": None}
    if body["spec"]["canary"].get("image"):  # a baked image goes with its bento
        spec["image"] = body["spec"]["canary"]["image"]
    _patch(kube, body, spec)
    return pin["resolved"]


def rollback(kube: Kube, namespace: str, name: str) -> str:
    """Remove the canary: its children go, every request goes to the main revision again.
    Returns the canary's tag that was removed."""
    body = _get(kube, namespace, name)
    _patch(kube, body, {"canary": None})
    return str(body["spec"]["canary"]["bento"])


# --- usage: the canary's version is in use too -------------------------------------------------


def usage_name(name: str) -> str:
    """The canary's usage record: `<name>-canary`, a name no BentoDeployment can have."""
    return f"{name}-{CANARY}"


def report_usage(ctx: Context, owner: Owner, registry_url: str, new_status: dict[str, Any]) -> None:
    """Report the canary's version to the registry (so it cannot be deleted while it runs),
    and clear that report once the canary is gone. Best effort, like the main report."""
    key = (owner.namespace, usage_name(owner.name))
    canary = next((r for r in new_status.get("revisions") or [] if r["name"] == "canary"), None)
    registry = ctx.registry(registry_url)
    if canary is None or not canary.get("bento"):
        if key in ctx._reported and registry.clear(*key):
            ctx._reported.pop(key, None)
        return
    payload = {"bento": canary["bento"], "cluster": ctx.settings.cluster_name,
               "status": {"canaryOf": owner.name, "ready": canary["ready"], "weight": canary["weight"]}}
    if ctx._reported.get(key) != payload and registry.report(*key, payload):
        ctx._reported[key] = payload


def forget(ctx: Context, namespace: str, name: str, registry_url: str) -> bool:
    ctx._reported.pop((namespace, usage_name(name)), None)
    return ctx.registry(registry_url).clear(namespace, usage_name(name))
