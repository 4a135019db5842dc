"""An interrupted run (SIGTERM from Kubernetes, Ctrl-C's SIGINT) stops cleanly, says how to
continue (the exact command), and that command continues it; while the service loads, the
progress output says so."""

from __future__ import annotations

import shlex
import signal
import subprocess
import time
from pathlib import Path

import pyarrow.csv as pcsv
import pytest

from .conftest import feature_table, features, jubako_cli, read_output

ROWS, CHUNK = 40_000, 400


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "executor", "starting", "sigint"), [
    (signal.SIGTERM, "inprocess", "jubako run: loading the service in this process...", signal.SIG_DFL),
    (signal.SIGINT, "workers", "jubako run: starting 1 worker(s)...", signal.SIG_DFL),
    # a background job of a shell script starts with SIGINT ignored: SIGTERM still stops it
    (signal.SIGTERM, "inprocess", "jubako run: loading the service in this process...", signal.SIG_IGN),
    # the sharded executor's coordinator stops its shards; the committed chunks stay
    (signal.SIGTERM, "sharded", "jubako run: starting 1 shard process(es)...", signal.SIG_DFL),
    (signal.SIGINT, "sharded", "jubako run: starting 1 shard process(es)...", signal.SIG_DFL),
], ids=["term", "int", "term-sigint-ignored", "sharded-term", "sharded-int"])
def test_interrupt_says_how_to_resume(tmp_path: Path, onnx_bento: str, sig: signal.Signals, executor: str,
                                      starting: str, sigint: signal.Handlers) -> None:
    src = tmp_path / "in with space.csv"
    pcsv.write_csv(feature_table(features(ROWS, seed=5)), src)
    out = tmp_path / "out.csv"
    parts = Path(str(out) + ".parts")
    args = ["run", onnx_bento, "--input", str(src), "--output", str(out), "--keep-columns", "id", "--chunk-rows",
            str(CHUNK), "--executor", executor, "--workers", "1", "--progress"]  # progress: lines, no terminal
    proc = subprocess.Popen([*jubako_cli(), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, sigint))
    try:
        deadline = time.monotonic() + 180
        while not (parts / "done-000002.json").exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "no chunk finished"
            time.sleep(0.02)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + sig, err
    assert err.startswith(starting), err
    assert not out.exists() and len(list(parts.glob("done-*"))) >= 3
    assert "jubako run: interrupted; " in err and "run the same command to continue:" in err
    command = shlex.split(err.rstrip().splitlines()[-1])
    assert command == ["jubako", *args]
    resumed = subprocess.run([*jubako_cli(), *command[1:]], capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed after" in " ".join(resumed.stderr.split())
    assert read_output(out).num_rows == ROWS and not parts.exists()
