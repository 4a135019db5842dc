"""The compute-bound benchmark model: a 4-layer transformer encoder over 32 tokens of 16
features, pooled to 4 class probabilities. Weights are generated here (seeded), never
downloaded. Each item costs a few ms of CPU, so serving overhead per request is small
next to the model and batching can only help by keeping the cores busy."""

from __future__ import annotations

import torch
from torch import nn

TOKENS = 32
FEATURES = 16
CLASSES = 4
D_MODEL = 256
LAYERS = 4


class Encoder(nn.Module):
    def __init__(self, d_model: int = D_MODEL, layers: int = LAYERS, heads: int = 4):
        super().__init__()
        self.embed = nn.Linear(FEATURES, d_model)
        self.pos = nn.Parameter(torch.zeros(1, TOKENS, d_model))
        layer = nn.TransformerEncoderLayer(d_model, heads, dim_feedforward=4 * d_model, dropout=0.0,
                                           batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(self.embed(x) + self.pos)
        return torch.softmax(self.head(h.mean(dim=1)), dim=-1)


def build() -> Encoder:
    return Encoder()


def generated(seed: int = 0) -> Encoder:
    """Seeded random weights (the benchmark measures speed, not accuracy)."""
    torch.manual_seed(seed)
    model = build()
    with torch.no_grad():
        model.pos.normal_(0, 0.02)
    return model.eval()
