"""Container fixtures: a private Docker engine and the three images, built for real.

Imported by tests/conftest.py, so that the engine starts once per session for every test
folder (the fixture name `dockerd` marks a test `containers`). Images are built offline
from a host wheelhouse (scripts/wheelhouse.sh) on a Debian base made by debootstrap
(scripts/base_image.sh): no container registry is reachable from these machines. The engine's
data-root is a cache (JUBAKO_TEST_DOCKER_DIR, default ~/.cache/jubako/dockerd), so a second
session reuses the base image and the build layers.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
BASE_IMAGE = "jubako/base:bookworm"
TAG = "test"
ROLES = ("runtime", "registry", "operator")
# Build args per image: the base (each Dockerfile's *_IMAGE arg) and, for the runtime, the CPU
# variant of its extras. Every install comes from images/wheels alone (--no-index).
BUILD_ARGS = {
    "runtime": {"CUDA_IMAGE": BASE_IMAGE, "EXTRAS": "runtime,torch,onnx"},
    "registry": {"PYTHON_IMAGE": BASE_IMAGE},
    "operator": {"PYTHON_IMAGE": BASE_IMAGE},
}
OFFLINE = {"PIP_INSTALL_ARGS": "--no-index --find-links=/wheels"}
WHEEL_EXTRAS = "runtime,torch,onnx,registry,operator"
MAX_DANGLING = 12
# The chart's podSecurityContext and containerSecurityContext (charts/jubako/values.yaml).
CHART_SECURITY = ["--user", "10001:10001", "--read-only", "--cap-drop", "ALL",
                  "--security-opt", "no-new-privileges"]


def _load_engine_module() -> Any:
    spec = importlib.util.spec_from_file_location("jubako_dockerd", ROOT / "scripts" / "dockerd.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@dataclass
class Docker:
    """The `docker` CLI against the session's engine."""

    env: dict[str, str]
    timings: dict[str, float] = field(default_factory=dict)

    def __call__(self, *args: str, check: bool = True, timeout: float = 600,
                 input: str | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["docker", *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, input=input)
        if check and proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} -> {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc

    def inspect(self, image: str) -> dict[str, Any]:
        return json.loads(self("image", "inspect", image).stdout)[0]

    def logs(self, name: str) -> str:
        out = self("logs", "--tail", "60", name, check=False)
        return out.stdout + out.stderr

    def remove(self, *names: str) -> None:
        if names:
            self("rm", "-f", *names, check=False, timeout=120)


@pytest.fixture(scope="session")
def dockerd() -> Iterator[Docker]:
    """A Docker engine of this session's own (started as root), stopped by its pid afterwards."""
    module = _load_engine_module()
    root = Path(os.environ.get("JUBAKO_TEST_DOCKER_DIR", module.DEFAULT_DIR))
    engine = module.Engine(root)
    engine.start()
    try:
        yield Docker(engine.env)
    finally:
        engine.stop()


def _timed(docker: Docker, what: str, cmd: list[str], timeout: float) -> None:
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=docker.env, capture_output=True, text=True, timeout=timeout)
    docker.timings[what] = round(time.monotonic() - start, 1)
    assert proc.returncode == 0, f"{what} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


@pytest.fixture(scope="session")
def built_images(dockerd: Docker) -> dict[str, str]:
    """role -> image reference of the runtime (CPU), registry and operator images, built here."""
    _timed(dockerd, "base image", [str(ROOT / "scripts" / "base_image.sh"), BASE_IMAGE], 900)
    _timed(dockerd, "wheelhouse", [str(ROOT / "scripts" / "wheelhouse.sh"), "images/wheels", WHEEL_EXTRAS], 900)
    refs = {}
    for role in ROLES:
        ref = f"jubako/{role}:{TAG}"
        args = [a for k, v in {**BUILD_ARGS[role], **OFFLINE}.items() for a in ("--build-arg", f"{k}={v}")]
        _timed(dockerd, f"{role} image", ["docker", "build", "--network", "host", "-f", f"images/{role}/Dockerfile",
                                          *args, "-t", ref, "."], 1800)
        refs[role] = ref
    # What a build cost, for docs/install.md: seconds per step and image sizes (MB).
    sizes = {role: round(dockerd.inspect(ref)["Size"] / 1e6) for role, ref in refs.items()}
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "images.json").write_text(json.dumps({"seconds": dockerd.timings, "mb": sizes}, indent=1))
    # Images that later builds replaced (untagged, ~1.5 GB per rebuild of the runtime image) are
    # pruned once they pile up: a prune deletes tens of thousands of files and takes minutes here.
    dangling = dockerd("images", "--filter", "dangling=true", "--quiet").stdout.split()
    if len(dangling) > MAX_DANGLING:
        dockerd("image", "prune", "--force", timeout=900)
    return refs
