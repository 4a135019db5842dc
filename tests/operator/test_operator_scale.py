"""Scale: many BentoDeployments created at once, against the emulator with its request log
trimmed (so the emulator is not what is measured), the real kopf operator and registry.

Prints time to converge and API calls per object by kind; asserts only counts, never
timings. JUBAKO_SCALE_N=1000 for the bigger run. The figures docs/operator.md quotes come
from bench/operator_scale.py, which runs emulator, operator and driver as separate processes
(here they share one GIL, so times mostly measure contention).
"""

from __future__ import annotations

import collections
import copy
import os
import time

import pytest
from harness import Cluster, Operator, wait_for
from operator_manifests import load_crd, load_examples

N = int(os.environ.get("JUBAKO_SCALE_N", "200"))
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
CHILDREN = {"deployments": 2, "services": 2, "horizontalpodautoscalers": 1, "poddisruptionbudgets": 1}


def _converged(cluster: Cluster) -> bool:
    if any(len(cluster.objects(plural)) < per * N for plural, per in CHILDREN.items()):
        return False
    bds = cluster.objects("bentodeployments")
    return len(bds) == N and all(
        (bd.get("status") or {}).get("observedGeneration") == bd["metadata"].get("generation")
        and (bd.get("status") or {}).get("bento", {}).get("resolved") for bd in bds)


def quiet(cluster: Cluster, for_s: float = 3.0) -> None:
    """Wait until the emulator has served no request for `for_s` seconds (bounded)."""
    last, since = -1, time.monotonic()
    deadline = since + 120
    while time.monotonic() < deadline:
        total = sum(cluster.emulator.counts.values())
        if total != last:
            last, since = total, time.monotonic()
        elif time.monotonic() - since >= for_s:
            return
        time.sleep(0.2)


def test_many_deployments_converge_with_no_lists_per_pass(tmp_path, settings):
    cluster = Cluster(tmp_path, trim_log=True)
    cluster.install_crd(load_crd())
    (example,) = [c for c in load_examples() if c["metadata"]["name"] == "mlp-onnx"]
    operator = Operator(cluster, settings.model_copy(update={"resync_interval_s": 60.0}))
    try:
        wait_for("kopf's watches", lambda: cluster.emulator.counts[("watch", "deployments")] >= 1)
        time.sleep(1)  # let kopf's startup lists and watches settle before counting
        before = collections.Counter(cluster.emulator.counts)
        start = time.monotonic()
        for i in range(N):
            cr = copy.deepcopy(example)
            cr["metadata"]["name"] = f"scale-{i:04d}"
            cluster.kube.create(cr)
        created = time.monotonic() - start
        wait_for(f"{N} deployments converged", lambda: _converged(cluster), timeout=840)
        converged = time.monotonic() - start
        quiet(cluster)  # the passes that events still trigger after convergence count too
        settled = time.monotonic() - start
        calls = cluster.emulator.counts - before
        by_action: collections.Counter[str] = collections.Counter()
        for (action, _plural), count in calls.items():
            by_action[action] += count
        ours = {k: v for k, v in calls.items() if k != ("create", "bentodeployments")}
        print(f"\nscale N={N}: created in {created:.1f}s, converged in {converged:.1f}s;"
              f" quiet after {settled:.1f}s; API calls per object: {sum(ours.values()) / N:.1f}"
              f" ({', '.join(f'{a} {c / N:.2f}' for a, c in sorted(by_action.items()))})", flush=True)
        print("by resource:", dict(sorted(calls.items())), flush=True)
    finally:
        operator.stop(timeout=120)
        cluster.close()
    # The operator keeps a view of its children fed by watches: no pass lists anything.
    assert {k: v for k, v in calls.items() if k[0] == "list"} == {}
