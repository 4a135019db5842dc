"""Module factories importable by tests (state_dict models need an importable factory)."""

import torch
from torch import nn


def tiny(width: int = 3) -> nn.Module:
    return nn.Sequential(nn.Linear(4, width), nn.Tanh(), nn.Linear(width, 2))


def seeded(width: int = 3) -> nn.Module:
    torch.manual_seed(7)
    return tiny(width)
