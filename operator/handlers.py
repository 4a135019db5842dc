"""kopf glue: decides *when* to reconcile; reconcile.py decides *what* to do.

Triggers: any event of a BentoDeployment, any event of a Deployment or Service it owns (a
child deleted behind our back comes straight back), and a resync timer (level-based: pod
trouble and drift are noticed even without events). None of them uses kopf's per-change
handler state, so a no-op pass writes nothing. A delete handler (hence a finalizer) clears
the registry's usage record. Handlers are sync: kopf runs them in worker threads.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf

from .reconcile import Context, forget, reconcile
from .render import MANAGED_BY
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

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    def bento_deployment_changed(type: str, name: str, namespace: str, **_: Any) -> None:
        if type != "DELETED":
            reconcile(ctx, namespace, name)

    @kopf.timer(GROUP, VERSION, PLURAL, interval=settings.resync_interval_s, registry=registry)
    def resync(name: str, namespace: str, **_: Any) -> None:
        reconcile(ctx, namespace, name)

    def child_changed(body: Any, namespace: str, **_: Any) -> None:
        owner = _owner_name(body)
        if owner:
            reconcile(ctx, namespace, owner)

    for group, version, plural in (("apps", "v1", "deployments"), ("", "v1", "services")):
        kopf.on.event(group, version, plural, labels=CHILD_LABELS, registry=registry,
                      id=f"child-{plural}")(child_changed)

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
