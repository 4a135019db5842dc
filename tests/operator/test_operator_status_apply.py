"""Pure parts of reconcile: conditions from observed state, and the apply diff."""

from __future__ import annotations

from jubako.operator.apply import covers, merge_patch, needs_patch, record
from jubako.operator.status import Observed, Problem, compute, pod_problem, transitions

NOW, LATER = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"


def _dep(replicas, ready):
    return {"metadata": {"generation": 1}, "spec": {"replicas": replicas},
            "status": {"observedGeneration": 1, "replicas": replicas, "readyReplicas": ready,
                       "updatedReplicas": replicas}}


def _conds(status):
    return {c["type"]: c for c in status["conditions"]}


def test_available_needs_ready_pods_in_every_component():
    observed = Observed(generation=2, requested="m:latest", resolved="m:v1",
                        deployments={"proxy": _dep(1, 1), "worker/g": _dep(2, 0)})
    status = compute(observed, {}, NOW)
    conds = _conds(status)
    assert conds["Available"]["status"] == "False" and "worker/g 0/2" in conds["Available"]["message"]
    assert conds["Progressing"]["status"] == "True"
    assert status["ready"] == "1/3" and status["workers"] == {"g": {"ready": 0, "desired": 2}}
    observed.deployments["worker/g"] = _dep(2, 2)
    conds = _conds(compute(observed, status, LATER))
    assert conds["Available"]["status"] == "True" and conds["Available"]["lastTransitionTime"] == LATER
    assert conds["Degraded"]["lastTransitionTime"] == NOW  # unchanged: time kept


def test_unchanged_world_gives_an_identical_status_and_no_transitions():
    observed = Observed(generation=1, requested="m", resolved="m:v1",
                        deployments={"proxy": _dep(1, 1)})
    first = compute(observed, {}, NOW)
    again = compute(observed, first, LATER)
    assert again == first
    assert transitions(first, again) == []
    assert {c["type"] for c in transitions({}, first)} == {
        "BentoResolved", "Available", "Progressing", "Degraded"}


