"""A small MLP classifier (16 features -> 4 classes) with weights made here, never downloaded."""

from __future__ import annotations

import torch
from torch import nn

FEATURES = 16
CLASSES = 4


class MLP(nn.Module):
    def __init__(self, features: int = FEATURES, hidden: int = 64, classes: int = CLASSES):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x), dim=-1)


def build(hidden: int = 64) -> MLP:
    return MLP(hidden=hidden)


def trained(seed: int = 0, steps: int = 200) -> MLP:
    """Fit the MLP to a synthetic task (the class is the argmax of 4 fixed projections)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    proj = torch.randn(FEATURES, CLASSES, generator=g)
    model = build()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        x = torch.randn(256, FEATURES, generator=g)
        loss = nn.functional.nll_loss(torch.log(model(x) + 1e-9), (x @ proj).argmax(dim=1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()
