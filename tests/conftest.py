"""Fixtures shared by every component's tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from jubako.build import build
from jubako.store import Store
from tests.images.containers import built_images, dockerd  # noqa: F401  (session fixtures: the Docker engine, the images)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
EXAMPLE_BENTOS = ("mlp_torch", "mlp_onnx")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty JUBAKO_HOME for this test."""
    path = tmp_path / "jubako-home"
    monkeypatch.setenv("JUBAKO_HOME", str(path))
    return path


@pytest.fixture
def store(home: Path) -> Store:
    return Store(home)


@pytest.fixture(scope="session")
def example_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """A store holding the example models and bentos, made once per test session.

    Read-only for tests: copy or export from it, never write into it.
    """
    path = tmp_path_factory.mktemp("examples-home")
    env = {**os.environ, "JUBAKO_HOME": str(path)}
    for example in EXAMPLE_BENTOS:
        subprocess.run([sys.executable, str(EXAMPLES / example / "save_model.py")], env=env,
                       check=True, capture_output=True)
    store = Store(path)
    for example in EXAMPLE_BENTOS:
        build(EXAMPLES / example, store=store)
    return store


# Markers that follow from the fixtures a test uses, so every test that needs PostgreSQL or a
# browser is in its tier without each module repeating it (pyproject.toml lists the markers).
_FIXTURE_MARKS = {"pg_url": "postgres", "pg_server": "postgres", "browser": "browser",
                  "page": "browser", "dockerd": "containers"}


# Modules whose every test starts whole processes (servers, operators, image builds) and runs
# for seconds to minutes; a single slow test elsewhere carries @pytest.mark.slow itself.
_SLOW_MODULES = {"tests/runtime/test_serve.py", "tests/registry/test_registry_process.py",
                 "tests/operator/test_operator_e2e.py",
                 "tests/batch/test_batch_resume.py", "tests/batch/test_batch_memory.py",
                 "tests/e2e/test_platform.py"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        marks = {_FIXTURE_MARKS[f] for f in getattr(item, "fixturenames", ()) if f in _FIXTURE_MARKS}
        if item.nodeid.split("::", 1)[0] in _SLOW_MODULES:
            marks.add("slow")
        params = getattr(getattr(item, "callspec", None), "params", {})
        if any(isinstance(v, str) and v.startswith("postgres") for v in params.values()):
            marks.add("postgres")  # the registry's backend matrix: "postgres-s3" and the like
        for mark in marks - set(item.keywords):
            item.add_marker(mark)
