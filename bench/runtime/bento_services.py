"""The BentoML 1.4 twins of the jubako services, for the benchmark only (BentoML is not a
jubako dependency; this file runs in bench/.venv-bentoml).

Same model files, same thread settings (intra-op threads = cores / workers, inter-op 1),
same JSON request (a bare array whose first axis is the batch: a positional-only argument
is BentoML's root input) and the same JSON response (the output array), batching with
``max_batch_size=64`` and ``max_latency_ms`` = the SLO. ``BENCH_BENTO_WORKERS`` unset means
BentoML's defaults for the service; set, it is the tuned run (``workers`` and ``threads``).

    cd bench/runtime && BENCH_ONNX=... bentoml serve bento_services:MLPOnnx --port 3000
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import bentoml
import numpy as np
from bentoml.validators import DType, Shape

CORES = os.cpu_count() or 1
_WORKERS = os.environ.get("BENCH_BENTO_WORKERS")
CONFIG: dict = {}
if _WORKERS:  # tuned for this machine: one worker per core, one API thread each
    CONFIG = {"workers": int(_WORKERS), "threads": int(os.environ.get("BENCH_BENTO_THREADS", "1"))}
THREADS = max(1, CORES // int(_WORKERS or 1))  # the same rule as `jubako serve`


@bentoml.service(**CONFIG)
class MLPOnnx:
    def __init__(self) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = THREADS
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(os.environ["BENCH_ONNX"], sess_options=opts,
                                            providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    @bentoml.api(batchable=True, max_batch_size=64, max_latency_ms=50)
    def predict(
        self, x: Annotated[np.ndarray, Shape((-1, 16)), DType("float32")], /
    ) -> Annotated[np.ndarray, Shape((-1, 4)), DType("float32")]:
        return self.session.run(None, {self.input: np.ascontiguousarray(x, dtype=np.float32)})[0]


@bentoml.service(**CONFIG)
class BenchEncoder:
    def __init__(self) -> None:
        import torch

        sys.path.insert(0, str(Path(__file__).parent / "encoder"))
        from model import build

        torch.set_num_threads(THREADS)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass
        self.torch = torch
        self.model = build()
        self.model.load_state_dict(torch.load(os.environ["BENCH_ENCODER_WEIGHTS"], weights_only=True))
        self.model.eval()

    @bentoml.api(batchable=True, max_batch_size=64, max_latency_ms=200)
    def predict(
        self, x: Annotated[np.ndarray, Shape((-1, 32, 16)), DType("float32")], /
    ) -> Annotated[np.ndarray, Shape((-1, 4)), DType("float32")]:
        with self.torch.inference_mode():
            return self.model(self.torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()
