"""The images' Dockerfiles, read without a container engine: their shape, the extras they
install and the package folders they copy. The images themselves are built and run for real in
test_images_run.py and tests/e2e/test_containers.py (these tests replaced the earlier replay of
each Dockerfile's install in a virtual environment)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

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
