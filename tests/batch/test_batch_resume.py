"""Kill a run mid-way (SIGKILL): no output appears, and the same command continues after
the last completed chunk and gives the same output as an uninterrupted run."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pyarrow.csv as pcsv
import pytest

from .conftest import feature_table, features, jubako_cli, read_output, run_cli

ROWS, CHUNK = 40_000, 400


def make_input(path: Path) -> None:
    table = feature_table(features(ROWS, seed=3))
    pcsv.write_csv(table, path)
    text = path.read_text().splitlines()
    text[101] = text[101].replace(",", ",nope,", 1).rsplit(",", 1)[0]  # a bad value in row 101
    path.write_text("\n".join(text) + "\n")


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["inprocess", "workers", "sharded"])
def test_sigkill_and_resume(tmp_path: Path, onnx_bento: str, executor: str) -> None:
    src = tmp_path / "in.csv"
    make_input(src)
    args = [onnx_bento, "--input", str(src), "--keep-columns", "id", "--chunk-rows", str(CHUNK),
            "--executor", executor]
    # the reference: one uninterrupted run
    ref = tmp_path / "ref.csv"
    run_cli(*args, "--output", str(ref), check_codes=(2,))

    out = tmp_path / "out.csv"
    parts = Path(str(out) + ".parts")
    proc = subprocess.Popen([*jubako_cli(), "run", *args, "--output", str(out), "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        # the first 5 chunks committed (the sharded executor's shards commit out of order)
        while not all((parts / f"done-{i:06d}.json").exists() for i in range(5)):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "no chunk finished"
            time.sleep(0.02)
    finally:
        with contextlib.suppress(ProcessLookupError):  # it exited: the assertion above says why
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if proc.stderr:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()  # never half-written
    # the output is written as chunks commit, into a temporary that lives with the parts
    assert list(parts.glob(".out.csv.*")), sorted(p.name for p in parts.iterdir())
    done = {int(p.name[5:11]) for p in parts.glob("done-*")}
    prefix = next(i for i in range(ROWS // CHUNK + 1) if i not in done)  # what a resumed run keeps
    assert 5 <= prefix < ROWS // CHUNK

    resumed = run_cli(*args, "--output", str(out), check_codes=(2,))
    assert "resumed after" in resumed.stderr
    n = int(resumed.stderr.split("resumed after ")[1].split(" chunk")[0])
    assert n >= prefix
    assert not parts.exists()
    assert not list(tmp_path.glob(".out.csv.*"))  # no temporary left next to the output
    assert out.read_bytes() == ref.read_bytes()
    assert Path(str(out) + ".errors.jsonl").read_bytes() == Path(str(ref) + ".errors.jsonl").read_bytes()
    table = read_output(out)
    assert table.num_rows == ROWS
    assert np.flatnonzero(np.asarray(table.column("predict_0").is_null())).tolist() == [100]


def test_resume_refuses_other_settings(tmp_path: Path, onnx_bento: str) -> None:
    src = tmp_path / "in.csv"
    pcsv.write_csv(feature_table(features(100)), src)
    out = tmp_path / "out.csv"
    parts = Path(str(out) + ".parts")
    parts.mkdir()
    (parts / "state.json").write_text('{"version": 1, "chunk_rows": 5}')
    proc = run_cli(onnx_bento, "--input", str(src), "--output", str(out), "--keep-columns", "id",
                   check_codes=(1,))
    assert "holds chunks of another run" in proc.stderr and "--restart" in proc.stderr
    run_cli(onnx_bento, "--input", str(src), "--output", str(out), "--keep-columns", "id", "--restart")
    assert read_output(out).num_rows == 100 and not parts.exists()


def test_a_resume_whose_chunk_size_was_ours_names_the_one_to_pass(tmp_path: Path, onnx_bento: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A run interrupted with one chunk size, continued without --chunk-rows (whose default
    may differ, from the file or from another jubako version): the error names the
    interrupted run's size; passing it continues the run."""
    import pyarrow.parquet as pq

    from jubako.batch import Options, run, runner
    from jubako.batch.formats import default_chunk_rows
    from jubako.errors import JubakoError

    src = tmp_path / "in.parquet"
    pq.write_table(feature_table(features(1000, seed=2)), src)
    out = tmp_path / "out.parquet"
    real = runner._commit_part
    calls = []

    def failing(job, chunk, table, errors):  # type: ignore[no-untyped-def]
        if len(calls) == 3:
            raise RuntimeError("interrupted")
        calls.append(chunk.index)
        real(job, chunk, table, errors)

    def opts(**kw: object) -> Options:
        return Options(bento=onnx_bento, input=str(src), output=str(out), keep_columns=["id"],
                       executor="inprocess", progress=False, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(runner, "_commit_part", failing)
    with pytest.raises(RuntimeError, match="interrupted"):
        run(opts(chunk_rows=100))
    monkeypatch.setattr(runner, "_commit_part", real)
    with pytest.raises(JubakoError) as e:
        run(opts())  # the default for this file: ~4 MiB of its rows
    now = default_chunk_rows(str(src), "parquet")
    assert f"chunk_rows: 100 there, {now} now" in str(e.value) and "pass --chunk-rows 100" in str(e.value)
    summary = run(opts(chunk_rows=100))
    assert summary.resumed_chunks == 3 and summary.rows == 1000
