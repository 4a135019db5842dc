"""ONNX models, run by onnxruntime on CUDA when present, else CPU."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import JubakoError
from ..manifest import ModelManifest, TensorSignature
from ..store import Bundle, Store
from . import save_files

FILE = "model.onnx"


def _signatures(values: Any) -> list[TensorSignature]:
    from onnx import helper

    out = []
    for v in values:
        t = v.type.tensor_type
        dims: list[int | str | None] = [
            d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim
        ]
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type)).name
        out.append(TensorSignature(name=v.name, dtype=dtype, shape=dims))
    return out


def save(
    name: str,
    model: Any,
    *,
    labels: dict[str, str] | None = None,
    metadata: dict[str, Any] | None = None,
    description: str = "",
    version: str | None = None,
    store: Store | None = None,
) -> Bundle[ModelManifest]:
    """Save an ONNX model given as a path, bytes, or ``onnx.ModelProto``.

    Input and output signatures are read from the graph; the model is checked first.
    """
    import onnx

    if isinstance(model, str | Path):
        proto = onnx.load(str(model))
    elif isinstance(model, bytes):
        proto = onnx.load_from_string(model)
    else:
        proto = model
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as e:
        raise JubakoError(f"invalid ONNX model: {e}") from None
    initializers = {i.name for i in proto.graph.initializer}
    inputs = _signatures(i for i in proto.graph.input if i.name not in initializers)
    outputs = _signatures(proto.graph.output)

    def write(dest: Path) -> None:
        if isinstance(model, str | Path):
            shutil.copyfile(model, dest / FILE)
        else:
            (dest / FILE).write_bytes(proto.SerializeToString())

    return save_files(
        name,
        write,
        framework="onnx",
        framework_version=onnx.__version__,
        format="onnx",
        inputs=inputs,
        outputs=outputs,
        options={"opset": [{"domain": o.domain, "version": o.version} for o in proto.opset_import]},
        labels=labels,
        metadata=metadata,
        description=description,
        version=version,
        store=store,
    )


class OnnxModel:
    """An onnxruntime session with the manifest's signatures; call it with arrays.

    The output contract is explicit, so that an API never returns a list where its
    declared output is one tensor:

    - ``model(*arrays)`` is for a graph with exactly **one** output and returns that
      output's array; on a graph with several outputs it raises, naming them;
    - ``model.outputs(*arrays)`` returns every output as ``{name: array}`` in the graph's
      order, whatever their number;
    - ``model.run(feeds)`` is onnxruntime's own call: input name -> array in, list out.

    Inputs are positional, in the graph's input order (initializers excluded).
    """

    def __init__(self, session: Any, manifest: ModelManifest):
        self.session = session
        self.manifest = manifest
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_names = [o.name for o in session.get_outputs()]

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(self.output_names, feeds)

    def _feeds(self, arrays: tuple[np.ndarray, ...]) -> dict[str, np.ndarray]:
        if len(arrays) != len(self.input_names):
            n = len(self.input_names)
            raise JubakoError(
                f"model {self.manifest.name} takes {n} input{'s' if n != 1 else ''}"
                f" ({', '.join(self.input_names)}), got {len(arrays)}"
            )
        return dict(zip(self.input_names, arrays, strict=True))

    def outputs(self, *arrays: np.ndarray) -> dict[str, np.ndarray]:
        """Every output of the graph by name, in the graph's order."""
        return dict(zip(self.output_names, self.run(self._feeds(arrays)), strict=True))

    def __call__(self, *arrays: np.ndarray) -> np.ndarray:
        """The array of a single-output graph (see the class docstring)."""
        if len(self.output_names) != 1:
            n = len(self.output_names)
            raise JubakoError(
                f"model {self.manifest.name} has {n} outputs ({', '.join(self.output_names)}):"
                " call model.outputs(...) for all of them by name"
            )
        return self.run(self._feeds(arrays))[0]  # type: ignore[no-any-return]


def load_bundle(bundle: Bundle[ModelManifest]) -> OnnxModel:
    import onnxruntime as ort

    from .. import devices

    opts = ort.SessionOptions()
    threads = devices.num_threads()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    # idle pool threads spin-wait by default in onnxruntime, taking the proxy's core
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if devices.thread_spinning() else "0")
    session = ort.InferenceSession(
        str(bundle.path / FILE), sess_options=opts, providers=devices.onnx_providers()
    )
    return OnnxModel(session, bundle.manifest)
