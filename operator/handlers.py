"""kopf glue: decides *when* to reconcile; reconcile.py decides *what* to do.

Triggers: any event of a BentoDeployment; an event of any child (Deployment, Service, HPA,
PDB, Ingress) or pod it owns that brings news to the children view (a child deleted or
edited behind our back comes straight back; the echo of our own write triggers nothing);
and a resync timer (level-based: drift is noticed even without events). Passes for one
object are coalesced (reconcile.request_pass). None of them uses kopf's per-change handler
state, so a no-op pass writes nothing. A delete handler (hence a finalizer) clears the
registry's usage record. Handlers are sync: kopf runs them in worker threads.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf

from .kube import CHILD_KINDS, PLURALS, KubeError
from .reconcile import Context, forget, request_pass, warm_up
from .render import DEPLOYMENT_LABEL, MANAGED_BY
from .spec import GROUP, KIND, PLURAL, VERSION

log = logging.getLogger(__name__)
CHILD_LABELS = {"app.kubernetes.io/managed-by": MANAGED_BY}
# Give up clearing usage after this many tries: a registry outage must not block deletion.
DELETE_TRIES = 3


def _owner_name(body: Any) -> str | None:
    for ref in body.get("metadata", {}).get("ownerReferences", []):
        if ref.get("kind") == KIND and ref.get("apiVersion", "").startswith(f"{GROUP}/"):
            return ref.get("name")
    return None


def _caught_up(body: Any) -> bool:
    status = body.get("status")
    generation = body.get("metadata", {}).get("generation")
    return isinstance(status, Mapping) and generation is not None and (
        status.get("observedGeneration") == generation)


def build_registry(ctx: Context) -> kopf.OperatorRegistry:
    """A fresh kopf registry with every handler bound to `ctx` (no module-level state)."""
    registry = kopf.OperatorRegistry()
    settings = ctx.settings

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.level = logging.WARNING
        # kopf's own bookkeeping goes to annotations, never into our status.
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
        settings.persistence.finalizer = f"{GROUP}/usage"
        settings.watching.server_timeout = 300
        settings.execution.max_workers = 8

    @kopf.on.startup(registry=registry)
    def fill_children_view(**_: Any) -> None:
        try:
            warm_up(ctx)
        except KubeError as exc:
            raise kopf.TemporaryError(f"cannot list children: {exc}", delay=5) from None

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    def bento_deployment_changed(type: str, name: str, namespace: str, body: Any, **_: Any) -> None:
        if type == "DELETED" or (type == "MODIFIED" and _caught_up(body)):
            # A change to status or metadata only (our status write, kopf's finalizer, the
            # pin annotation) needs no pass; spec changes bump the generation.
            return
        request_pass(ctx, namespace, name)

    @kopf.timer(GROUP, VERSION, PLURAL, interval=settings.resync_interval_s, registry=registry)
    def resync(name: str, namespace: str, **_: Any) -> None:
        request_pass(ctx, namespace, name)

    def watch_child(api_version: str, kind: str) -> None:
        def child_changed(type: str | None, body: Any, namespace: str, **_: Any) -> None:
            # The echo of the operator's own write changes nothing: no pass for it.
            owner = _owner_name(body)
            if ctx.children.observe(type, body, kind, api_version) and owner:
                request_pass(ctx, namespace, owner)

        group, _, version = api_version.rpartition("/")
        kopf.on.event(group, version, PLURALS[(api_version, kind)], labels=CHILD_LABELS,
                      registry=registry, id=f"child-{kind.lower()}")(child_changed)

    for api_version, kind in CHILD_KINDS:
        watch_child(api_version, kind)

    @kopf.on.event("", "v1", "pods", labels={DEPLOYMENT_LABEL: kopf.PRESENT}, registry=registry)
    def pod_changed(type: str | None, body: Any, namespace: str, **_: Any) -> None:
        owner = ctx.children.observe_pod(type, body)
        if owner:  # pods explain status (no GPU node, image pull failures)
            request_pass(ctx, namespace, owner)

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry, backoff=2)
    def deleted(name: str, namespace: str, body: Any, retry: int, **_: Any) -> None:
        # The raw spec, which may be anything when the schema did not run.
        spec = body.get("spec")
        registry = spec.get("registry") if isinstance(spec, Mapping) else None
        url = registry.get("url") if isinstance(registry, Mapping) else None
        if forget(ctx, namespace, name, url) or retry + 1 >= DELETE_TRIES:
            return  # children go with the owner (ownerReferences); nothing else to do
        raise kopf.TemporaryError("could not clear the registry's usage record", delay=2)

    return registry
