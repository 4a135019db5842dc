"""Create or patch only the children that differ; delete the ones no longer desired.

Each child records what the operator last applied (an annotation, like `kubectl apply`).
A child is left alone when the live object still contains everything desired and the
record matches: a no-op resync writes nothing. Otherwise one JSON merge patch sets the
desired state and removes the keys the operator applied before but no longer wants.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from kubernetes.utils import parse_quantity

from .children import Children
from .kube import Kube, KubeError
from .render import Manifest, Owner

log = logging.getLogger(__name__)

LAST_APPLIED = "serving.jubako.dev/last-applied"


class ApplyError(Exception):
    """A child could not be written; the message is for the BentoDeployment's status."""


@dataclass
class Result:
    created: list[str] = field(default_factory=list)
    patched: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    live: dict[tuple[str, str], Manifest] = field(default_factory=dict)  # (kind, name) -> object

    @property
    def writes(self) -> int:
        return len(self.created) + len(self.patched) + len(self.deleted)


def _key(manifest: Manifest) -> tuple[str, str]:
    return manifest["kind"], manifest["metadata"]["name"]


def record(desired: Manifest) -> Manifest:
    """The desired manifest with its own compact JSON in the last-applied annotation."""
    text = json.dumps(desired, sort_keys=True, separators=(",", ":"))
    annotated = json.loads(text)
    annotated["metadata"].setdefault("annotations", {})[LAST_APPLIED] = text
    return annotated


def _same_scalar(want: Any, have: Any) -> bool:
    if want == have:
        return True
    # The API server normalises quantities ("0.5" -> "500m"); compare them by value.
    if isinstance(want, bool) or isinstance(have, bool):
        return False
    if isinstance(want, str | int) and isinstance(have, str | int):
        try:
            return parse_quantity(want) == parse_quantity(have)
        except (ValueError, TypeError):
            return False
    return False


def covers(live: Any, want: Any) -> bool:
    """True if `live` holds everything in `want` (servers add defaults; those are fine)."""
    if isinstance(want, dict):
        return isinstance(live, dict) and all(
            key in live and covers(live[key], value) for key, value in want.items()
        )
    if isinstance(want, list):
        return (
            isinstance(live, list)
            and len(live) == len(want)
            and all(covers(a, b) for a, b in zip(live, want, strict=True))
        )
    return _same_scalar(want, live)


def merge_patch(previous: Any, desired: Any) -> Any:
    """Desired state plus explicit removals (None) of keys that only `previous` had."""
    if not isinstance(desired, dict):
        return desired
    patch = dict(desired)
    if isinstance(previous, dict):
        for key, old in previous.items():
            if key not in desired:
                patch[key] = None
            elif isinstance(old, dict) and isinstance(desired[key], dict):
                patch[key] = merge_patch(old, desired[key])
    return patch


# Fields the operator stops rendering when another controller takes them over: a merge patch
# must not null them (a Deployment handed to an HPA would drop to 1 replica until the HPA
# acts); the live value stays, as `kubectl apply` leaves it when the field is omitted.
HANDED_OFF: dict[str, tuple[str, str]] = {"Deployment": ("spec", "replicas")}


def child_patch(previous: Any, desired: Manifest) -> Manifest:
    """merge_patch, minus the removal of a field handed off to another controller."""
    patch: Manifest = merge_patch(previous, desired)
    handed = HANDED_OFF.get(desired["kind"])
    if handed is not None:
        section, key = handed
        part = patch.get(section)
        if isinstance(part, dict) and key in part and part[key] is None:
            del part[key]
    return patch


def needs_patch(live: Manifest, desired: Manifest) -> bool:
    return live.get("metadata", {}).get("annotations", {}).get(LAST_APPLIED) != (
        desired["metadata"]["annotations"][LAST_APPLIED]
    ) or not covers(live, desired)


def owned_by(obj: Manifest, owner: Owner) -> bool:
    refs = obj.get("metadata", {}).get("ownerReferences", [])
    return any(ref.get("uid") == owner.uid and ref.get("controller") for ref in refs)


def previous_of(live: Manifest) -> Any:
    text = live.get("metadata", {}).get("annotations", {}).get(LAST_APPLIED)
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def apply(kube: Kube, owner: Owner, children: list[Manifest], view: Children) -> Result:
    """Make the live children (as `view` holds them) match `children`; the view learns the
    server's answer to every write, so the next pass needs no read."""
    result = Result()
    live = view.of(owner)
    wanted = {_key(c) for c in children}
    for child in children:
        desired = record(child)
        key = _key(desired)
        name = "/".join(key)
        current = live.get(key)
        if current is None:
            current = _create(kube, owner, desired, view)
            if current is None:
                result.created.append(name)
                result.live[key] = desired
                continue
        if needs_patch(current, desired):
            meta = desired["metadata"]
            patch = child_patch(previous_of(current), desired)
            try:
                patched = kube.patch(
                    desired["apiVersion"], desired["kind"], meta["namespace"], meta["name"], patch
                )
            except KubeError as exc:
                raise ApplyError(f"cannot update {name}: {exc.message}") from None
            result.live[key] = patched
            view.remember(_typed(patched, desired))
            result.patched.append(name)
        else:
            result.live[key] = current
    for key, obj in live.items():
        if key not in wanted:
            kube.delete(obj["apiVersion"], obj["kind"], owner.namespace, key[1])
            view.forget(owner, key)
            result.deleted.append("/".join(key))
    if result.writes:
        log.info("%s/%s: created %s, patched %s, deleted %s", owner.namespace, owner.name,
                 result.created, result.patched, result.deleted)
    return result


def _typed(answer: Manifest, desired: Manifest) -> Manifest:
    answer.setdefault("kind", desired["kind"])
    answer.setdefault("apiVersion", desired["apiVersion"])
    return answer


def _create(kube: Kube, owner: Owner, desired: Manifest, view: Children) -> Manifest | None:
    """Create; on a name clash return the existing object if it is ours (to patch), else fail."""
    meta = desired["metadata"]
    name = f"{desired['kind']}/{meta['name']}"
    try:
        view.remember(_typed(kube.create(desired), desired))
        return None
    except KubeError as exc:
        if exc.status != 409:
            raise ApplyError(f"cannot create {name}: {exc.message}") from None
    existing = kube.get(desired["apiVersion"], desired["kind"], meta["namespace"], meta["name"])
    if existing is not None:
        view.remember(_typed(existing, desired))
    if existing is None or not owned_by(existing, owner):
        raise ApplyError(
            f"{name} already exists and is not owned by BentoDeployment {owner.name};"
            " rename or delete it"
        )
    return existing
