"""The physical limit: the model's batched throughput in-process, no serving at all.

    python raw_throughput.py onnx|encoder SECONDS  -> one JSON line {"items_per_s": ...}

Batches of 64 items, intra-op threads = all cores (inter-op 1), for SECONDS after a
warm-up; the same weights and inputs as the served runs.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import orjson

CORES = os.cpu_count() or 1


def main() -> None:
    which, seconds = sys.argv[1], float(sys.argv[2])
    threads = int(os.environ.get("BENCH_RAW_THREADS", str(CORES)))
    rng = np.random.default_rng(0)
    if which == "onnx":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        s = ort.InferenceSession(os.environ["BENCH_ONNX"], sess_options=opts, providers=["CPUExecutionProvider"])
        name = s.get_inputs()[0].name
        x = rng.standard_normal((64, 16)).astype(np.float32)

        def step() -> None:
            s.run(None, {name: x})
    else:
        import torch

        sys.path.insert(0, str(Path(__file__).parent / "encoder"))
        from model import build

        torch.set_num_threads(threads)
        torch.set_num_interop_threads(1)
        m = build()
        m.load_state_dict(torch.load(os.environ["BENCH_ENCODER_WEIGHTS"], weights_only=True))
        m.eval()
        x = torch.from_numpy(rng.standard_normal((64, 32, 16)).astype(np.float32))

        def step() -> None:
            with torch.inference_mode():
                m(x)
    for _ in range(3):
        step()
    t0 = time.perf_counter()
    n = 0
    while time.perf_counter() - t0 < seconds:
        step()
        n += 64
    dt = time.perf_counter() - t0
    print(orjson.dumps({"model": which, "threads": threads, "batch": 64, "items_per_s": n / dt}).decode())


if __name__ == "__main__":
    main()
