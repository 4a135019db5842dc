"""`jubako run` checks a bento's requirements as `jubako serve` does (docs/requirements.md):
refused before anything is written, naming what is missing; with --install the workers run
in the bento's venv (the in-process executor cannot: it runs in this environment)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.core.test_requirements_wheels import JUBAKO, build, local_index, project  # noqa: F401

pytestmark = pytest.mark.slow


def test_run_refuses_what_is_missing_and_installs_it_on_request(
    tmp_path: Path, local_index: tuple[Path, Path]  # noqa: F811
) -> None:
    home = tmp_path / "home"
    out = build(project(tmp_path / "p", "service: service:Tiny\n"), home, local_index, "--wheels")
    assert out.returncode == 0, out.stderr
    tag = json.loads(out.stdout)["tag"]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "JUBAKO_INSTALL")}
    env.update(JUBAKO_HOME=str(home), JUBAKO_NUM_THREADS="1", PIP_NO_INDEX="1")
    src = tmp_path / "in.csv"
    src.write_text("text\na\nb\nc\n")
    dst = tmp_path / "out.csv"
    cmd = [JUBAKO, "run", tag, "--input", str(src), "--output", str(dst), "--no-progress"]

    refused = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1
    assert "needs packages this environment lacks: tinydep==1.0 (not installed)." in refused.stderr
    assert not dst.exists() and not Path(str(dst) + ".parts").exists()

    inprocess = subprocess.run([*cmd, "--install", "--executor", "inprocess"], env=env, capture_output=True,
                               text=True, timeout=300)
    assert inprocess.returncode == 1 and "use --executor workers" in inprocess.stderr

    done = subprocess.run([*cmd, "--install"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    venvs = list((home / "venvs").iterdir())
    assert len(venvs) == 1 and f"workers run in {venvs[0]}" in done.stderr
    assert "1 worker(s)" in " ".join(done.stderr.split())
    assert dst.read_text().splitlines() == ['"version"', *['"1.0"'] * 3]  # pyarrow quotes text
