"""A bento's requirements in the cluster (docs/requirements.md): worker pods install them in an
init container into a volume the worker runs from, and a failed install shows as a
RequirementsFailed condition naming the package and pip's error (not a crash-looping worker)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from harness import wait_for
from jubako.operator.config import OperatorSettings
from jubako.operator.reconcile import API_VERSION
from jubako.operator.render import DEPLOYMENT_LABEL, Owner, render
from jubako.operator.spec import KIND, parse_spec
from jubako.operator.status import pod_problem
from operator_manifests import load_examples, validate_k8s

from jubako.build import build as build_bento
from jubako.store import Store
from jubako.tags import Tag

SETTINGS = OperatorSettings(runtime_image="registry.local/jubako-runtime:1", priority=1)
OWNER = Owner(name="demo", namespace="ml", uid="uid-1")
JUBAKO = str(Path(sys.executable).with_name("jubako"))


def _pods(spec: dict) -> dict[str, dict]:
    children = render(OWNER, parse_spec(OWNER.name, spec), Tag("mlp", "v3"), SETTINGS)
    for child in children:
        validate_k8s(child)
    return {c["metadata"]["name"]: c["spec"]["template"]["spec"] for c in children if c["kind"] == "Deployment"}


def test_worker_pods_install_requirements_into_a_volume_the_worker_runs_from() -> None:
    pods = _pods({"bento": "mlp:v3", "workers": [{"name": "cpu"}]})
    worker = pods["demo-worker-cpu"]
    assert [c["name"] for c in worker["initContainers"]] == ["pull-bento", "install-requirements"]
    install = worker["initContainers"][1]
    assert install["args"] == ["runtime", "install", "--bento", "/bento", "--target", "/deps"]
    assert install["image"] == worker["containers"][0]["image"] == SETTINGS.runtime_image
    assert install["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert install["env"] == []  # pip's default index unless the spec names one
    assert {"name": "deps", "mountPath": "/deps"} in install["volumeMounts"]
    assert install["securityContext"]["readOnlyRootFilesystem"] is True
    (container,) = worker["containers"]
    assert container["command"] == ["/deps/env/bin/python3", "-P", "-c", "from jubako.cli import main; main()"]
    assert container["args"][:2] == ["runtime", "worker"]
    assert {"name": "deps", "mountPath": "/deps", "readOnly": True} in container["volumeMounts"]
    assert {"name": "deps", "emptyDir": {}} in worker["volumes"]
    # the proxy never imports the bento's code: nothing to install, the image's own command
    proxy = pods["demo-proxy"]
    assert [c["name"] for c in proxy["initContainers"]] == ["pull-bento"]
    assert "command" not in proxy["containers"][0]


def test_index_url_and_its_secret() -> None:
    plain = _pods({"bento": "mlp:v3", "python": {"indexUrl": "https://pypi.corp/simple"}})
    install = plain["demo-worker-default"]["initContainers"][1]
    assert install["env"] == [{"name": "PIP_INDEX_URL", "value": "https://pypi.corp/simple"}]
    secret = _pods({"bento": "mlp:v3", "python": {"indexUrl": "https://pypi.corp/simple",
                                                  "indexUrlSecretRef": {"name": "pypi"}}})
    install = secret["demo-worker-default"]["initContainers"][1]
    assert install["env"] == [
        {"name": "PIP_INDEX_URL", "valueFrom": {"secretKeyRef": {"name": "pypi", "key": "indexUrl"}}}
    ]


def _init_status(state: dict, last: dict | None = None) -> dict:
    status = {"name": "install-requirements", "state": state}
    if last is not None:
        status["lastState"] = last
    return {"metadata": {"name": "p1"}, "spec": {}, "status": {"initContainerStatuses": [status]}}


def test_a_failed_install_is_reported_with_its_message() -> None:
    message = "cannot install the requirements of x:v1 (tinydep==2.0): pip says: ERROR: No matching distribution found for tinydep==2.0"
    backing_off = _init_status({"waiting": {"reason": "CrashLoopBackOff"}},
                               {"terminated": {"exitCode": 1, "message": message}})
    problem = pod_problem([backing_off])
    assert problem.reason == "RequirementsFailed"
    assert problem.message == f"pod p1 cannot install the bento's requirements: {message}"
    # no message (killed, out of memory): the exit code and reason still say what happened
    oom = _init_status({"terminated": {"exitCode": 137, "reason": "OOMKilled"}})
    assert pod_problem([oom]).message.endswith("exit code 137 (OOMKilled)")
    # succeeded on a later try: the earlier failure is history
    fixed = _init_status({"terminated": {"exitCode": 0}}, {"terminated": {"exitCode": 1, "message": message}})
    assert pod_problem([fixed]) is None
    assert pod_problem([_init_status({"running": {}})]) is None


def _failed_install_message(tmp_path: Path) -> str:
    """What a real `jubako runtime install` writes to its termination log when pip fails."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "service.py").write_text(
        "import jubako\n\n@jubako.service(name='needy')\nclass Needy:\n"
        "    @jubako.api\n    def echo(self, text: str) -> str:\n        return text\n"
    )
    (root / "jubako.yaml").write_text("service: service:Needy\npython: {requirements: [no-such-dist-here==2.0]}\n")
    bundle = build_bento(root, store=Store(tmp_path / "home"))
    (tmp_path / "empty").mkdir()
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(tmp_path / "empty")}
    out = subprocess.run(
        [JUBAKO, "runtime", "install", "--bento", str(bundle.path), "--target", str(tmp_path / "deps"),
         "--termination-log", str(tmp_path / "termination-log")],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 1, out.stderr
    return (tmp_path / "termination-log").read_text()


@pytest.mark.timeout(120)
def test_failed_install_shows_as_a_condition_on_the_bento_deployment(tmp_path, cluster, operator) -> None:
    message = _failed_install_message(tmp_path)
    assert "no-such-dist-here==2.0" in message and "No matching distribution" in message
    (cr,) = [c for c in load_examples() if c["metadata"]["name"] == "mlp-onnx"]
    cluster.kube.create(cr)
    wait_for("worker deployment", lambda: cluster.kube.get("apps/v1", "Deployment", "default", "mlp-onnx-worker-cpu"))
    cluster.kube.create({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "mlp-onnx-worker-cpu-1", "namespace": "default",
                     "labels": {DEPLOYMENT_LABEL: "mlp-onnx"}},
        "spec": {"containers": [{"name": "worker", "image": "x"}]},
    })
    # what the kubelet reports after the init container failed and backs off
    cluster.kube.patch("v1", "Pod", "default", "mlp-onnx-worker-cpu-1", {"status": {
        "phase": "Pending",
        "initContainerStatuses": [
            {"name": "pull-bento", "state": {"terminated": {"exitCode": 0}}},
            {"name": "install-requirements", "state": {"waiting": {"reason": "CrashLoopBackOff"}},
             "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "message": message}}},
        ],
    }}, subresource="status")

    def degraded() -> dict | None:
        body = cluster.kube.get(API_VERSION, KIND, "default", "mlp-onnx") or {}
        conds = {c["type"]: c for c in (body.get("status") or {}).get("conditions", [])}
        cond = conds.get("Degraded")
        return cond if cond and cond.get("reason") == "RequirementsFailed" else None

    cond = wait_for("RequirementsFailed", degraded)
    assert cond["status"] == "True"
    assert "mlp-onnx-worker-cpu-1 cannot install the bento's requirements" in cond["message"]
    assert "no-such-dist-here==2.0" in cond["message"] and "No matching distribution" in cond["message"]
