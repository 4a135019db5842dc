"""The compute-bound benchmark model served by jubako (the BentoML twin is bench/runtime/bento_encoder.py)."""

from __future__ import annotations

import numpy as np
import torch

import jubako
from jubako import Tensor


@jubako.service(name="bench-encoder", models=["bench-encoder:latest"])
class BenchEncoder:
    def __init__(self) -> None:
        self.model = jubako.models.load("bench-encoder")
        self.device = next(self.model.parameters()).device

    @jubako.api(batchable=True, max_batch_size=64, max_latency_ms=200)
    def predict(self, x: Tensor[np.float32, (None, 32, 16)]) -> Tensor[np.float32, (None, 4)]:
        """Class probabilities for each sequence of ``x`` (32 tokens x 16 features)."""
        with torch.inference_mode():
            return self.model(torch.from_numpy(x).to(self.device)).cpu().numpy()
