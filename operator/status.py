"""Pure: what the children look like -> the BentoDeployment's status and conditions.

Conditions carry a reason a person can act on; `Available` is true only when pods are
ready, never merely because objects were applied. Transition times are kept from the
previous status when a condition's status does not change, so an unchanged world gives an
identical status (and the operator writes nothing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .render import INSTALL_CONTAINER, is_accelerator

BENTO_RESOLVED = "BentoResolved"
AVAILABLE = "Available"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"

_PULL_FAILURES = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}


@dataclass(frozen=True)
class Problem:
    reason: str
    message: str


@dataclass
class CanaryObserved:
    """The canary revision: its tag, its resolution and the weight it was given."""

    requested: str
    weight: int
    resolved: str | None = None
    digest: str = ""
    resolve_problem: Problem | None = None


@dataclass
class Observed:
    """Everything status depends on, gathered by the handler."""

    generation: int
    requested: str
    resolved: str | None = None  # name:version actually deployed
    digest: str = ""
    resolve_problem: Problem | None = None  # set when the registry did not answer as hoped
    spec_problem: Problem | None = None  # InvalidSpec / ApplyFailed: nothing (more) applied
    url: str | None = None
    canary: CanaryObserved | None = None
    route_problem: Problem | None = None  # e.g. spec.gateway on a cluster without the Gateway API
    # component key ("proxy", "worker/<group>", "canary/proxy", "canary/worker/<group>")
    # -> live Deployment (None: not there yet)
    deployments: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    pods: list[dict[str, Any]] = field(default_factory=list)


def component_counts(deployment: dict[str, Any] | None) -> dict[str, int]:
    if deployment is None:
        return {"ready": 0, "desired": 0}
    return {
        "ready": int(deployment.get("status", {}).get("readyReplicas") or 0),
        "desired": int(deployment.get("spec", {}).get("replicas", 1)),
    }


def _rolling_out(deployment: dict[str, Any] | None) -> bool:
    if deployment is None:
        return True
    desired = int(deployment.get("spec", {}).get("replicas", 1))
    status = deployment.get("status", {})
    generation = deployment.get("metadata", {}).get("generation")
    return (
        (generation is not None and status.get("observedGeneration", 0) < generation)
        or int(status.get("updatedReplicas") or 0) < desired
        or int(status.get("readyReplicas") or 0) < desired
        or int(status.get("replicas") or 0) > desired  # old pods still terminating
    )


def pod_problem(pods: list[dict[str, Any]]) -> Problem | None:
    """The first thing that keeps pods from running, phrased for a person."""
    for pod in pods:
        name = pod.get("metadata", {}).get("name", "?")
        spec = pod.get("spec", {})
        status = pod.get("status", {})
        for cond in status.get("conditions", []):
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                message = cond.get("message", "")
                gpus = [
                    f"{count} {resource}"
                    for c in spec.get("containers", [])
                    for resource, count in c.get("resources", {}).get("limits", {}).items()
                    if is_accelerator(resource)
                ]
                if gpus or any(is_accelerator(word.strip(",.;()")) for word in message.split()):
                    selector = spec.get("nodeSelector", {})
                    return Problem(
                        "NoGPUNode",
                        f"pod {name} needs {' + '.join(gpus) or 'some GPU'}"
                        f" with node selector {selector}: no node fits ({message})",
                    )
                return Problem("Unschedulable", f"pod {name} cannot be scheduled: {message}")
        containers = status.get("initContainerStatuses", []) + status.get("containerStatuses", [])
        for container in containers:
            if container.get("name") == INSTALL_CONTAINER and (failure := _install_failure(container)):
                return Problem(
                    "RequirementsFailed", f"pod {name} cannot install the bento's requirements: {failure}"
                )
            waiting = container.get("state", {}).get("waiting") or {}
            reason = waiting.get("reason", "")
            detail = waiting.get("message", "")
            if reason in _PULL_FAILURES:
                return Problem(
                    "ImagePullFailed",
                    f"pod {name} cannot pull image {container.get('image')}: {reason} {detail}".strip(),
                )
            if reason == "CrashLoopBackOff":
                if container.get("name") == "pull-bento":
                    return Problem(
                        "BentoPullFailed",
                        f"pod {name} cannot download the bento from the registry; see"
                        f" `kubectl logs {name} -c pull-bento`",
                    )
                return Problem(
                    "CrashLoopBackOff",
                    f"container {container.get('name')} of pod {name} keeps crashing; see"
                    f" `kubectl logs {name} -c {container.get('name')} --previous`",
                )
    return None


def _install_failure(container: dict[str, Any]) -> str | None:
    """What the install init container wrote to its termination log when it last failed
    (docs/requirements.md): the packages and pip's error, rather than a crash-looping worker."""
    state = container.get("state") or {}
    if "terminated" in state:  # the latest try; an earlier failure no longer matters
        done = state["terminated"] or {}
    elif "waiting" in state:  # backing off before the next try: why the last one ended
        done = (container.get("lastState") or {}).get("terminated") or {}
    else:
        return None
    if not done or done.get("exitCode") == 0:
        return None
    message = (done.get("message") or "").strip()
    return message[:1024] or f"exit code {done.get('exitCode')} ({done.get('reason', 'Error')})"


def _condition(
    previous: dict[str, dict[str, Any]], kind: str, ok: bool | None, reason: str, message: str,
    generation: int, now: str,
) -> dict[str, Any]:
    status = "Unknown" if ok is None else ("True" if ok else "False")
    old = previous.get(kind)
    since = old["lastTransitionTime"] if old and old.get("status") == status else now
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
        "observedGeneration": generation,
    }


