"""Where the time goes when N BentoDeployments are created at once (issue 15, defect 8).

Three processes, so that the CPU of each part is its own (in the scale test they share one
GIL): the KMock emulator (tests/operator/kmock_ext.py, request log trimmed), the real kopf
operator (`jubako.operator.run.run`), and this driver, which creates the N objects one after
the other (as `kubectl apply -f` of one file would), then asks the emulator every 0.5 s
whether every child exists and every status caught up (every 2 s above 200 objects). The registry runs as in the tests.

Prints one JSON line: time to create, to converge, to quiet (no request for 3 s); API calls
per object by verb and resource (counted by the emulator); CPU seconds of each process over
the run; load average. `--profile FILE` records the operator with py-spy (raw, every thread).

    .venv/bin/python bench/operator_scale.py --n 200 [--n 1000] [--profile /tmp/op.txt]
"""

from __future__ import annotations

import argparse
import collections
import copy
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "operator"))
CHILDREN = {"deployments": 2, "services": 2, "horizontalpodautoscalers": 1, "poddisruptionbudgets": 1}
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads (and its reaped children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / TICKS


# --- the emulator process ----------------------------------------------------------------

def emulator_main(workdir: str) -> None:
    from harness import Cluster

    cluster = Cluster(Path(workdir), trim_log=True)
    emulator = cluster.emulator
    print(json.dumps({"url": cluster.url, "kubeconfig": str(cluster.kubeconfig)}), flush=True)

    async def stat(n: int) -> dict[str, Any]:
        start = time.thread_time()
        objects: collections.Counter[str] = collections.Counter()
        caught_up = 0
        for key, obj in emulator._objects.items():
            if obj.deleted:
                continue
            plural = key[0].plural
            objects[plural] += 1
            if plural == "bentodeployments":
                raw = obj.raw
                status = raw.get("status") or {}
                if (status.get("observedGeneration") == raw["metadata"].get("generation")
                        and (status.get("bento") or {}).get("resolved")):
                    caught_up += 1
        converged = caught_up == n and all(objects[p] >= per * n for p, per in CHILDREN.items())
        return {"counts": {f"{a} {p}": c for (a, p), c in emulator.counts.items()},
                "objects": dict(objects), "caught_up": caught_up, "converged": converged,
                "stat_cpu_s": time.thread_time() - start}

    import asyncio
    for line in sys.stdin:
        n = int(line)
        if n < 0:
            break
        assert cluster._loop is not None
        answer = asyncio.run_coroutine_threadsafe(stat(n), cluster._loop).result(30)
        print(json.dumps(answer), flush=True)
    cluster.close()


class EmulatorProcess:
    def __init__(self, workdir: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--role", "emulator", "--workdir", str(workdir)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        first = json.loads(self._line())
        self.url, self.kubeconfig = first["url"], first["kubeconfig"]
        self.stat_cpu_s = 0.0

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the emulator exited")
        return line

    def stat(self, n: int) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{n}\n")
        self.proc.stdin.flush()
        answer = json.loads(self._line())
        self.stat_cpu_s += answer["stat_cpu_s"]
        return answer

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("-1\n")
        self.proc.stdin.flush()
        self.proc.wait(30)


# --- the operator process ----------------------------------------------------------------

def operator_main(url: str, settings_json: str) -> None:
    import kopf
    from jubako.operator.config import OperatorSettings
    from jubako.operator.run import run

    settings = OperatorSettings.model_validate_json(settings_json)
    stop = threading.Event()
    ready = threading.Event()

    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=url, token="test", insecure=True)

    def watch_stdin() -> None:
        sys.stdin.read()  # EOF: the driver is done
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    threading.Thread(target=lambda: (ready.wait(), print("ready", flush=True)), daemon=True).start()
    from jubako.operator.kube import Kube, make_api_client
    from jubako.operator.reconcile import Context
    ctx = Context(settings=settings, kube=Kube(make_api_client(os.environ["BENCH_KUBECONFIG"])))
    run(settings, ctx=ctx, stop_flag=stop, ready_flag=ready, login=login)


# --- the driver --------------------------------------------------------------------------

def measure(n: int, profile: str | None) -> dict[str, Any]:
    from harness import RealRegistry
    from jubako.operator.config import OperatorSettings
    from jubako.operator.kube import Kube, make_api_client
    from operator_manifests import load_crd, load_examples

    work = Path(tempfile.mkdtemp(prefix="operator-scale-"))
    registry = RealRegistry(work / "registry")
    registry.publish("mlp-onnx", "v1")
    emulator = EmulatorProcess(work)
    kube = Kube(make_api_client(emulator.kubeconfig))
    kube._call("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", load_crd())
    settings = OperatorSettings(
        registry_url=registry.url, registry_token=registry.token, registry_timeout_s=5.0,
        namespaces=["default"], resync_interval_s=600.0, standalone=True, priority=1)
    command = [sys.executable, __file__, "--role", "operator", "--url", emulator.url,
               "--settings", settings.model_dump_json()]
    if profile:
        # Every thread, waiting or not, so a worker's time splits into CPU and waits.
        command = [str(Path(sys.executable).with_name("py-spy")), "record", "--idle", "--threads",
                   "--format", "raw", "-r", "50", "-o", profile, "--", *command]
    operator = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "BENCH_KUBECONFIG": emulator.kubeconfig})
    assert operator.stdout is not None and operator.stdin is not None
    while (line := operator.stdout.readline()).strip() != "ready":  # py-spy may talk first
        assert line, "the operator exited"
    deadline = time.monotonic() + 60
    while emulator.stat(0)["counts"].get("watch deployments", 0) < 1:
        assert time.monotonic() < deadline, "kopf never watched deployments"
        time.sleep(0.2)
    time.sleep(1)  # kopf's start-up lists and watches settle before anything is counted
    op_pid = operator.pid if not profile else _child_pid(operator.pid)
    pids = {"emulator": emulator.proc.pid, "operator": op_pid, "registry": registry._proc.pid}
    before = {k: cpu_s(p) for k, p in pids.items()}
    driver_before = time.process_time()
    counts_before = collections.Counter(emulator.stat(0)["counts"])
    load_before = os.getloadavg()

    (example,) = [c for c in load_examples() if c["metadata"]["name"] == "mlp-onnx"]
    start = time.monotonic()
    for i in range(n):
        cr = copy.deepcopy(example)
        cr["metadata"]["name"] = f"scale-{i:04d}"
        kube.create(cr)
    created = time.monotonic() - start
    driver_create_cpu = time.process_time() - driver_before
    while not (answer := emulator.stat(n))["converged"]:
        assert time.monotonic() - start < 1800, f"not converged: {answer}"
        time.sleep(0.5 if n <= 200 else 2.0)  # each look walks every object in the emulator
    converged = time.monotonic() - start
    cpu_converged = {k: round(cpu_s(p) - before[k], 1) for k, p in pids.items()}
    last, since = None, time.monotonic()
    while time.monotonic() - since < 3.0:
        total = sum(emulator.stat(n)["counts"].values())
        if total != last:
            last, since = total, time.monotonic()
        time.sleep(0.2)
    quiet = time.monotonic() - start
    cpu = {k: round(cpu_s(p) - before[k], 1) for k, p in pids.items()}
    cpu["driver"] = round(time.process_time() - driver_before, 1)
    cpu["driver_creating"] = round(driver_create_cpu, 1)
    cpu["emulator_answering_driver"] = round(emulator.stat_cpu_s, 2)
    calls = collections.Counter(emulator.stat(n)["counts"]) - counts_before
    operator.stdin.close()
    operator.wait(120)
    emulator.close()
    registry.stop()
    ours = {k: v for k, v in calls.items() if k != "create bentodeployments"}
    by_verb: collections.Counter[str] = collections.Counter()
    for key, count in ours.items():
        by_verb[key.split()[0]] += count
    return {
        "n": n, "created_s": round(created, 1), "converged_s": round(converged, 1),
        "quiet_s": round(quiet, 1), "calls_per_object": round(sum(ours.values()) / n, 2),
        "per_object_by_verb": {k: round(v / n, 2) for k, v in sorted(by_verb.items())},
        "calls": dict(sorted(ours.items())), "cpu_s_until_converged": cpu_converged, "cpu_s": cpu,
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }


def _child_pid(pid: int) -> int:
    """The profiled operator: py-spy's child."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.1)
    raise RuntimeError("py-spy started no operator")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", default="driver", choices=["driver", "emulator", "operator"])
    parser.add_argument("--n", type=int, action="append", help="objects (repeatable; default 200)")
    parser.add_argument("--profile", help="record the operator with py-spy to this file")
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "emulator":
        emulator_main(args.workdir)
    elif args.role == "operator":
        operator_main(args.url, args.settings)
    else:
        for n in args.n or [200]:
            print(json.dumps(measure(n, args.profile)), flush=True)


if __name__ == "__main__":
    main()
