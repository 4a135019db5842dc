"""Device selection, shared by torch and onnxruntime: CUDA when present, else CPU.

``JUBAKO_DEVICE`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``) overrides detection, so the GPU
path is the same code as the CPU path, chosen at start.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from functools import cache
from pathlib import Path

from .errors import ConfigError


def requested() -> str:
    value = os.environ.get("JUBAKO_DEVICE", "auto").strip().lower() or "auto"
    if value not in ("auto", "cpu", "cuda") and not value.startswith("cuda:"):
        raise ConfigError(f"JUBAKO_DEVICE={value!r}: use auto, cpu, cuda or cuda:N")
    return value


CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def available_cpus(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int:
    """The CPUs this process can use: those it may run on (a taskset or cpuset narrows
    ``os.cpu_count()``), fewer when a CPU quota caps it (a pod's ``resources.limits.cpu``,
    ``docker run --cpus``): the quota's CPUs rounded down, at least 1, as Go's automaxprocs
    does (more threads than the quota only get the process throttled; torch and
    onnxruntime default to every core of the node, whatever the quota)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root, proc_cgroup)
    return max(1, min(n, math.floor(quota))) if quota is not None else max(1, n)


def cgroup_cpu_quota(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """CPUs' worth of time per period this process may use, or None without a limit: the
    tightest quota of its cgroup and the cgroups above it, cgroup v2 ``cpu.max`` ("max
    100000" or "150000 100000") or v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (-1: no
    limit). The cgroup's path comes from ``/proc/self/cgroup``; in a container whose own
    cgroup is mounted at the root (Docker on cgroup v1) that path is not there, and the
    root's files are the container's."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:  # "0::/path" (v2), "4:cpu,cpuacct:/path" (v1)
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            quota = _tightest(root, path, lambda d: _cpu_max(d / "cpu.max"))
        elif "cpu" in controllers.split(","):
            quota = next((_tightest(root / sub, path, _cfs) for sub in (controllers, "cpu", "cpu,cpuacct")
                          if (root / sub).is_dir()), None)
        else:
            continue
        if quota is not None:
            return quota
    return _cpu_max(root / "cpu.max") or next(filter(None, (_cfs(root / d) for d in ("cpu", "cpu,cpuacct"))), None)


def _tightest(mount: Path, path: str, read: Callable[[Path], float | None]) -> float | None:
    """The smallest quota from the cgroup at ``path`` up to the root of ``mount``."""
    parts = [p for p in path.split("/") if p]
    found = [q for i in range(len(parts), -1, -1) if (q := read(mount.joinpath(*parts[:i]))) is not None]
    return min(found, default=None)


def _cpu_max(f: Path) -> float | None:
    try:
        quota, period = f.read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def _cfs(d: Path) -> float | None:
    try:
        quota_us = int((d / "cpu.cfs_quota_us").read_text())
        period_us = int((d / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us


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
