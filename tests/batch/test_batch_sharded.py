"""The ``sharded`` executor (one process per instance, each reading, scoring and committing
its own chunks; docs/batch.md, "Executors"): a reader asked for some chunks gives exactly
the chunks the sequential reader gives, the executor gives the same bytes as the other
two (output and error file, every format), and a run whose coordinator is killed takes its
shards with it and continues when started again."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from jubako.batch import Options, formats, run

from .conftest import feature_table, features, jubako_cli, read_output, run_cli


def _inputs(tmp_path: Path) -> dict[str, Path]:
    x = features(1000, seed=4)
    table = feature_table(x)
    paths = {}
    for name, rg in (("groups", 70), ("one-group", None)):  # row groups smaller and larger than a chunk
        paths[name] = tmp_path / f"{name}.parquet"
        pq.write_table(table, paths[name], row_group_size=rg)
    paths["csv"] = tmp_path / "in.csv"
    pcsv.write_csv(table, paths["csv"])
    text = paths["csv"].read_text().splitlines()
    text[301] = text[301] + ",extra"  # a bad row
    paths["csv"].write_text("\n".join(text) + "\n")
    paths["jsonl"] = tmp_path / "in.jsonl"
    lines = [orjson.dumps({"id": i, "x": r.tolist()}) for i, r in enumerate(x)]
    lines[5] = b"{broken"
    paths["jsonl"].write_bytes(b"\n".join(lines) + b"\n")
    return paths


@pytest.mark.parametrize("kind", ["groups", "one-group", "csv", "jsonl"])
@pytest.mark.parametrize("wanted", [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [1, 3, 4, 9], [0, 7], [2, 5, 11, 12]])
def test_claimed_chunks_are_the_sequential_readers(tmp_path: Path, kind: str, wanted: list[int]) -> None:
    src = _inputs(tmp_path)[kind]
    fmt = formats.detect(str(src), None)
    every = {c.index: c for c in formats.open_reader(str(src), fmt, 96).chunks()}
    claims = iter(wanted)
    reader = formats.open_reader(str(src), fmt, 96)
    if fmt == "jsonl":
        reader.columns = ["id", "x"]  # the first chunk's keys, as a shard sets them
    got = list(reader.chunks(lambda: next(claims, 10**6)))  # then past the end
    assert [c.index for c in got] == [i for i in wanted if i in every]  # 11, 12: past the end
    for c in got:
        want = every[c.index]
        assert (c.start, c.rows, c.errors, c.raw) == (want.start, want.rows, want.errors, want.raw)
        assert c.table.equals(want.table), c.index
        if fmt != "parquet":
            assert c.bytes_read == want.bytes_read


def _three(tmp_path: Path, name: str, **kw: object) -> dict[str, tuple[bytes, bytes | None]]:
    got = {}
    for executor in ("workers", "inprocess", "sharded"):
        out = tmp_path / executor / name
        out.parent.mkdir(exist_ok=True)
        summary = run(Options(output=str(out), executor=executor, progress=False, **kw))  # type: ignore[arg-type]
        assert summary.executor == executor
        errors = Path(str(out) + ".errors.jsonl")
        got[executor] = (out.read_bytes(), errors.read_bytes() if errors.exists() else None)
        assert not Path(str(out) + ".parts").exists()
    return got


@pytest.mark.parametrize(("kind", "out_name"), [("one-group", "out.parquet"), ("groups", "out.csv"),
                                                ("csv", "out.parquet"), ("jsonl", "out.jsonl")])
def test_sharded_same_bytes_as_the_others(tmp_path: Path, onnx_bento: str, kind: str, out_name: str) -> None:
    src = _inputs(tmp_path)[kind]
    keep = ["id"]
    got = _three(tmp_path, out_name, bento=onnx_bento, input=str(src), chunk_rows=96, keep_columns=keep, workers=2)
    assert got["sharded"] == got["inprocess"] == got["workers"]
    table = read_output(tmp_path / "sharded" / out_name)
    assert table.num_rows == 1000
    assert [int(v) for v in table.column("id").to_pylist() if v is not None] == \
        [i for i in range(1000) if not (kind == "jsonl" and i == 5) and not (kind == "csv" and i == 300)]


def test_spawned_shards_share_the_claims(tmp_path: Path, onnx_bento: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where there is no fork (or JUBAKO_SHARD_START=spawn) the shards are fresh interpreters:
    the row-group claims reach them as the process's arguments; same bytes as forked ones."""
    src = _inputs(tmp_path)["groups"]
    outs = {}
    for how in ("fork", "spawn"):
        monkeypatch.setenv("JUBAKO_SHARD_START", how)
        outs[how] = tmp_path / f"{how}.parquet"
        summary = run(Options(bento=onnx_bento, input=str(src), output=str(outs[how]), executor="sharded",
                              chunk_rows=96, keep_columns=["id"], workers=2, progress=False))
        assert (summary.rows, summary.chunks) == (1000, 11)
    assert outs["fork"].read_bytes() == outs["spawn"].read_bytes()


