"""Generate the encoder's weights (seeded) and save them in the jubako store as bench-encoder;
``--weights PATH`` also writes the state_dict for the BentoML twin."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import torch  # noqa: E402
from model import CLASSES, FEATURES, TOKENS, generated  # noqa: E402

import jubako  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", type=Path)
    args = ap.parse_args()
    model = generated()
    bundle = jubako.models.torch.save(
        "bench-encoder", model, factory="model:build",
        inputs=[("x", "float32", [None, TOKENS, FEATURES])],
        outputs=[("probabilities", "float32", [None, CLASSES])],
        labels={"bench": "true"}, description="benchmark: 4-layer transformer encoder, seeded weights",
    )
    if args.weights:
        torch.save(model.state_dict(), args.weights)
    print(bundle.tag)


if __name__ == "__main__":
    main()
