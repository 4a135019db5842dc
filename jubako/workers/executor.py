"""Running one wire CALL against the service instance: in a worker process
(``runtime/worker.py``), or in ``jubako run``'s own process (``jubako/batch/inprocess.py``).

Inputs are turned into the API's declared Python types (numpy arrays, torch tensors on
the selected device through pinned host memory, pydantic models, str, bytes); a batch
that raises is re-run request by request so that a bad item fails only its own request.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import orjson
from pydantic import TypeAdapter, ValidationError

from jubako.manifest import JSONSpec, TensorSpec, TextSpec, shape_text
from jubako.service import Api, Service

from . import wire
from .staging import PinnedStaging

log = logging.getLogger("jubako.runtime.worker")

OK = 200


def configure_threads() -> str | None:
    """Explicit thread counts for torch (when installed); returns the torch device.
    Without ``JUBAKO_THREAD_SPINNING=1`` OpenMP's idle threads sleep at once
    (``OMP_WAIT_POLICY=PASSIVE``, read when torch loads, so only if it has not yet)."""
    import os

    from jubako import devices

    threads = devices.num_threads()
    if not devices.thread_spinning():
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import torch
    except ImportError:
        return None
    if threads:
        torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set, or parallel work has started
        pass
    return devices.torch_device()


def _loc(err: dict[str, Any], prefix: str) -> str:
    parts = [prefix]
    for p in err["loc"]:
        parts.append(f"[{p}]" if isinstance(p, int) else f".{p}")
    return "".join(parts)


MAX_REPORTED_ERRORS = 20  # a request with thousands of bad fields gets a bounded answer


def validation_message(e: ValidationError, where: str) -> str:
    """Every error pydantic found, each with its location: ``body[0].values: ...; body[1]...``."""
    errors = e.errors(include_url=False)
    parts = [f"{_loc(err, where)}: {err['msg']}" for err in errors[:MAX_REPORTED_ERRORS]]
    if len(errors) > MAX_REPORTED_ERRORS:
        parts.append(f"and {len(errors) - MAX_REPORTED_ERRORS} more")
    return "; ".join(parts)


class Outcome(NamedTuple):
    """One call's answer before encoding: a status and a segment per request (the encoded
    output, or the error message), the ok requests' rows of a tensor output, and times."""

    statuses: list[int]
    segments: list[bytes]
    tensor: np.ndarray | None
    exec_seconds: float
    wait_seconds: float


class OutputError(Exception):
    """The API returned something its declared output type does not describe."""


