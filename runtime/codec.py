"""HTTP bodies <-> batch items, from the manifest's IO specs alone (the proxy never
imports the service or its frameworks).

Request bodies: a tensor API takes a JSON array whose shape is the declared shape (a
batchable API's first axis is the batch: ``[[...16 floats...], ...]`` is that many
items); a JSON API takes JSON (a batchable one a list, one item per element); text and
bytes APIs take the raw body. Tensor validation is numpy's (one C call per request, no
Python object per element survives); JSON APIs are validated by their pydantic type in
the worker, whose message names the field.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from jubako.manifest import ApiSpec, BytesSpec, JSONSpec, TensorSpec, TextSpec, shape_text

JSON = b"application/json"
TEXT = b"text/plain; charset=utf-8"
OCTETS = b"application/octet-stream"
_NUMPY = orjson.OPT_SERIALIZE_NUMPY


class InputError(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class ApiCodec:
    """How one API's requests become wire payloads and results become responses."""

    def __init__(self, spec: ApiSpec):
        self.spec = spec
        self.batchable = spec.batchable
        self.input = spec.input
        self.output = spec.output
        self.tensor_in = isinstance(spec.input, TensorSpec)
        self.json_in = isinstance(spec.input, TensorSpec | JSONSpec)  # the body is JSON
        self.tensor_out = isinstance(spec.output, TensorSpec)
        if isinstance(spec.output, TensorSpec | JSONSpec):
            self.content_type = JSON
        elif isinstance(spec.output, TextSpec):
            self.content_type = TEXT
        else:
            self.content_type = spec.output.content_type.encode()
        if self.tensor_in:
            t = spec.input
            self._dtype = np.dtype(t.dtype)
            self._shape = t.shape
            self._fixed = [(i, d) for i, d in enumerate(t.shape) if d is not None]

    def decode(self, body: bytes) -> tuple[int, Any]:
        """(item count, payload) of a request body; raises :class:`InputError`."""
        spec = self.input
        if isinstance(spec, TensorSpec):
            return self._decode_tensor(body)
        if isinstance(spec, JSONSpec):
            try:
                value = orjson.loads(body)
            except orjson.JSONDecodeError as e:
                raise InputError(f"body: not valid JSON: {e}") from None
            if self.batchable:
                if not isinstance(value, list) or not value:
                    raise InputError("body: expected a non-empty JSON array (one element per item)", 422)
                return len(value), body
            return 1, body
        if isinstance(spec, TextSpec):
            try:
                body.decode()
            except UnicodeDecodeError:
                raise InputError("body: not valid UTF-8 text") from None
            return 1, body
        assert isinstance(spec, BytesSpec)
        return 1, body

    def _decode_tensor(self, body: bytes) -> tuple[int, np.ndarray]:
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise InputError(f"body: not valid JSON: {e}") from None
        try:
            arr = np.asarray(value)
        except ValueError:
            raise InputError(
                f"body: expected an array of shape {shape_text(self._shape)}; rows have different lengths", 422
            ) from None
        if arr.dtype.kind not in "biuf" or (arr.dtype.kind == "f" and self._dtype.kind in "biu"):
            if not (arr.size == 0 and arr.dtype.kind == "f"):
                raise InputError(f"body: expected {self._dtype.name} numbers, got {_kind(value)}", 422)
        if arr.ndim != len(self._shape) or any(arr.shape[i] != d for i, d in self._fixed):
            raise InputError(
                f"body: expected an array of shape {shape_text(self._shape)}, got {tuple(arr.shape)}", 422
            )
        if self.batchable and arr.shape[0] == 0:
            raise InputError("body: the batch is empty", 422)
        arr = arr.astype(self._dtype, copy=False)
        return (arr.shape[0] if self.batchable else 1), arr

    def encode_tensor(self, arr: np.ndarray) -> bytes:
        return orjson.dumps(arr, option=_NUMPY)


def _kind(value: Any) -> str:
    while isinstance(value, list) and value:
        value = value[0]
    return type(value).__name__


def is_json_type(content_type: bytes) -> bool:
    """``application/json`` or any ``+json`` media type, whatever its parameters."""
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


def error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})