def test_sharded_json_api_and_bad_rows(tmp_path: Path, torch_bento: str) -> None:
    items: list[object] = [{"values": r.tolist()} for r in features(200, seed=1)]
    items[6] = {"values": [0.5] * 3}  # pydantic refuses it, in the executor
    items[70] = {"other": 1}
    src = tmp_path / "items.jsonl"
    src.write_bytes(b"".join(orjson.dumps(i) + b"\n" for i in items) + b"{not json\n")
    got = _three(tmp_path, "labels.jsonl", bento=torch_bento, api="classify", input=str(src), chunk_rows=64,
                 workers=2)
    assert got["sharded"] == got["inprocess"] == got["workers"]
    errors = [orjson.loads(line) for line in (got["sharded"][1] or b"").splitlines()]
    assert [e["row"] for e in errors] == [7, 71, 201]


def test_a_failing_shard_stops_the_run(tmp_path: Path, onnx_bento: str) -> None:
    """A shard that cannot do its part (here: the input is not what the API takes) stops
    the run with the shard's own message, and nothing is left behind."""
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"a": pa.array(["x"] * 10)}), src)
    out = tmp_path / "out.parquet"
    with pytest.raises(Exception, match="takes 16 numbers per row"):
        run(Options(bento=onnx_bento, input=str(src), output=str(out), executor="sharded", workers=2,
                    progress=False))
    assert not out.exists() and not Path(str(out) + ".parts").exists()


ROWS, CHUNK = 40_000, 400


def _children(pid: int) -> list[int]:
    kids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (d / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    kids.append(int(d.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_sharded_coordinator_sigkill_and_resume(tmp_path: Path, onnx_bento: str) -> None:
    """SIGKILL to the coordinator alone: its shards die with it, no output appears, and the
    same command continues after the committed prefix and gives the uninterrupted bytes."""
    src = tmp_path / "in.csv"
    table = feature_table(features(ROWS, seed=3))
    pcsv.write_csv(table, src)
    text = src.read_text().splitlines()
    text[101] = text[101].replace(",", ",nope,", 1).rsplit(",", 1)[0]  # a bad value in row 101
    src.write_text("\n".join(text) + "\n")
    args = [onnx_bento, "--input", str(src), "--keep-columns", "id", "--chunk-rows", str(CHUNK), "--workers", "2"]
    ref = tmp_path / "ref.csv"
    run_cli(*args, "--executor", "inprocess", "--output", str(ref), check_codes=(2,))

    out = tmp_path / "out.csv"
    parts = Path(str(out) + ".parts")
    proc = subprocess.Popen([*jubako_cli(), "run", *args, "--executor", "sharded", "--output", str(out),
                             "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    shards: list[int] = []
    try:
        deadline = time.monotonic() + 180
        while not all((parts / f"done-{i:06d}.json").exists() for i in range(5)):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "no chunk finished"
            time.sleep(0.02)
        shards = _children(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)  # the coordinator only
        proc.wait()
        deadline = time.monotonic() + 20
        while any(_alive(p) for p in shards) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [p for p in shards if _alive(p)], "a shard outlived its coordinator"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if proc.stderr:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert len(shards) >= 2
    assert not out.exists()  # never half-written
    done = {int(p.name[5:11]) for p in parts.glob("done-*")}
    prefix = next(i for i in range(ROWS // CHUNK + 1) if i not in done)
    assert 5 <= prefix < ROWS // CHUNK

    resumed = run_cli(*args, "--executor", "sharded", "--output", str(out), check_codes=(2,))
    assert "resumed after" in resumed.stderr
    n = int(resumed.stderr.split("resumed after ")[1].split(" chunk")[0])
    assert n >= prefix
    assert not parts.exists()
    assert out.read_bytes() == ref.read_bytes()
    assert Path(str(out) + ".errors.jsonl").read_bytes() == Path(str(ref) + ".errors.jsonl").read_bytes()
    got = read_output(out)
    assert got.num_rows == ROWS
    assert np.flatnonzero(np.asarray(got.column("predict_0").is_null())).tolist() == [100]
