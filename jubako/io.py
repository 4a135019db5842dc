"""API input/output types: from Python annotations to manifest specs.

Supported annotations:
- ``Tensor[np.float32, (None, 4)]``: a numpy array (``TorchTensor[...]`` for torch tensors),
  ``None`` marks a free dimension; for batchable APIs the first axis is the batch axis.
  Type checkers that dislike the subscript can use the equivalent
  ``Annotated[np.ndarray, TensorSpec(dtype="float32", shape=[None, 4])]``;
- a pydantic model, ``list[Model]``, or any JSON type pydantic understands (dict, list...);
- ``str`` (plain text) and ``bytes`` (raw body), for non-batchable APIs.

Batchable APIs take a batch and return a batch of the same length: a tensor whose first
dimension is free, or a ``list[...]``. A request may carry several items; batches are
counted in items.
"""

from __future__ import annotations

import inspect
import typing
from typing import Annotated, Any

from pydantic import BaseModel, TypeAdapter

from .errors import ServiceDefinitionError
from .manifest import BytesSpec, JSONSpec, TensorSpec, TextSpec

IOSpec = TensorSpec | JSONSpec | TextSpec | BytesSpec


def _shape(shape: Any) -> list[int | None]:
    if isinstance(shape, int) or shape is None:
        shape = (shape,)
    dims = list(shape)
    for d in dims:
        if d is not None and (not isinstance(d, int) or d < 0):
            raise ServiceDefinitionError(f"tensor dimension {d!r} must be a natural number or None")
    return dims


def _dtype(dtype: Any) -> str:
    import numpy as np

    try:
        return np.dtype(dtype).name
    except TypeError:
        raise ServiceDefinitionError(f"unknown tensor dtype {dtype!r}") from None


class _TensorFactory:
    # numpy is imported when a tensor type is first written, not when jubako is imported:
    # the registry and the operator import jubako but never touch tensors.
    def __init__(self, container: str):
        self.container = container

    def __getitem__(self, params: Any) -> Any:
        import numpy as np

        dtype, shape = params if isinstance(params, tuple) and len(params) == 2 else (params, None)
        spec = TensorSpec(dtype=_dtype(dtype), shape=_shape(shape) if shape is not None else [None], container=self.container)
        base = np.ndarray if self.container == "numpy" else Any
        return Annotated[base, spec]


Tensor = _TensorFactory("numpy")
TorchTensor = _TensorFactory("torch")


def spec_for(annotation: Any, *, batchable: bool, where: str) -> IOSpec:
    """The manifest spec of a parameter or return annotation; errors name ``where``."""
    if annotation is inspect.Parameter.empty:
        raise ServiceDefinitionError(f"{where}: missing type annotation")
    if typing.get_origin(annotation) is Annotated:
        for meta in typing.get_args(annotation)[1:]:
            if isinstance(meta, TensorSpec):
                if batchable and (not meta.shape or meta.shape[0] is not None):
                    raise ServiceDefinitionError(
                        f"{where}: a batchable API's tensor needs a free first (batch) dimension,"
                        f" e.g. Tensor[np.{meta.dtype}, (None, ...)]"
                    )
                return meta
        annotation = typing.get_args(annotation)[0]
    if annotation is bytes:
        if batchable:
            raise ServiceDefinitionError(f"{where}: bytes cannot be batched; use list[...] or a tensor")
        return BytesSpec()
    if annotation is str and not batchable:
        return TextSpec()
    if getattr(annotation, "__module__", "") == "numpy" and getattr(annotation, "__name__", "") == "ndarray":
        raise ServiceDefinitionError(f"{where}: say the dtype and shape, e.g. Tensor[np.float32, (None, 4)]")
    if batchable and typing.get_origin(annotation) is not list:
        raise ServiceDefinitionError(
            f"{where}: a batchable API takes and returns a batch: a list[...] or a tensor"
            " with a free first dimension"
        )
    try:
        schema = TypeAdapter(annotation).json_schema()
    except Exception as e:  # pydantic raises several error types for unsupported types
        raise ServiceDefinitionError(f"{where}: unsupported type {annotation!r}: {e}") from None
    model = None
    target = typing.get_args(annotation)[0] if typing.get_origin(annotation) is list else annotation
    if isinstance(target, type) and issubclass(target, BaseModel):
        model = f"{target.__module__}:{target.__qualname__}"
    return JSONSpec(json_schema=schema, model=model)
