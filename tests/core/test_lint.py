"""The tree stays clean under the project's ruff rules (pyproject.toml), as `make lint` checks."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ruff_finds_nothing() -> None:
    ruff = Path(sys.executable).with_name("ruff")
    dirs = ["jubako", "runtime", "registry", "operator", "tests", "examples", "scripts", "bench"]
    proc = subprocess.run([str(ruff), "check", *dirs], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
