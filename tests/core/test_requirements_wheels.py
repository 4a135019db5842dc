"""``jubako build --wheels``: the bento carries the wheels of what the runtime image lacks.

Offline: two tiny local distributions (tinydep needs tinysub) are made into wheels with
``pip wheel``, installed into a folder put on PYTHONPATH (so the build infers them), and pip
resolves from that wheel folder only (PIP_NO_INDEX, PIP_FIND_LINKS).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from jubako.bundle import check_bundle
from jubako.loader import open_bento
from jubako.store import Store

JUBAKO = str(Path(sys.executable).with_name("jubako"))
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
pytestmark = pytest.mark.slow  # pip and whole `jubako build` processes


def make_dist(src: Path, name: str, version: str, requires: list[str]) -> Path:
    pkg = src / name
    (pkg / name).mkdir(parents=True)
    (pkg / name / "__init__.py").write_text(f"VERSION = {version!r}\n")
    (pkg / "pyproject.toml").write_text(textwrap.dedent(f"""
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "{name}"
        version = "{version}"
        dependencies = {json.dumps(requires)}
    """))
    return pkg


@pytest.fixture(scope="module")
def local_index(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(wheel folder, site folder where tinydep + tinysub are installed)."""
    base = tmp_path_factory.mktemp("local-index")
    wheels, site = base / "wheels", base / "site"
    offline = {**os.environ, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels)}
    for name, requires in (("tinysub", []), ("tinydep", ["tinysub>=1"])):
        pkg = make_dist(base / "src", name, "1.0", requires)
        subprocess.run([*PIP, "wheel", "--no-build-isolation", "--no-deps", "-w", str(wheels), str(pkg)],
                       check=True, env=offline, timeout=120, capture_output=True)
    subprocess.run([*PIP, "install", "--target", str(site), "tinydep"], check=True, env=offline,
                   timeout=120, capture_output=True)
    return wheels, site


def project(root: Path, config: str) -> Path:
    root.mkdir(parents=True)
    (root / "service.py").write_text(textwrap.dedent('''
        import tinydep
        import yaml

        import jubako


        @jubako.service(name="tiny")
        class Tiny:
            @jubako.api
            def version(self, text: str) -> str:
                return tinydep.VERSION
    '''))
    (root / "jubako.yaml").write_text(config)
    return root


def build(root: Path, home: Path, local_index: tuple[Path, Path], *args: str) -> subprocess.CompletedProcess:
    wheels, site = local_index
    env = {**os.environ, "JUBAKO_HOME": str(home), "PYTHONPATH": str(site),
           "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels)}
    return subprocess.run([JUBAKO, "build", str(root), "--json", *args], env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("how", ["flag", "config"])
def test_wheels_of_what_the_image_lacks_travel_in_the_bento(
    tmp_path: Path, local_index: tuple[Path, Path], how: str
) -> None:
    config = "service: service:Tiny\n" + ("python: {wheels: true}\n" if how == "config" else "")
    root = project(tmp_path / "p", config)
    out = build(root, tmp_path / "home", local_index, *(["--wheels"] if how == "flag" else []))
    assert out.returncode == 0, out.stderr
    m = open_bento(json.loads(out.stdout)["tag"], Store(tmp_path / "home")).manifest
    # tinydep inferred and pinned; PyYAML too, but the runtime image has it: no wheel for it
    assert [line.partition("==")[0] for line in m.python.inferred] == ["PyYAML", "tinydep"]
    assert m.python.wheels == ["wheels/tinydep-1.0-py3-none-any.whl", "wheels/tinysub-1.0-py3-none-any.whl"]
    paths = {f.path for f in m.files}
    assert set(m.python.wheels) <= paths  # listed with size and sha256 like every file
    check_bundle(Store(tmp_path / "home").bentos.get(str(m.tag)).path, m)


def test_without_wheels_nothing_is_downloaded(tmp_path: Path, local_index: tuple[Path, Path]) -> None:
    root = project(tmp_path / "p", "service: service:Tiny\n")
    out = build(root, tmp_path / "home", local_index)
    assert out.returncode == 0, out.stderr
    m = open_bento(json.loads(out.stdout)["tag"], Store(tmp_path / "home")).manifest
    assert m.python.wheels == [] and not any(f.path.startswith("wheels/") for f in m.files)


def test_wheels_that_cannot_be_found_fail_the_build_with_pip_s_message(
    tmp_path: Path, local_index: tuple[Path, Path]
) -> None:
    root = project(tmp_path / "p", "service: service:Tiny\npython: {requirements: [nowhere-to-be-found==3.1]}\n")
    out = build(root, tmp_path / "home", local_index, "--wheels")
    assert out.returncode == 1
    assert "cannot get the wheels of nowhere-to-be-found==3.1" in out.stderr
    assert "No matching distribution" in out.stderr or "Could not find" in out.stderr
    assert Store(tmp_path / "home").bentos.list() == []
