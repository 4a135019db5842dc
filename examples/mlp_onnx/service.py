"""Serve the MLP exported to ONNX with onnxruntime (CUDA provider when present)."""

from __future__ import annotations

import numpy as np

import jubako
from jubako import Tensor


@jubako.service(name="mlp-onnx", models=["mlp-onnx:latest"])
class MLPOnnx:
    def __init__(self) -> None:
        self.model = jubako.models.load("mlp-onnx")

    @jubako.api(batchable=True, max_batch_size=64, max_latency_ms=50)
    def predict(self, x: Tensor[np.float32, (None, 16)]) -> Tensor[np.float32, (None, 4)]:
        """Class probabilities for each row of ``x``."""
        return self.model(np.ascontiguousarray(x, dtype=np.float32))
