"""The images' Dockerfiles, and the very commands they run, checked without a container engine.

Each Dockerfile installs one extra of this project with `pip install -c constraints.txt` and
starts `jubako ...`. These tests run those commands in fresh virtual environments holding
only that extra, so a missing dependency or a wrong entrypoint fails here, not in a cluster.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "images"
ROLES = ("runtime", "registry", "operator")


def dockerfile(role: str) -> str:
    return (IMAGES / role / "Dockerfile").read_text()


def stages(text: str) -> list[str]:
    return re.split(r"^FROM ", text, flags=re.M)[1:]


@pytest.mark.parametrize("role", ROLES)
def test_dockerfile_shape(role: str) -> None:
    text = dockerfile(role)
    *builds, final = stages(text)  # dependencies, then jubako on top, then the final stage
    build = "".join(builds)
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", text, flags=re.M))
    base = next(v for k, v in args.items() if k.endswith("_IMAGE"))
    assert re.search(r":[0-9][\w.-]*$", base) and "latest" not in base, f"{role}: pin the base image"
    assert "AS build" in build and "COPY --from=build" in final
    assert re.search(r"^USER 10001:10001$", final, flags=re.M), "non-root"
    assert "HEALTHCHECK" in final and "ENTRYPOINT [\"jubako\"]" in final
    for tool in ("gcc", "build-essential", "python3-dev", "pip install"):
        assert tool not in final, f"{role}: {tool} in the final stage"
    assert "-c constraints.txt" in build, "installs are pinned"
    for line in re.findall(r"^# +(\w+)\s{2,}", text, flags=re.M):
        assert line in args, f"{role}: documented build arg {line} does not exist"


@pytest.mark.parametrize("role", ROLES)
def test_extras_named_by_dockerfiles_exist(role: str) -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    text = dockerfile(role)
    named = re.findall(r"\.\[([\w,${}]+)\]", text)
    default = dict(re.findall(r"^ARG (EXTRAS)=(\S+)", text, flags=re.M)).get("EXTRAS", "")
    for group in named:
        group = group.replace("${BUILD_EXTRAS}", default).replace("${EXTRAS}", default)  # BUILD_EXTRAS: ENV of EXTRAS
        for extra in group.split(","):
            assert extra in extras, f"{role}: unknown extra {extra!r}"


@pytest.fixture(scope="module")
def role_venvs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A fresh environment per image, made with the Dockerfile's own install command."""
    envs = {}
    for role, extras in (("registry", "registry"), ("operator", "operator"), ("runtime", "runtime,onnx")):
        venv = tmp_path_factory.mktemp(f"venv-{role}")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", "-c", str(ROOT / "constraints.txt"), f"{ROOT}[{extras}]"],
            check=True, capture_output=True,
        )
        envs[role] = venv
    return envs


def run(venv: Path, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(venv / "bin" / "jubako"), *args], capture_output=True, text=True,
                          env={**os.environ, "PATH": f"{venv / 'bin'}:/usr/bin:/bin"}, **kw)  # type: ignore[call-overload]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_registry_image_command_serves(role_venvs: dict[str, Path], tmp_path: Path) -> None:
    venv = role_venvs["registry"]
    port = free_port()
    env = {**os.environ, "PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path),
           "JUBAKO_REGISTRY_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen([str(venv / "bin" / "jubako"), "registry", "serve", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/livez", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stdout.read().decode()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "registry did not come up"
            time.sleep(0.3)
        assert run(venv, "registry", "migrate", "--help").returncode == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)


def test_operator_image_command_exists(role_venvs: dict[str, Path]) -> None:
    out = run(role_venvs["operator"], "operator", "run", "--help")
    assert out.returncode == 0 and "--all-namespaces" in out.stdout, out.stderr


def test_runtime_image_commands_exist(role_venvs: dict[str, Path]) -> None:
    venv = role_venvs["runtime"]
    for command in (["runtime", "proxy", "--help"], ["runtime", "worker", "--help"], ["pull", "--help"]):
        out = run(venv, *command)
        assert out.returncode == 0, f"{command}: {out.stderr}"


@pytest.mark.parametrize("role", ROLES)
def test_dockerfile_copies_every_package_folder(role: str) -> None:
    """setup.py maps top-level folders onto packages: a folder the build stage does not copy
    fails `pip install .` inside the image (web/ did, found by the first real build)."""
    setup_py = (ROOT / "setup.py").read_text()
    folders = set(re.findall(r'"jubako(?:\.\w+)?": "(\w+)"', setup_py))
    assert {"jubako", "runtime", "web"} <= folders, folders
    build = "".join(stages(dockerfile(role))[:-1])
    copied = set(re.findall(r"^COPY (\w+) \1$", build, flags=re.M))
    assert folders <= copied, f"{role}: build stage does not copy {sorted(folders - copied)}"
