"""The `jubako` command as CI pipelines call it: exit codes, one-line errors, --json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jubako.store import Store
from tests.core.test_build import project
from tests.core.test_store import add_model

JUBAKO = str(Path(sys.executable).with_name("jubako"))


def jubako(home: Path, *args: str, ok: bool = True, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [JUBAKO, *args], env={**os.environ, "JUBAKO_HOME": str(home)}, input=stdin,
        capture_output=True,
    )
    if ok:
        assert proc.returncode == 0, proc.stderr.decode()
    return proc


def test_every_command_has_help(home: Path) -> None:
    commands = ["build", "list", "get", "delete", "export", "import", "version", "models list",
                "models get", "models delete", "models export"]
    for command in commands:
        out = jubako(home, *command.split(), "--help").stdout.decode()
        assert "Usage:" in out


def test_build_list_get_export_import_delete(home: Path, tmp_path: Path) -> None:
    store = Store(home)
    add_model(store, "v1")
    root = project(tmp_path / "p", "service: service:Demo\n", models='["m"]')

    built = json.loads(jubako(home, "build", str(root), "--version", "1", "-l", "team=x", "--json").stdout)
    assert built["tag"] == "demo:1" and built["models"] == ["m:v1"] and built["labels"] == {"team": "x"}
    assert built["digest"] == store.bentos.get("demo:1").manifest.digest()

    listed = json.loads(jubako(home, "list", "--json").stdout)
    assert [b["tag"] for b in listed] == ["demo:1"]
    assert "demo:1" in jubako(home, "list").stdout.decode()
    assert json.loads(jubako(home, "models", "list", "--json").stdout)[0]["tag"] == "m:v1"

    manifest = json.loads(jubako(home, "get", "demo", "--json").stdout)
    assert manifest["apis"][0]["name"] == "double"
    assert "service: service:Demo" in jubako(home, "get", "demo:1").stdout.decode()

    archive = tmp_path / "demo.tar.zst"
    jubako(home, "export", "demo:1", str(archive), "-c", "zstd")
    other = tmp_path / "other-home"
    imported = json.loads(jubako(other, "import", str(archive), "--json").stdout)
    assert imported["digest"] == built["digest"] and imported["added_models"] == ["m:v1"]
    # streaming through a pipe works too, and importing twice is a no-op
    piped = jubako(home, "export", "demo:1", "-").stdout
    again = json.loads(jubako(other, "import", "-", "--json", stdin=piped).stdout)
    assert again["existed"] is True

    jubako(home, "delete", "demo:1", "--yes")
    assert json.loads(jubako(home, "list", "--json").stdout) == []
    jubako(home, "models", "delete", "m:v1", "-y")
    assert json.loads(jubako(home, "models", "list", "--json").stdout) == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["get", "nope"], "error: bento 'nope' not found"),
        (["get", "Bad:Tag"], "error: invalid name 'Bad'"),
        (["delete", "nope"], "error: name an exact version to delete"),
        (["models", "get", "x:1"], "error: model x:1 not found"),
        (["import", "/does/not/exist"], "error: /does/not/exist: No such file or directory"),
        (["export", "nope", "/tmp/x.tar", "-c", "lz4"], "error: bento 'nope' not found"),
        (["build", "/does/not/exist"], "error: "),
    ],
)
def test_failures_exit_non_zero_with_one_line(home: Path, args: list[str], message: str) -> None:
    proc = jubako(home, *args, ok=False)
    assert proc.returncode == 1
    err = proc.stderr.decode()
    assert err.startswith(message) and err.count("\n") == 1, err


def test_a_bad_archive_is_refused_by_the_cli(home: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"definitely not a tar" * 50)
    proc = jubako(home, "import", str(bad), ok=False)
    assert proc.returncode == 1 and proc.stderr.decode().startswith("error: not a tar archive")


def test_usage_errors_exit_2(home: Path) -> None:
    assert jubako(home, "get", ok=False).returncode == 2
    assert jubako(home, "no-such-command", ok=False).returncode == 2


def test_export_leaves_no_partial_file(home: Path, tmp_path: Path) -> None:
    add_model(Store(home), "v1")
    jubako(home, "build", str(project(tmp_path / "p", "service: service:Demo\n")), "--version", "1")
    out = tmp_path / "x.tar"
    assert jubako(home, "export", "demo:1", str(out), "-c", "lz4", ok=False).returncode == 1
    assert not out.exists() and not Path(f"{out}.partial").exists()
