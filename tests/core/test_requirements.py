"""Requirements inferred at build time: the import scan, the mapping to distributions, the pins."""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest

from jubako.build import build as build_bento
from jubako.errors import ConfigError
from jubako.manifest import BentoManifest, parse_manifest
from jubako.requirements import (
    Environment,
    MissingRequirements,
    infer,
    own_modules,
    resolved,
    runtime_provided,
    scan_source,
)
from jubako.store import Store

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

SOURCE = textwrap.dedent('''
    from __future__ import annotations
    import os, json as j
    import numpy.linalg
    from slugify import slugify
    from . import sibling
    from .pkg import thing
    import helpers
    try:
        import ujson
    except ImportError:
        ujson = None
    from typing import TYPE_CHECKING
    if TYPE_CHECKING:
        import pandas
    def later():
        import yaml
''')

FAKE = Environment(
    providers={"numpy": ["numpy"], "slugify": ["python-slugify"], "yaml": ["PyYAML"]},
    version={"numpy": "2.0.1", "python-slugify": "9.2.0", "PyYAML": "6.0.3"}.__getitem__,
)


def test_scan_finds_absolute_imports_and_marks_optional_ones() -> None:
    found = scan_source(SOURCE, "service.py")
    assert [(i.module, i.line, i.optional) for i in found] == [
        ("__future__", 2, False), ("os", 3, False), ("json", 3, False), ("numpy.linalg", 4, False),
        ("slugify", 5, False), ("helpers", 8, False), ("ujson", 10, True), ("typing", 13, False),
        ("pandas", 15, True), ("yaml", 17, False),
    ]


def test_files_that_are_not_python_are_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="jubako.requirements"):
        assert scan_source("x = 1\ndef (:\n", "pkg/bad.py") == []
        assert scan_source("import os\0", "pkg/nul.py") == []
    assert [(r.path, r.line) for r in caplog.records] == [("pkg/bad.py", 2), ("pkg/nul.py", None)]
    assert "pkg/bad.py:2: cannot scan its imports" in caplog.records[0].getMessage()


def test_own_modules_are_top_level_files_and_folders() -> None:
    assert own_modules(["service.py", "helpers/__init__.py", "helpers/a.py", "data/x.csv"]) == {
        "service", "helpers", "data",
    }


def test_infer_pins_third_party_distributions_and_explicit_lines_win() -> None:
    imports = scan_source(SOURCE, "service.py")
    assert infer(imports, {"service", "helpers"}, [], FAKE) == [
        "numpy==2.0.1", "python-slugify==9.2.0", "PyYAML==6.0.3",
    ]
    # An explicit line for a distribution replaces its pin (names compared canonically).
    assert infer(imports, {"helpers"}, ["pyyaml>=6", "NumPy"], FAKE) == ["python-slugify==9.2.0"]
    assert resolved(["pyyaml>=6"], ["python-slugify==9.2.0", "PyYAML==6.0.3"]) == [
        "pyyaml>=6", "python-slugify==9.2.0",
    ]


def test_infer_refuses_imports_neither_installed_nor_listed() -> None:
    imports = scan_source("import numpy\nimport sklearn\nimport torchvision.ops\n", "svc/model.py")
    with pytest.raises(MissingRequirements, match=r"sklearn \(svc/model.py:2\), torchvision \(svc/model.py:3\)"):
        infer(imports, {"svc"}, [], FAKE)


def test_infer_accepts_listed_modules_that_are_not_installed() -> None:
    imports = scan_source("import numpy\nimport torchvision\n", "service.py")
    assert infer(imports, set(), ["torchvision==0.20"], FAKE) == ["numpy==2.0.1"]
    with pytest.raises(ConfigError, match="is not a requirement"):
        infer(imports, set(), ["-r other.txt"], FAKE)


def test_runtime_provided_follows_the_image_extras() -> None:
    provided = runtime_provided()
    assert {"numpy", "pydantic", "httptools", "torch", "onnxruntime"} <= provided
    assert "annotated-types" in provided  # a dependency of pydantic: walked transitively
    assert "python-slugify" not in provided and "text-unidecode" not in provided
    assert "kopf" not in provided and "pytest" not in provided  # other extras


def test_build_infers_pinned_requirements_of_the_example(tmp_path: Path) -> None:
    store = Store(tmp_path / "home")
    m = build_bento(EXAMPLES / "slugger", store=store).manifest
    assert m.python.inferred == [f"python-slugify=={metadata.version('python-slugify')}"]
    assert m.python.requirements == []
    assert m.python.version == ".".join(platform.python_version_tuple()[:2])
    # recorded: the manifest read back from the store says the same
    assert store.bentos.get(str(m.tag)).manifest.python == m.python


def test_build_refuses_code_that_imports_what_is_missing(tmp_path: Path) -> None:
    root = tmp_path / "p"
    (root / "lib").mkdir(parents=True)
    (root / "service.py").write_text((EXAMPLES / "slugger" / "service.py").read_text())
    (root / "lib" / "extra.py").write_text("import numpy\n\nimport no_such_module_here\n")
    (root / "jubako.yaml").write_text("service: service:Slugger\ninclude: ['**/*.py']\n")
    store = Store(tmp_path / "home")
    with pytest.raises(MissingRequirements, match=r"no_such_module_here \(lib/extra.py:3\)"):
        build_bento(root, store=store)
    assert store.bentos.list() == []
    out = subprocess.run(
        [str(Path(sys.executable).with_name("jubako")), "build", str(root)], capture_output=True, text=True,
        env={"JUBAKO_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}, timeout=120,
    )
    assert out.returncode == 1 and "no_such_module_here (lib/extra.py:3)" in out.stderr
    (root / "jubako.yaml").write_text(
        "service: service:Slugger\ninclude: ['**/*.py']\npython: {requirements: [no-such-module-here]}\n"
    )
    m = build_bento(root, store=store).manifest
    assert m.python.requirements == ["no-such-module-here"]
    assert [line.partition("==")[0] for line in m.python.inferred] == ["numpy", "python-slugify"]


def test_manifests_without_inferred_requirements_stay_readable() -> None:
    old = textwrap.dedent("""
        schema_version: 1
        name: old
        version: v1
        created_at: '2026-01-01T00:00:00Z'
        service: service:Old
        python: {version: '3.11', requirements: [torch]}
    """).encode()
    m = parse_manifest(old, "bento.yaml", BentoManifest)
    assert m.python.requirements == ["torch"] and m.python.inferred == [] and m.python.wheels == []


def test_namespace_packages_map_to_the_distribution_of_the_submodule() -> None:
    """`google` is shared by many distributions: the imported submodule decides which one."""
    env = Environment(
        providers={"google": ["protobuf", "google-auth"]},
        version={"protobuf": "5.1", "google-auth": "2.3"}.__getitem__,
        files={"protobuf": ["google/protobuf/__init__.py", "google/protobuf/message.py"],
               "google-auth": ["google/auth/__init__.py", "google/oauth2/id_token.py"]}.__getitem__,
    )
    pins = lambda src: infer(scan_source(src, "s.py"), set(), [], env)  # noqa: E731
    assert pins("import google.protobuf.message\n") == ["protobuf==5.1"]
    assert pins("from google.oauth2 import id_token\n") == ["google-auth==2.3"]
    assert pins("import google\n") == ["google-auth==2.3", "protobuf==5.1"]  # cannot tell: both
