"""Serve the MLP with torch: a batchable tensor API and a JSON API."""

from __future__ import annotations

import numpy as np
import torch
from pydantic import BaseModel, Field

import jubako
from jubako import Tensor


class Features(BaseModel):
    values: list[float] = Field(min_length=16, max_length=16, description="16 features")


class Prediction(BaseModel):
    label: int
    probability: float


@jubako.service(name="mlp-torch", models=["mlp-torch:latest"])
class MLPTorch:
    def __init__(self) -> None:
        self.model = jubako.models.load("mlp-torch")
        self.device = next(self.model.parameters()).device

    @jubako.api(batchable=True, max_batch_size=64, max_latency_ms=50)
    def predict(self, x: Tensor[np.float32, (None, 16)]) -> Tensor[np.float32, (None, 4)]:
        """Class probabilities for each row of ``x``."""
        with torch.inference_mode():
            return self.model(torch.from_numpy(x).to(self.device)).cpu().numpy()

    @jubako.api(batchable=True, max_batch_size=64, max_latency_ms=50)
    def classify(self, items: list[Features]) -> list[Prediction]:
        """The most likely class of each item."""
        x = np.asarray([i.values for i in items], dtype=np.float32)
        probs = self.predict(x)
        return [Prediction(label=int(p.argmax()), probability=float(p.max())) for p in probs]