class RequestFailed(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class _Torch:
    device: Any
    staging: PinnedStaging | None  # CUDA only


class ApiRunner:
    def __init__(self, api: Api, instance: Any, torch_device: str | None):
        self.api = api
        self.bound = api.func.__get__(instance)
        self.batchable = api.batchable
        self.input = api.input
        self.output = api.output
        self._in_adapter = TypeAdapter(api.input_type) if isinstance(api.input, JSONSpec) else None
        self._out_adapter = TypeAdapter(api.output_type) if isinstance(api.output, JSONSpec) else None
        self._torch: _Torch | None = None
        if isinstance(api.input, TensorSpec) and api.input.container == "torch":
            import torch

            dev = torch.device(torch_device or "cpu")
            staging = None
            if dev.type == "cuda":
                staging = PinnedStaging(
                    alloc=lambda n, dtype: torch.empty(n, dtype=dtype).pin_memory(), new_event=torch.cuda.Event,
                )
            self._torch = _Torch(dev, staging)

    # --- inputs ----------------------------------------------------------------------

    def _to_torch(self, arr: np.ndarray) -> Any:
        import torch

        t = torch.from_numpy(np.ascontiguousarray(arr))
        assert self._torch is not None
        dev = self._torch.device
        if self._torch.staging is None:
            return t
        # through a pinned buffer no queued copy still reads (staging.py), then an
        # asynchronous host->device copy
        return self._torch.staging.stage(t, lambda staged: staged.to(dev, non_blocking=True))

    def _json_items(self, segment: bytes, where: str) -> Any:
        assert self._in_adapter is not None
        try:
            return self._in_adapter.validate_python(orjson.loads(segment))
        except orjson.JSONDecodeError as e:  # the proxy checks, but other callers may not
            raise RequestFailed(400, f"{where}: not valid JSON: {e}") from None
        except ValidationError as e:
            raise RequestFailed(422, validation_message(e, where)) from None

    # --- outputs ---------------------------------------------------------------------

    def _out_array(self, out: Any, items: int | None = None) -> np.ndarray:
        """The API's tensor output as the declared dtype and shape (``items`` rows for a
        batch), or :class:`OutputError`. A dtype numpy casts within its kind (float64 to a
        declared float32, int to float) is converted; anything else is the API's mistake."""
        if not isinstance(out, np.ndarray):
            if hasattr(out, "detach"):  # torch tensor
                out = out.detach().cpu().numpy()
            else:
                try:
                    out = np.asarray(out)
                except ValueError as e:  # ragged lists
                    raise OutputError(f"returned {type(out).__name__} that is not an array: {e}") from None
        spec = self.output
        assert isinstance(spec, TensorSpec)
        want = np.dtype(spec.dtype)
        if out.dtype != want:
            if out.dtype.kind not in "biuf" or not np.can_cast(out.dtype, want, "same_kind"):
                raise OutputError(f"returned dtype {out.dtype.name} where the declared output is {want.name}")
            out = out.astype(want)
        shape = list(spec.shape)
        if items is not None:
            shape[0] = items
        if out.ndim != len(shape) or any(d is not None and d != s for d, s in zip(shape, out.shape, strict=True)):
            rows = f" for {items} item(s)" if items is not None else ""
            raise OutputError(
                f"returned shape {tuple(out.shape)}{rows} where the declared output is {shape_text(spec.shape)}"
            )
        return out

    def _encode_json(self, out: Any) -> bytes:
        assert self._out_adapter is not None
        try:
            return orjson.dumps(self._out_adapter.dump_python(out, mode="json"))
        except Exception as e:  # PydanticSerializationError, or whatever a custom serialiser raises
            raise OutputError(f"returned a value its output type cannot serialise: {type(e).__name__}: {e}") from e

    def _encode_single(self, out: Any) -> tuple[bytes, np.ndarray | None]:
        if isinstance(self.output, TensorSpec):
            return b"", self._out_array(out)
        if isinstance(self.output, JSONSpec):
            return self._encode_json(out), None
        if isinstance(self.output, TextSpec):
            return str(out).encode(), None
        return bytes(out), None

    def _fail(self, e: BaseException) -> bytes:
        """The error message of a request that failed in the API or its output: it names the
        API and the cause (the traceback goes to the worker's log)."""
        if isinstance(e, OutputError):
            log.error("API %r: output: %s", self.api.name, e)
            return f"API {self.api.name!r}: output: {e}".encode()
        return f"API {self.api.name!r}: {_describe(e)}".encode()

    # --- calls -----------------------------------------------------------------------

    async def run(self, call: wire.Call, received: float, pool_call: Any) -> bytes:
        """The RESULT frame for ``call``; ``pool_call(fn, arg)`` runs sync code off-loop.
        Whatever the API does, every request of the call gets a status (see :func:`failed`)."""
        o = await self.execute(call, received, pool_call)
        return wire.encode_result(call.id, o.exec_seconds, o.wait_seconds, o.statuses, o.segments, o.tensor)

    async def execute(self, call: wire.Call, received: float, pool_call: Any) -> Outcome:
        """What :meth:`run` encodes (`jubako run`'s in-process executor reads it as it is)."""
        start = time.perf_counter()
        wait = start - received
        n = len(call.sizes)
        if not self.batchable:
            statuses, segments, tensor = [OK], [b""], None
            try:
                value = self._single_input(call)
                out = await (self.bound(value) if self.api.is_async else pool_call(self.bound, value))
                seg, tensor = self._encode_single(out)
                segments = [seg]
            except RequestFailed as e:
                statuses, segments = [e.status], [str(e).encode()]
            except Exception as e:
                statuses, segments = [500], [self._fail(e)]
            return Outcome(statuses, segments, tensor, time.perf_counter() - start, wait)
        statuses = [OK] * n
        errors: list[bytes] = [b""] * n
        if call.tensor is not None:
            parts = _split_rows(call.tensor, call.sizes)
        else:
            assert call.segments is not None
            parts = []
            for i, seg in enumerate(call.segments):
                try:
                    parts.append(self._json_items(seg, "body"))
                except RequestFailed as e:
                    statuses[i], errors[i] = e.status, str(e).encode()
                    parts.append(None)
        outs = await self._run_batch(parts, statuses, errors, pool_call)
        exec_s = time.perf_counter() - start
        if isinstance(self.output, TensorSpec):
            # every ok part passed _out_array: same dtype and trailing shape, so this joins
            ok = [o for o, s in zip(outs, statuses, strict=True) if s == OK]
            tensor = np.concatenate(ok) if ok else None
            return Outcome(statuses, errors, tensor, exec_s, wait)
        segments = errors
        for i, o in enumerate(outs):
            if statuses[i] == OK:
                try:
                    segments[i] = self._encode_json(o)
                except Exception as e:
                    statuses[i], segments[i] = 500, self._fail(e)
        return Outcome(statuses, segments, None, exec_s, wait)

    def _single_input(self, call: wire.Call) -> Any:
        if call.tensor is not None:
            return self._to_torch(call.tensor) if self._torch else call.tensor
        assert call.segments is not None
        seg = call.segments[0]
        if isinstance(self.input, JSONSpec):
            return self._json_items(seg, "body")
        if isinstance(self.input, TextSpec):
            return seg.decode()
        return seg

    def _join(self, parts: list[Any]) -> Any:
        if isinstance(self.input, TensorSpec):
            arr = parts[0] if len(parts) == 1 else np.concatenate(parts)
            return self._to_torch(arr) if self._torch else arr
        joined: list[Any] = []
        for p in parts:
            joined.extend(p)
        return joined

    def _split(self, out: Any, sizes: list[int]) -> list[Any]:
        if isinstance(self.output, TensorSpec):
            return _split_rows(self._out_array(out, sum(sizes)), sizes)
        try:
            out = list(out)
        except TypeError:
            raise OutputError(f"returned {type(out).__name__}, not a list (one element per item)") from None
        if len(out) != sum(sizes):
            raise OutputError(f"returned {len(out)} elements for {sum(sizes)} item(s)")
        res, pos = [], 0
        for s in sizes:
            res.append(out[pos : pos + s])
            pos += s
        return res

    async def _run_batch(
        self, parts: list[Any], statuses: list[int], errors: list[bytes], pool_call: Any
    ) -> list[Any]:
        idx = [i for i, s in enumerate(statuses) if s == OK]
        outs: list[Any] = [None] * len(parts)
        if not idx:
            return outs
        live = [parts[i] for i in idx]
        sizes = [len(p) for p in live]
        try:
            out = await self._call(self._join(live), pool_call)
            for i, o in zip(idx, self._split(out, sizes), strict=True):
                outs[i] = o
            return outs
        except Exception as e:
            if len(idx) == 1:
                statuses[idx[0]], errors[idx[0]] = 500, self._fail(e)
                return outs
        # the batch failed: run each request alone so only the bad ones fail
        for i in idx:
            try:
                out = await self._call(self._join([parts[i]]), pool_call)
                outs[i] = self._split(out, [len(parts[i])])[0]
            except Exception as e:
                statuses[i], errors[i] = 500, self._fail(e)
        return outs

    def _call(self, value: Any, pool_call: Any) -> Awaitable[Any]:
        if self.api.is_async:
            return self.bound(value)
        return pool_call(self.bound, value)


def failed(call: wire.Call, message: str) -> bytes:
    """A RESULT frame failing every request of ``call`` with 500 (the last resort when
    building the real one raised: the proxy must still get an answer for each)."""
    n = len(call.sizes)
    return wire.encode_result(call.id, 0.0, 0.0, [500] * n, [message.encode()] * n)


def _split_rows(arr: np.ndarray, sizes: tuple[int, ...] | list[int]) -> list[np.ndarray]:
    if len(sizes) == 1:
        return [arr]
    out, pos = [], 0
    for s in sizes:
        out.append(arr[pos : pos + s])
        pos += s
    return out


def _describe(e: BaseException) -> str:
    log.error("API call failed: %s", "".join(traceback.format_exception(e)).rstrip())
    return f"{type(e).__name__}: {e}"


def runners(service: Service, instance: Any, torch_device: str | None) -> dict[str, ApiRunner]:
    return {name: ApiRunner(api, instance, torch_device) for name, api in service.apis.items()}
