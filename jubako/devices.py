"""Device selection, shared by torch and onnxruntime: CUDA when present, else CPU.

``JUBAKO_DEVICE`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``) overrides detection, so the GPU
path is the same code as the CPU path, chosen at start.
"""

from __future__ import annotations

import os
from functools import cache

from .errors import ConfigError


def requested() -> str:
    value = os.environ.get("JUBAKO_DEVICE", "auto").strip().lower() or "auto"
    if value not in ("auto", "cpu", "cuda") and not value.startswith("cuda:"):
        raise ConfigError(f"JUBAKO_DEVICE={value!r}: use auto, cpu, cuda or cuda:N")
    return value


def num_threads() -> int:
    """Intra-op threads for torch and onnxruntime (``JUBAKO_NUM_THREADS``; 0 = library default)."""
    try:
        return max(0, int(os.environ.get("JUBAKO_NUM_THREADS", "0")))
    except ValueError:
        raise ConfigError("JUBAKO_NUM_THREADS must be an integer") from None


def thread_spinning() -> bool:
    """Whether idle intra-op threads may spin-wait (``JUBAKO_THREAD_SPINNING``; off by default)."""
    return os.environ.get("JUBAKO_THREAD_SPINNING", "0").strip().lower() in ("1", "true", "yes", "on")


@cache
def _torch_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def torch_device() -> str:
    want = requested()
    if want == "auto":
        return "cuda" if _torch_cuda() else "cpu"
    if want.startswith("cuda") and not _torch_cuda():
        raise ConfigError(f"JUBAKO_DEVICE={want} but torch sees no CUDA device")
    return want


def onnx_providers() -> list[str | tuple[str, dict[str, str]]]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    want = requested()
    has_cuda = "CUDAExecutionProvider" in available
    if want.startswith("cuda") and not has_cuda:
        raise ConfigError(f"JUBAKO_DEVICE={want} but onnxruntime has no CUDAExecutionProvider")
    if want != "cpu" and has_cuda:
        device_id = want.split(":", 1)[1] if ":" in want else "0"
        return [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]
