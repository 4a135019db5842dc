"""Export the example MLP from torch to ONNX (locally) and save it as mlp-onnx."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "mlp_torch"))

import torch  # noqa: E402
from model import FEATURES, trained  # noqa: E402

import jubako  # noqa: E402


def export(model: torch.nn.Module, path: Path) -> None:
    example = (torch.randn(2, FEATURES),)
    batch = torch.export.Dim("batch", min=1, max=4096)
    torch.onnx.export(
        model, example, str(path), input_names=["x"], output_names=["probabilities"],
        dynamic_shapes={"x": {0: batch}}, dynamo=True, external_data=False, verbose=False,
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mlp.onnx"
        export(trained(), path)
        bundle = jubako.models.onnx.save(
            "mlp-onnx",
            path,
            labels={"task": "classification", "example": "true"},
            description="the mlp-torch example exported to ONNX",
        )
    print(bundle.tag)


if __name__ == "__main__":
    main()