def test_pod_problems_are_phrased_for_people():
    unschedulable = {"metadata": {"name": "p"}, "spec": {
        "nodeSelector": {"nvidia.com/gpu.product": "H100"},
        "containers": [{"resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
        "status": {"conditions": [{"type": "PodScheduled", "status": "False",
                                   "message": "0/3 nodes are available"}]}}
    problem = pod_problem([unschedulable])
    assert problem.reason == "NoGPUNode" and "H100" in problem.message
    pulling = {"metadata": {"name": "p"}, "spec": {}, "status": {"containerStatuses": [
        {"name": "worker", "image": "x:1", "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}}
    assert pod_problem([pulling]).reason == "ImagePullFailed"
    crashing_pull = {"metadata": {"name": "p"}, "spec": {}, "status": {"initContainerStatuses": [
        {"name": "pull-bento", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}
    assert pod_problem([crashing_pull]).reason == "BentoPullFailed"
    assert pod_problem([{"metadata": {}, "spec": {}, "status": {}}]) is None


def test_registry_problems_keep_what_runs():
    observed = Observed(generation=3, requested="m:v1", resolved="m:v1",
                        resolve_problem=Problem("RegistryUnreachable", "registry down"),
                        deployments={"proxy": _dep(1, 1)})
    conds = _conds(compute(observed, {}, NOW))
    assert conds["BentoResolved"]["status"] == "False"
    assert "still serving m:v1" in conds["BentoResolved"]["message"]
    assert conds["Available"]["status"] == "True"
    assert conds["Degraded"]["reason"] == "RegistryUnreachable"


def test_covers_tolerates_server_defaults_and_normalised_quantities():
    want = {"spec": {"containers": [{"name": "w", "resources": {"limits": {"cpu": "0.5"}}}]}}
    live = {"spec": {"containers": [{"name": "w", "terminationMessagePath": "/dev/x",
                                     "resources": {"limits": {"cpu": "500m"}}}]}, "status": {}}
    assert covers(live, want)
    live["spec"]["containers"][0]["resources"]["limits"]["cpu"] = "1"
    assert not covers(live, want)
    assert not covers({"spec": {"containers": []}}, want)


def test_merge_patch_removes_what_is_no_longer_desired():
    previous = {"spec": {"nodeSelector": {"a": "1", "b": "2"}, "replicas": 2}}
    desired = {"spec": {"nodeSelector": {"a": "1"}}}
    assert merge_patch(previous, desired) == {"spec": {"nodeSelector": {"a": "1", "b": None},
                                                       "replicas": None}}


def test_needs_patch_only_when_something_differs():
    child = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "n"},
             "spec": {"ports": [{"port": 80}]}}
    desired = record(child)
    live = record(child)
    live["spec"]["clusterIP"] = "10.0.0.1"  # server-side default
    assert not needs_patch(live, desired)
    changed = record({**child, "spec": {"ports": [{"port": 81}]}})
    assert needs_patch(live, changed)


def test_a_deployment_handed_to_an_hpa_keeps_its_replicas():
    from jubako.operator.apply import child_patch

    previous = {"kind": "Deployment", "spec": {"replicas": 5, "paused": False}}
    desired = {"kind": "Deployment", "spec": {}}
    assert child_patch(previous, desired) == {"kind": "Deployment", "spec": {"paused": None}}
    # Other kinds lose what is no longer desired, replicas included.
    assert child_patch({"kind": "X", "spec": {"replicas": 5}}, {"kind": "X", "spec": {}}) == {
        "kind": "X", "spec": {"replicas": None}}


def test_each_condition_names_its_own_subject():
    # Pods merely not ready while the registry is down: the registry is BentoResolved's and
    # Degraded's business, not Available's or Progressing's.
    observed = Observed(generation=2, requested="m:v2", resolved="m:v1",
                        resolve_problem=Problem("RegistryUnreachable", "registry down"),
                        deployments={"proxy": _dep(1, 0), "worker/g": _dep(1, 0)})
    conds = _conds(compute(observed, {}, NOW))
    assert (conds["Available"]["status"], conds["Available"]["reason"]) == ("False", "PodsNotReady")
    assert (conds["Progressing"]["status"], conds["Progressing"]["reason"]) == ("True", "RollingOut")
    assert conds["BentoResolved"]["reason"] == conds["Degraded"]["reason"] == "RegistryUnreachable"
    # A pod problem is the pods' business: Available and Progressing say it.
    observed.pods = [{"metadata": {"name": "p"}, "spec": {}, "status": {"containerStatuses": [
        {"name": "worker", "image": "x:1", "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}}]
    conds = _conds(compute(observed, {}, NOW))
    assert conds["Available"]["reason"] == conds["Progressing"]["reason"] == "ImagePullFailed"


def test_nothing_deployed_is_not_a_complete_rollout():
    for problem in (None, Problem("BentoNotFound", "no such bento"), Problem("InvalidSpec", "bad")):
        observed = Observed(generation=1, requested="m:v1")
        if problem and problem.reason == "InvalidSpec":
            observed.spec_problem = problem
        else:
            observed.resolve_problem = problem
        conds = _conds(compute(observed, {}, NOW))
        assert (conds["Progressing"]["status"], conds["Progressing"]["reason"]) == ("False", "NotDeployed")
        assert (conds["Available"]["status"], conds["Available"]["reason"]) == ("False", "NotDeployed")
        if problem:
            assert problem.message in conds["Progressing"]["message"]
            assert conds["Degraded"]["reason"] == problem.reason


def test_an_unschedulable_pod_asking_for_a_mig_slice_needs_a_gpu_node():
    pod = {"metadata": {"name": "p"}, "spec": {
        "containers": [{"resources": {"limits": {"nvidia.com/mig-1g.10gb": "1"}}}]},
        "status": {"conditions": [{"type": "PodScheduled", "status": "False",
                                   "message": "0/3 nodes are available: 3 Insufficient nvidia.com/mig-1g.10gb"}]}}
    problem = pod_problem([pod])
    assert problem.reason == "NoGPUNode" and "nvidia.com/mig-1g.10gb" in problem.message
