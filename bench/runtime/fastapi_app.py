"""The no-batching baseline: a plain FastAPI endpoint running the model on each request.

    BENCH_MODEL=onnx|encoder uvicorn fastapi_app:app --workers 2 --loop uvloop --http httptools

Same model files and thread rule (intra-op threads = cores / processes), same JSON request
and response as the jubako and BentoML services. The model runs inline in the handler (no
thread hop): the leanest plain endpoint, one request at a time per process.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import orjson
from fastapi import FastAPI, Request, Response

CORES = os.cpu_count() or 1
THREADS = max(1, CORES // int(os.environ.get("BENCH_PROCESSES", "2")))
MODEL = os.environ.get("BENCH_MODEL", "onnx")
SHAPE = (16,) if MODEL == "onnx" else (32, 16)

if MODEL == "onnx":
    import onnxruntime as ort

    _opts = ort.SessionOptions()
    _opts.intra_op_num_threads = THREADS
    _opts.inter_op_num_threads = 1
    _session = ort.InferenceSession(os.environ["BENCH_ONNX"], sess_options=_opts, providers=["CPUExecutionProvider"])
    _name = _session.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        return _session.run(None, {_name: x})[0]
else:
    import torch

    sys.path.insert(0, str(Path(__file__).parent / "encoder"))
    from model import build

    torch.set_num_threads(THREADS)
    torch.set_num_interop_threads(1)
    _model = build()
    _model.load_state_dict(torch.load(os.environ["BENCH_ENCODER_WEIGHTS"], weights_only=True))
    _model.eval()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return _model(torch.from_numpy(x)).numpy()


app = FastAPI()


@app.get("/readyz")
async def readyz() -> Response:
    return Response(b"ready\n")


@app.post("/predict")
async def predict(request: Request) -> Response:
    try:
        x = np.asarray(orjson.loads(await request.body()), dtype=np.float32)
    except (orjson.JSONDecodeError, ValueError, TypeError) as e:
        return Response(orjson.dumps({"error": str(e)}), status_code=400, media_type="application/json")
    if x.ndim != 1 + len(SHAPE) or x.shape[1:] != SHAPE or x.shape[0] < 1:
        return Response(orjson.dumps({"error": f"expected shape (n, {SHAPE})"}), status_code=422,
                        media_type="application/json")
    out = run(x)
    return Response(orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")
