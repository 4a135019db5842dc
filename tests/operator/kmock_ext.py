"""The few things KMock 0.8's Kubernetes emulator needs before kopf and kubectl can use it.

KMock keeps objects as plain JSON and streams every change on a per-resource bus. This
layer adds, and nothing more:
- uid, resourceVersion, generation (bumped on spec changes) and creationTimestamp, stamped
  on each object as its change goes onto the bus (so watchers, readers and the response
  all see the same values);
- a list's resourceVersion, kind and apiVersion, and watches that skip what the client listed already;
- CRDs posted to it become served resources; the built-in kinds the operator uses are
  declared up front;
- 422 instead of 500 for a failed JSON-patch `test` operation;
- `/api/v1/namespaces[/name]` parsed as the namespaces resource, not as a namespace;
- request counters by (action, resource plural), and optionally no request log: KMock scans
  its whole log on every request, so with hundreds of objects the emulator slows down
  quadratically and becomes what a scale test measures (`trim_log=True`).
It knows nothing about the operator; the operator must not rely on any of this.
"""

from __future__ import annotations

import collections
import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import attrs
import jsonpatch
import kmock
from kmock._internal import aiobus, parsing

VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]
BUILTINS: dict[tuple[str, str, str], tuple[str, bool, set[str]]] = {
    ("", "v1", "namespaces"): ("Namespace", False, set()),
    ("", "v1", "pods"): ("Pod", True, {"status"}),
    ("", "v1", "services"): ("Service", True, {"status"}),
    ("", "v1", "events"): ("Event", True, set()),
    ("", "v1", "secrets"): ("Secret", True, set()),
    ("", "v1", "configmaps"): ("ConfigMap", True, set()),
    ("apps", "v1", "deployments"): ("Deployment", True, {"status", "scale"}),
    ("autoscaling", "v2", "horizontalpodautoscalers"): ("HorizontalPodAutoscaler", True, {"status"}),
    ("policy", "v1", "poddisruptionbudgets"): ("PodDisruptionBudget", True, {"status"}),
    ("networking.k8s.io", "v1", "ingresses"): ("Ingress", True, {"status"}),
    ("apiextensions.k8s.io", "v1", "customresourcedefinitions"): ("CustomResourceDefinition", False, {"status"}),
    ("events.k8s.io", "v1", "events"): ("Event", True, set()),
}
CRDS = kmock.resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")


def _parse_path(path: str, _original: Callable[[str], parsing.ParsedPath] = parsing.parse_path) -> parsing.ParsedPath:
    parts = path.strip("/").split("/")
    if parts[:3] == ["api", "v1", "namespaces"] and len(parts) <= 4:
        return parsing.ParsedPath("", "v1", "namespaces", None, parts[3] if len(parts) == 4 else None)
    return _original(path)


# KMock parses every request path through this module-level function.
if getattr(parsing.parse_path, "__name__", "") != "_parse_path":
    parsing.parse_path = _parse_path


@attrs.define
class _StampingBus(aiobus.Bus[Any]):
    """A bus that stamps each object's metadata as its event is published."""

    stamp: Callable[[dict[str, Any]], None] = attrs.field(kw_only=True)

    async def put(self, *items: Any) -> None:
        for item in items:
            self.stamp(item)
        await super().put(*items)


@attrs.define(kw_only=True)
class Emulator(kmock.KubernetesEmulator):
    _revision: int = attrs.field(default=0, init=False)
    _spec_seen: dict[str, str] = attrs.field(factory=dict, init=False)  # uid -> spec as JSON
    trim_log: bool = False
    # (action, plural) -> requests served, e.g. ("list", "deployments"); kept when trimming.
    counts: collections.Counter[tuple[str, str]] = attrs.field(factory=collections.Counter, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._buses = collections.defaultdict(lambda: _StampingBus(stamp=self._stamp))
        for (group, version, plural), (kind, namespaced, subresources) in BUILTINS.items():
            self.resources[kmock.resource(group, version, plural)] = kmock.ResourceInfo(
                kind=kind, namespaced=namespaced, verbs=VERBS, subresources=subresources
            )

    @property
    def revision(self) -> int:
        return self._revision

    def _stamp(self, event: dict[str, Any]) -> None:
        # KMock's `raw` is a shallow copy: the metadata dict is the stored one, so stamping
        # it here updates the stored object too.
        obj = event.get("object") or {}
        meta = obj.get("metadata")
        if meta is None:
            return
        self._revision += 1
        meta["resourceVersion"] = str(self._revision)
        spec = json.dumps(obj.get("spec"), sort_keys=True)
        if event.get("type") == "ADDED":
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            meta["generation"] = 1
            self._spec_seen[meta["uid"]] = spec
        elif event.get("type") == "MODIFIED" and self._spec_seen.get(meta.get("uid", "")) != spec:
            meta["generation"] = int(meta.get("generation", 0)) + 1
            self._spec_seen[meta.get("uid", "")] = spec

    async def _handle(self, request: kmock.Request) -> Any:
        action = getattr(request.action, "value", None) or str(request.action)
        plural = request.resource.plural if request.resource is not None else request.url.path
        self.counts[(str(action).lower(), plural)] += 1
        if self.trim_log:  # keep only this request (KMock matches it against its log)
            del self._requests[:-1]
        if request.resource == CRDS and request.action == kmock.action.CREATE:
            self._serve_crd(request.data)
        try:
            return await super()._handle(request)
        except jsonpatch.JsonPatchException as exc:
            return await self._render_error(kmock.KubernetesError(422, "Invalid", str(exc)))

    def _serve_crd(self, crd: dict[str, Any]) -> None:
        spec = crd["spec"]
        names = spec["names"]
        for version in spec["versions"]:
            resource = kmock.resource(spec["group"], version["name"], names["plural"])
            self.resources[resource] = kmock.ResourceInfo(
                kind=names["kind"],
                singular=names.get("singular"),
                namespaced=spec.get("scope") == "Namespaced",
                shortnames=names.get("shortNames", []),
                categories=names.get("categories", []),
                subresources=set(version.get("subresources") or {}),
                verbs=VERBS,
            )

    async def _serve_list(self, request: kmock.Request) -> Any:
        result = dict(await super()._serve_list(request))
        result["metadata"] = {"resourceVersion": str(self._revision)}
        # kubectl decodes lists by their kind: "<Kind>List" in the resource's group/version.
        res = request.resource
        kind = next((i.get("kind") for i in result.get("items", []) if i.get("kind")), None)
        try:
            kind = self.resources[res].kind or kind
        except KeyError:
            pass
        result["apiVersion"] = f"{res.group}/{res.version}".lstrip("/")
        result["kind"] = f"{kind or 'Object'}List"
        return result

    async def _serve_watch(self, request: kmock.Request) -> AsyncIterator[Any]:
        since = request.params.get("resourceVersion", "")
        since_rev = int(since) if since.isdigit() else 0
        async for event in super()._serve_watch(request):
            if isinstance(event, dict):
                rev = event.get("object", {}).get("metadata", {}).get("resourceVersion", "")
                if rev.isdigit() and int(rev) <= since_rev:
                    continue  # the client has this one from its list already
            yield event
