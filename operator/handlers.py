"""kopf glue: decides *when* to reconcile; reconcile.py decides *what* to do.

Triggers: any event of a BentoDeployment; an event of any child (Deployment, Service, HPA,
PDB, Ingress) or pod it owns that brings news to the children view (a child deleted or
edited behind our back comes straight back; the echo of our own write triggers nothing);
and a resync timer (level-based: drift is noticed even without events). Passes for one
object are coalesced (reconcile.request_pass). None of them uses kopf's per-change handler
state, so a no-op pass writes nothing. A delete handler (hence a finalizer) clears the
registry's usage record. Handlers only record and schedule: passes run on the operator's
own threads (`Passes`), so kopf's processing of an event never waits for a pass.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
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
# Threads running reconcile passes: a pass mostly waits on the API server, not the CPU.
PASS_THREADS = 8


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


def _finalizer_pending(body: Any, finalizer: str) -> bool:
    """kopf is about to add its finalizer: the object has none and is not being deleted."""
    meta = body.get("metadata", {})
    return finalizer not in (meta.get("finalizers") or []) and not meta.get("deletionTimestamp")


class Passes:
    """Runs reconcile passes on the operator's own threads.

    kopf runs an object's handlers one event at a time and writes its own bookkeeping (the
    finalizer) after them; a pass run inside a handler held kopf's per-object worker and one
    of its executor threads for every API call of the pass. A request for an object already
    waiting for a thread is dropped: that pass reads the object when it starts. A request
    for an object whose pass is running makes it run once more (reconcile.request_pass).
    """

    def __init__(self, ctx: Context, threads: int = PASS_THREADS) -> None:
        self._ctx = ctx
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="reconcile")
        self._waiting: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def request(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        with self._lock:
            if key in self._waiting:
                return
            self._waiting.add(key)
        self._pool.submit(self._run, key)

    def _run(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._waiting.discard(key)
        try:
            request_pass(self._ctx, *key)
        except Exception:  # the next event or the resync tries again
            log.exception("reconcile of %s/%s failed", *key)

    def close(self) -> None:
        """Drop waiting passes, let running ones finish."""
        self._pool.shutdown(wait=True, cancel_futures=True)


def build_registry(ctx: Context) -> kopf.OperatorRegistry:
    """A fresh kopf registry with every handler bound to `ctx` (no module-level state)."""
    registry = kopf.OperatorRegistry()
    settings = ctx.settings
    passes = Passes(ctx)
    finalizer = f"{GROUP}/usage"

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.level = logging.WARNING
        # kopf's own bookkeeping goes to annotations, never into our status.
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
        settings.persistence.finalizer = finalizer
        settings.watching.server_timeout = 300
        settings.execution.max_workers = 8

    @kopf.on.startup(registry=registry)
    def fill_children_view(**_: Any) -> None:
        try:
            warm_up(ctx)
        except KubeError as exc:
            raise kopf.TemporaryError(f"cannot list children: {exc}", delay=5) from None

    @kopf.on.cleanup(registry=registry)
    def stop_passes(**_: Any) -> None:
        passes.close()

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def bento_deployment_changed(type: str, name: str, namespace: str, body: Any, **_: Any) -> None:
        if type == "DELETED" or (type == "MODIFIED" and _caught_up(body)):
            # A change to status or metadata only (our status write, kopf's finalizer, the
            # pin annotation) needs no pass; spec changes bump the generation.
            return
        if _finalizer_pending(body, finalizer):
            # kopf adds its finalizer right after this handler, testing the resourceVersion
            # of this very event: a pass writing first made it fail and retry (2-3 PATCHes).
            # Its write is an event of its own, which brings the first pass.
            return
        passes.request(namespace, name)

    @kopf.timer(GROUP, VERSION, PLURAL, interval=settings.resync_interval_s, registry=registry)
    async def resync(name: str, namespace: str, **_: Any) -> None:
        passes.request(namespace, name)

    def watch_child(api_version: str, kind: str) -> None:
        async def child_changed(type: str | None, body: Any, namespace: str, **_: Any) -> None:
            # The echo of the operator's own write changes nothing: no pass for it.
            owner = _owner_name(body)
            if ctx.children.observe(type, body, kind, api_version) and owner:
                passes.request(namespace, owner)

        group, _, version = api_version.rpartition("/")
        kopf.on.event(group, version, PLURALS[(api_version, kind)], labels=CHILD_LABELS,
                      registry=registry, id=f"child-{kind.lower()}")(child_changed)

    for api_version, kind in CHILD_KINDS:
        watch_child(api_version, kind)

    @kopf.on.event("", "v1", "pods", labels={DEPLOYMENT_LABEL: kopf.PRESENT}, registry=registry)
    async def pod_changed(type: str | None, body: Any, namespace: str, **_: Any) -> None:
        owner = ctx.children.observe_pod(type, body)
        if owner:  # pods explain status (no GPU node, image pull failures)
            passes.request(namespace, owner)

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
