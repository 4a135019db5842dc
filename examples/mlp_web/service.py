"""The ONNX MLP with a small web page bundled with the service.

``static="web"`` names the folder next to this file: ``jubako build`` carries it in the
bento (each file listed with size and sha256) and the proxy serves it under ``/ui/``, so
the page and the API it calls are versioned, pushed and deployed together.
"""

from __future__ import annotations

import numpy as np

import jubako
from jubako import Tensor


@jubako.service(name="mlp-web", models=["mlp-onnx:latest"], static="web")
class MLPWeb:
    def __init__(self) -> None:
        self.model = jubako.models.load("mlp-onnx")

    @jubako.api(batchable=True, max_batch_size=64, max_latency_ms=50)
    def predict(self, x: Tensor[np.float32, (None, 16)]) -> Tensor[np.float32, (None, 4)]:
        """Class probabilities for each row of ``x``."""
        return self.model(np.ascontiguousarray(x, dtype=np.float32))
