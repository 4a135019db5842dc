"""A file larger than the memory bound is streamed in chunks: the peak RSS of `jubako run`
and of its workers stays far below the file's size, and within a few MiB of a run over a
file 6 times smaller (flat). The smaller file still spans several chunks, so both runs have
reached the steady state of chunks in flight (a file under one chunk does not: with the
in-process executor the 12 MiB chunks of this file, read ahead and parsed, are ~60 MiB that a
sub-chunk file never holds, whatever the file's size; measured 232 MiB at 10 000 rows and
225 MiB at 60 000)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .conftest import jubako_cli

ROWS = 60_000
PAYLOAD = 6000  # bytes of text per row that the model never sees: ~360 MB of CSV
SMALL_ROWS = 10_000  # five chunks of 2000 rows
GROWTH = 32 << 20  # bytes the peak may grow by from the small file to the large one


def _write(path: Path, rows: int) -> int:
    feats = ",".join(f"0.{i}" for i in range(16))
    pad = "x" * PAYLOAD
    with open(path, "w") as f:
        f.write("id," + ",".join(f"f{i}" for i in range(16)) + ",note\n")
        block = "".join(f"{i},{feats},{pad}\n" for i in range(1000))
        for _ in range(rows // 1000):
            f.write(block)
    return path.stat().st_size


def _peak(tmp_path: Path, bento: str, src: Path, rows: int) -> int:
    out = tmp_path / (src.stem + ".parquet")
    # a small parent that runs the command and reports the largest RSS among its
    # descendants (ru_maxrss of RUSAGE_CHILDREN: the coordinator and the workers it reaped)
    probe = (
        "import json, resource, subprocess, sys\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "print(json.dumps({'rc': p.returncode, 'err': p.stderr[-2000:],"
        " 'maxrss_kb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))\n"
    )
    cmd = [*jubako_cli(), "run", bento, "--input", str(src), "--output", str(out), "--columns",
           ",".join(f"f{i}" for i in range(16)), "--chunk-rows", "2000", "--no-progress"]
    proc = subprocess.run([sys.executable, "-c", probe, *cmd], capture_output=True, text=True, timeout=300)
    report = json.loads(proc.stdout)
    assert report["rc"] == 0, report["err"]
    assert f"{rows:,} rows ({rows:,} ok" in report["err"]
    return int(report["maxrss_kb"]) * 1024


def test_flat_memory_on_a_large_file(tmp_path: Path, onnx_bento: str) -> None:
    small, big = tmp_path / "small.csv", tmp_path / "big.csv"
    _write(small, SMALL_ROWS)
    size = _write(big, ROWS)
    base = _peak(tmp_path, onnx_bento, small, SMALL_ROWS)
    peak = _peak(tmp_path, onnx_bento, big, ROWS)
    print(f"file {size >> 20} MiB: peak RSS {peak >> 20} MiB (small file: {base >> 20} MiB)")
    assert peak < base + GROWTH
    assert peak + (64 << 20) < size
