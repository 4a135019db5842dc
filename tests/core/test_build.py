import textwrap
from pathlib import Path

import pytest

from jubako.build import build as build_bento
from jubako.build import load_config, select_files
from jubako.bundle import check_bundle
from jubako.errors import AlreadyExists, ConfigError, NotFound
from jubako.loader import open_bento
from jubako.store import Store
from tests.core.test_store import add_model

SERVICE = '''
import numpy as np
import jubako
from jubako import Tensor

@jubako.service(name="demo", models=MODELS)
class Demo:
    @jubako.api(batchable=True, max_batch_size=8, max_latency_ms=5)
    def double(self, x: Tensor[np.float32, (None, 2)]) -> Tensor[np.float32, (None, 2)]:
        return x * 2
'''


def project(root: Path, config: str, models: str = "[]") -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "service.py").write_text(SERVICE.replace("MODELS", models))
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "util.py").write_text("X = 1\n")
    (root / "notes.md").write_text("notes")
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "service.cpython-311.pyc").write_bytes(b"\0")
    (root / "jubako.yaml").write_text(textwrap.dedent(config))
    return root


def test_select_files_globs(tmp_path: Path) -> None:
    root = project(tmp_path, "service: service:Demo\n")
    (root / "pkg" / "data").mkdir()
    (root / "pkg" / "data" / "table.csv").write_text("a,b")
    assert select_files(root, ["**/*.py"], []) == ["pkg/__init__.py", "pkg/util.py", "service.py"]
    assert select_files(root, ["*.py"], []) == ["service.py"]
    assert select_files(root, ["pkg"], ["data"]) == ["pkg/__init__.py", "pkg/util.py"]
    assert select_files(root, ["**/*"], ["pkg/**", "*.md", "jubako.yaml"]) == ["service.py"]
    assert "pkg/data/table.csv" in select_files(root, ["**/*"], [])


def test_config_from_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.jubako]\nservice = "service:Demo"\nlabels = {team = "x"}\n')
    cfg, root = load_config(tmp_path)
    assert cfg.service == "service:Demo" and cfg.labels == {"team": "x"} and root == tmp_path


@pytest.mark.parametrize(
    "config, words",
    [
        ("labels: {a: 1}\n", "service: Field required"),
        ("service: service:Demo\nincludes: ['*.py']\n", "includes: Extra inputs"),
        ("- a\n", "must be a mapping"),
    ],
)
def test_config_errors_name_the_field(tmp_path: Path, config: str, words: str) -> None:
    (tmp_path / "jubako.yaml").write_text(config)
    with pytest.raises(ConfigError, match=words):
        load_config(tmp_path)


def test_no_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no jubako.yaml"):
        load_config(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[project]\nname='x'\n")
    with pytest.raises(ConfigError, match=r"no \[tool.jubako\]"):
        load_config(tmp_path)


def test_build_writes_a_verified_bento(tmp_path: Path, store: Store) -> None:
    add_model(store, "v1")
    root = project(tmp_path / "p", """
        service: service:Demo
        include: ["**/*.py"]
        labels: {team: search}
        python: {requirements: [numpy]}
    """, models='["m:latest"]')
    bundle = build_bento(root, store=store, labels={"stage": "dev"})
    m = bundle.manifest
    assert m.name == "demo" and m.service == "service:Demo"
    assert [f.path for f in m.files] == ["src/pkg/__init__.py", "src/pkg/util.py", "src/service.py"]
    assert m.labels == {"team": "search", "stage": "dev"}
    assert m.python.requirements == ["numpy"]
    assert [r.tag for r in m.models] == ["m:v1"]  # latest pinned to a concrete version
    assert m.models[0].digest == store.models.get("m:v1").manifest.digest()
    assert m.apis[0].name == "double" and m.apis[0].batching.max_batch_size == 8
    check_bundle(bundle.path, m)
    assert open_bento(str(bundle.tag)).manifest == m
    assert open_bento(bundle.path).manifest == m
    with pytest.raises(AlreadyExists):
        build_bento(root, store=store, version=m.version)


def test_build_needs_the_models_and_the_service_module(tmp_path: Path, store: Store) -> None:
    root = project(tmp_path / "a", "service: service:Demo\n", models='["missing"]')
    with pytest.raises(NotFound, match="model missing:latest is not in the store"):
        build_bento(root, store=store)
    root = project(tmp_path / "b", "service: service:Demo\nexclude: [service.py]\n")
    with pytest.raises(ConfigError, match="service.py is not selected"):
        build_bento(root, store=store)
    assert store.bentos.list() == []


def test_build_runs_side_by_side_with_same_module_names(tmp_path: Path, store: Store) -> None:
    a = project(tmp_path / "a", "service: service:Demo\nname: first\n")
    b = project(tmp_path / "b", "service: service:Demo\nname: second\n")
    assert build_bento(a, store=store).tag.name == "first"
    assert build_bento(b, store=store).tag.name == "second"
