"""Train the example MLP on synthetic data and save it in the local store as mlp-torch."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from model import CLASSES, FEATURES, trained  # noqa: E402

import jubako  # noqa: E402


def main() -> None:
    model = trained()
    bundle = jubako.models.torch.save(
        "mlp-torch",
        model,
        factory="model:build",
        inputs=[("x", "float32", [None, FEATURES])],
        outputs=[("probabilities", "float32", [None, CLASSES])],
        labels={"task": "classification", "example": "true"},
        description="16-feature, 4-class MLP trained on synthetic data",
    )
    print(bundle.tag)


if __name__ == "__main__":
    main()