def compute(observed: Observed, previous_status: dict[str, Any], now: str) -> dict[str, Any]:
    previous = {c["type"]: c for c in previous_status.get("conditions", []) if "type" in c}
    gen = observed.generation
    counts = {key: component_counts(dep) for key, dep in observed.deployments.items()}
    ready = sum(c["ready"] for c in counts.values())
    desired = sum(c["desired"] for c in counts.values())

    canary = observed.canary
    canary_problem = canary.resolve_problem if canary else None

    # BentoResolved
    if observed.resolved and canary_problem and not observed.resolve_problem:
        assert canary is not None
        resolved_cond = (False, canary_problem.reason,
                         f"canary {canary.requested}: {canary_problem.message}; still serving"
                         f" {observed.resolved}" + (f" and canary {canary.resolved}" if canary.resolved else ""))
    elif observed.resolved and observed.resolve_problem:
        # The new request is not resolved; what runs keeps running.
        resolved_cond = (False, observed.resolve_problem.reason,
                         f"{observed.resolve_problem.message}; still serving {observed.resolved}")
    elif observed.resolved:
        resolved_cond = (True, "Resolved", f"{observed.requested} resolved to {observed.resolved}")
    elif observed.resolve_problem:
        resolved_cond = (False, observed.resolve_problem.reason, observed.resolve_problem.message)
    else:
        resolved_cond = (None, "Pending", "not resolved yet")

    # Degraded: the first problem a person should fix, whatever its subject.
    pods_problem = pod_problem(observed.pods)
    problem = (observed.spec_problem or observed.resolve_problem or canary_problem
               or observed.route_problem or pods_problem)
    # Each other condition's reason describes its own subject: a registry outage is
    # BentoResolved's business, never a reason for pods not being ready.
    nothing = "nothing deployed yet" + (f": {problem.message}" if problem else "")

    # Available: pods are ready in every component that asks for any.
    # A canary given no requests (weight 0) cannot make the deployment unavailable.
    dark = canary is not None and canary.weight == 0
    missing = [
        f"{key} {c['ready']}/{c['desired']} ready"
        for key, c in counts.items()
        if c["desired"] > 0 and c["ready"] == 0 and not (dark and key.startswith("canary/"))
    ]
    proxy = counts.get("proxy", {"ready": 0, "desired": 0})
    if not observed.deployments:
        available = (False, "NotDeployed", nothing)
    elif proxy["desired"] == 0:
        available = (False, "ScaledToZero", "the proxy has 0 replicas")
    elif missing:
        available = (False, pods_problem.reason if pods_problem else "PodsNotReady", ", ".join(missing))
    else:
        available = (True, "PodsReady", f"{ready}/{desired} pods ready")

    # Progressing: the rollout, and what blocks it (the spec as applied, or the pods).
    rollout_problem = observed.spec_problem or pods_problem
    rolling = [key for key, dep in observed.deployments.items() if _rolling_out(dep)]
    if not observed.deployments:
        progressing = (False, "NotDeployed", nothing)
    elif rolling and rollout_problem is None:
        progressing = (True, "RollingOut", f"waiting for {', '.join(sorted(rolling))}")
    elif rolling:
        progressing = (True, rollout_problem.reason, rollout_problem.message)
    else:
        progressing = (False, "Complete", "every component is up to date")

    conditions = [
        _condition(previous, BENTO_RESOLVED, *resolved_cond, gen, now),
        _condition(previous, AVAILABLE, *available, gen, now),
        _condition(previous, PROGRESSING, *progressing, gen, now),
        _condition(
            previous, DEGRADED, problem is not None,
            problem.reason if problem else "AsExpected",
            problem.message if problem else "no problem seen", gen, now,
        ),
    ]
    status: dict[str, Any] = {
        "observedGeneration": gen,
        "bento": {"requested": observed.requested},
        "ready": f"{ready}/{desired}",
        "conditions": conditions,
    }
    if observed.resolved:
        status["bento"]["resolved"] = observed.resolved
        status["bento"]["digest"] = observed.digest
    if "proxy" in counts:
        status["proxy"] = counts["proxy"]
    workers = {key.split("/", 1)[1]: c for key, c in counts.items() if key.startswith("worker/")}
    if workers:
        status["workers"] = workers
    if observed.url:
        status["url"] = observed.url
    if canary is not None:
        status["revisions"] = _revisions(observed, canary, counts)
    return status


def _revisions(
    observed: Observed, canary: CanaryObserved, counts: dict[str, dict[str, int]]
) -> list[dict[str, Any]]:
    """Each revision's bento, ready pods and weight (the canary's is 0 until it is resolved
    and rendered: every request goes to the main revision until then)."""
    weight = canary.weight if canary.resolved else 0
    revisions = []
    for name, requested, resolved, share in (
        ("main", observed.requested, observed.resolved, 100 - weight),
        ("canary", canary.requested, canary.resolved, weight),
    ):
        mine = [c for key, c in counts.items() if key.startswith("canary/") == (name == "canary")]
        revision: dict[str, Any] = {
            "name": name,
            "requested": requested,
            "ready": f"{sum(c['ready'] for c in mine)}/{sum(c['desired'] for c in mine)}",
            "weight": share,
        }
        if resolved:
            revision["bento"] = resolved
        revisions.append(revision)
    return revisions


def transitions(old_status: dict[str, Any], new_status: dict[str, Any]) -> list[dict[str, Any]]:
    """Conditions whose status or reason changed: each becomes a Kubernetes event."""
    old = {c["type"]: c for c in old_status.get("conditions", [])}
    return [
        c for c in new_status.get("conditions", [])
        if (old.get(c["type"], {}).get("status"), old.get(c["type"], {}).get("reason"))
        != (c["status"], c["reason"])
    ]
