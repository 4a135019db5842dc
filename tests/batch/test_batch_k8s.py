"""The Kubernetes Job/CronJob templates: valid for Kubernetes 1.33 (strict), pulling the
bento like the serving pods, and calling `jubako run` with flags that exist."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import typer.main
import yaml

from jubako.cli.main import app

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "batch"
IMAGE = "ghcr.io/jubako/runtime:0.1.0"


def _pod(doc: dict[str, Any]) -> dict[str, Any]:
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return doc["spec"]["template"]["spec"]


def _run_options() -> set[str]:
    cmd = typer.main.get_command(app).commands["run"]  # type: ignore[attr-defined]
    return {o for p in cmd.params for o in p.opts}


@pytest.mark.parametrize("name", ["job.yaml", "cronjob.yaml"])
def test_batch_manifests(name: str) -> None:
    docs = [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]
    assert len(docs) == 1
    doc = docs[0]
    kubernetes_validate.validate(doc, "1.33.0", strict=True)
    pod = _pod(doc)
    (init,) = pod["initContainers"]
    assert init["image"] == IMAGE and init["args"][0] == "pull" and init["args"][2:] == ["--output", "/bento"]
    assert {e["name"] for e in init["env"]} == {"JUBAKO_REGISTRY_URL", "JUBAKO_TOKEN"}
    (score,) = pod["containers"]
    assert score["image"] == IMAGE
    argv = score["args"] if "command" not in score else shlex.split(score["args"][0].split("exec ", 1)[1])
    if argv[0] == "jubako":
        argv = argv[1:]
    assert argv[:2] == ["run", "/bento"]
    flags = {a for a in argv if a.startswith("--")}
    assert flags <= _run_options(), flags - _run_options()
    assert {"--api", "--input", "--output"} <= flags
    inp, out = argv[argv.index("--input") + 1], argv[argv.index("--output") + 1]
    assert inp.startswith("s3://") and out.startswith("s3://")
    assert any(m["mountPath"] == "/bento" for m in score["volumeMounts"])
    assert pod["restartPolicy"] == "Never"
