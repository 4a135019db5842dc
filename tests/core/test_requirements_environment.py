"""Checking an environment against a bento's requirements (pure parts of jubako/environment.py)."""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

from jubako.build import build as build_bento
from jubako.environment import (
    Problem,
    check,
    digest,
    install_for_pod,
    needed,
    prepare,
    relaxed_pins,
)
from jubako.manifest import BentoManifest
from jubako.store import Store

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_check_names_what_is_missing_or_at_another_version() -> None:
    yaml_version = metadata.version("PyYAML")
    problems = check([
        "PyYAML==0.1", f"pyyaml=={yaml_version}", "numpy>=1", "no-such-dist-here>=2",
        "only-on-old-pythons==1; python_version < '3'",
    ])
    assert problems == [Problem("PyYAML==0.1", yaml_version), Problem("no-such-dist-here>=2", None)]
    assert [str(p) for p in problems] == [
        f"PyYAML==0.1 (installed: {yaml_version})", "no-such-dist-here>=2 (not installed)",
    ]


def test_needed_lines_and_digest_follow_the_requirements(tmp_path: Path) -> None:
    store = Store(tmp_path / "home")
    a = build_bento(EXAMPLES / "slugger", store=store)
    assert needed(a.manifest) == [f"python-slugify=={metadata.version('python-slugify')}"]
    assert check(needed(a.manifest)) == []  # the dev environment has it: serve runs as is
    b = build_bento(EXAMPLES / "slugger", store=store)
    assert digest(a) == digest(b)  # same requirements and interpreter: one venv for both
    a.manifest.python.requirements = ["python-slugify==8.0.4"]
    assert digest(a) != digest(b)


def test_pod_install_links_this_environment_when_it_has_everything(tmp_path: Path) -> None:
    """`jubako runtime install` for a bento the image satisfies: no venv, deps/env is this one."""
    bundle = build_bento(EXAMPLES / "slugger", store=Store(tmp_path / "home"))
    python = install_for_pod(bundle, tmp_path / "deps")  # the folder does not exist yet
    assert python == tmp_path / "deps" / "env" / "bin" / "python3"
    assert (tmp_path / "deps" / "env").resolve() == Path(sys.prefix).resolve()
    assert python.exists() and sorted(p.name for p in (tmp_path / "deps").iterdir()) == ["env"]


def test_pins_of_what_the_runtime_provides_are_relaxed_explicit_lines_are_not() -> None:
    """A bento built on a laptop with another numpy (or torch) runs on the image's build: a pod
    must not download a second torch over the image's CUDA one. Explicit lines stay strict."""
    from jubako.manifest import PythonSpec

    m = BentoManifest(
        name="b", version="v1", created_at="2026-01-01T00:00:00Z", service="service:S",
        python=PythonSpec(requirements=["PyYAML==0.1"], inferred=["numpy==0.0.1", "tinyx==1.0", "PyYAML==6"]),
    )
    assert needed(m) == ["PyYAML==0.1", "numpy", "tinyx==1.0"]
    assert [p.requirement for p in check(needed(m))] == ["PyYAML==0.1", "tinyx==1.0"]
    assert relaxed_pins(m) == {"numpy": "0.0.1"}


def test_running_on_another_version_of_a_relaxed_pin_is_logged(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    bundle = build_bento(EXAMPLES / "slugger", store=Store(tmp_path / "home"))
    bundle.manifest.python.inferred.append("numpy==0.0.1")
    with caplog.at_level("WARNING", logger="jubako.environment"):
        assert prepare(bundle, install=False, cache=tmp_path / "venvs") == sys.executable
    (record,) = caplog.records
    assert record.package == "numpy" and record.built == "0.0.1" and record.installed == metadata.version("numpy")


def test_another_python_version_is_logged(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    bundle = build_bento(EXAMPLES / "slugger", store=Store(tmp_path / "home"))
    bundle.manifest.python.version = "3.99"
    with caplog.at_level("WARNING", logger="jubako.environment"):
        prepare(bundle, install=False, cache=tmp_path / "venvs")
    (record,) = caplog.records
    assert record.built == "3.99" and record.installed == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert "was built on Python 3.99" in record.getMessage()
