"""Offline batch throughput: rows/s of `jubako run` versus the model's raw batched
throughput in-process on the same file (issue 9; target >= 0.8x).

    JUBAKO_HOME=/tmp/bench-home .venv/bin/python bench/batch.py --bento mlp-onnx --rows 500000

Builds the example bentos into JUBAKO_HOME when they are missing, writes a Parquet file of
``--rows`` rows x 16 float32 features, then measures

- raw: the file read into one numpy array, the service instantiated in this process, and
  its API called on consecutive slices of max_batch_size rows (no IO, no IPC);
- jubako run: the CLI on the same file (Parquet in, Parquet out), rows/s as it reports
  them (from the first batch to the last chunk written, worker start-up excluded) and
  the wall time of the whole command.

Prints one JSON line per configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def ensure_examples(name: str) -> None:
    from jubako.build import build
    from jubako.store import Store

    store = Store()
    ex = name.replace("-", "_")
    if (ROOT / "examples" / ex).is_dir() and not _has(store, name):
        subprocess.run([sys.executable, str(ROOT / "examples" / ex / "save_model.py")], check=True,
                       capture_output=True)
        build(ROOT / "examples" / ex, store=store)


def _has(store, name: str) -> bool:  # type: ignore[no-untyped-def]
    try:
        store.bentos.get(name)
        return True
    except Exception:
        return False


def raw_rows_per_second(bento: str, x: np.ndarray, batch: int, repeat: int) -> float:
    from jubako.runtime.worker import configure_threads

    import jubako.models
    from jubako.loader import load_service, open_bento

    bundle = open_bento(bento)
    configure_threads()
    service = load_service(bundle)
    with jubako.models.bento_context(bundle.path, bundle.manifest):
        inst = service.create()
    fn = inst.predict
    for i in range(0, min(len(x), 50 * batch), batch):  # warm-up
        fn(x[i : i + batch])
    best = 0.0
    for _ in range(repeat):
        t0 = time.perf_counter()
        for i in range(0, len(x), batch):
            fn(x[i : i + batch])
        best = max(best, len(x) / (time.perf_counter() - t0))
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bento", default="mlp-onnx")
    ap.add_argument("--rows", type=int, default=500_000)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--batch", type=int, default=0, help="max_batch_size override (JUBAKO_BATCHING); 0: the bento's")
    ap.add_argument("--chunk-rows", type=int, default=50_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    ensure_examples(args.bento)
    from jubako.loader import open_bento

    bundle = open_bento(args.bento)
    api = next(a for a in bundle.manifest.apis if a.name == "predict")
    batch = args.batch or (api.batching.max_batch_size if api.batching else 1)
    env = dict(os.environ)
    if args.batch:
        env["JUBAKO_BATCHING"] = json.dumps({"predict": {"max_batch_size": args.batch}})
    import pyarrow as pa
    import pyarrow.parquet as pq

    x = np.random.default_rng(0).standard_normal((args.rows, 16)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.parquet"
        pq.write_table(pa.table({f"f{i}": x[:, i] for i in range(16)}), src)
        x_file = np.stack([c.to_numpy() for c in pq.read_table(src).columns], axis=1)  # the same file
        cmd = [sys.executable, "-c", "from jubako.cli import main; main()", "run", str(bundle.path), "--api",
               "predict", "--input", str(src), "--workers", str(args.workers), "--chunk-rows",
               str(args.chunk_rows), "--no-progress", "--overwrite"]
        runs = []
        for k in range(args.repeat):
            out = Path(tmp) / f"out{k}.parquet"
            t0 = time.perf_counter()
            p = subprocess.run([*cmd, "--output", str(out)], env=env, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if p.returncode:
                sys.exit(p.stderr)
            rate = float(p.stderr.split(" rows/s")[0].rsplit(" ", 1)[1].replace(",", ""))
            runs.append((rate, wall))
        os.environ.update({k: v for k, v in env.items() if k == "JUBAKO_BATCHING"})
        raw = raw_rows_per_second(str(bundle.path), x_file, batch, args.repeat)
    best_rate, best_wall = max(runs)
    print(json.dumps({
        "bento": args.bento, "rows": args.rows, "max_batch_size": batch, "workers": args.workers,
        "chunk_rows": args.chunk_rows, "raw_rows_s": round(raw), "run_rows_s": round(best_rate),
        "run_wall_s": round(best_wall, 2), "run_rows_s_wall": round(args.rows / best_wall),
        "ratio": round(best_rate / raw, 3), "ratio_wall": round(args.rows / best_wall / raw, 3),
        "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
        "date": time.strftime("%Y-%m-%d"),
    }))


if __name__ == "__main__":
    main()
