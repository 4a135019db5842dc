"""Start a runtime role from its settings: what ``jubako serve``, ``jubako runtime
proxy|worker`` and ``python -m jubako.runtime`` share once their flags are parsed.

Each builds the one :class:`~jubako.runtime_settings.RuntimeSettings` (flags > environment
> config file), checks the per-API sections against the bento before anything starts, and
hands the config file on to the processes it starts (``JUBAKO_CONFIG``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from jubako.errors import ConfigError
from jubako.runtime_settings import CONFIG_ENV, RuntimeSettings, batching, cpu_plan, parse_workers


def settings(config: str | Path | None, **flags: Any) -> RuntimeSettings:
    """The settings, with the file named on the command line passed on to child processes
    and the values that code outside the runtime reads from the environment exported."""
    s = RuntimeSettings.load(config, **flags)
    if config:
        os.environ[CONFIG_ENV] = str(Path(config).resolve())
    s.export_env()
    return s


def _bento(s: RuntimeSettings) -> str:
    if not s.bento:
        raise ConfigError("--bento (or JUBAKO_BENTO, or bento: in the config file) is required")
    return s.bento


def serve(bento: str, config: str | Path | None, host: str, install: bool, **flags: Any) -> None:
    from jubako.loader import open_bento

    from .serve import serve as do_serve

    s = settings(config, **flags)
    batching(open_bento(bento).manifest, s)  # a section naming no API of the bento: refuse now
    # the CPU rule for what is not given; on a GPU one worker unless told (each would hold
    # its own CUDA context and copy of the models)
    plan = cpu_plan(cores(), s.num_workers or (1 if _gpu(s.device) else 0), s.num_threads)
    os.environ["JUBAKO_NUM_THREADS"] = str(plan.threads)  # the workers' environment inherits it
    do_serve(bento, port=s.port, workers=plan.workers, host=host, install=install, proxies=s.num_proxies)


def cores() -> int:
    """The CPUs this process can use (affinity, and a container's CPU quota)."""
    from jubako.devices import available_cpus

    return available_cpus()


def _gpu(device: str) -> bool:
    """Whether the workers will use a GPU, without importing torch here: asked for, or
    ``auto`` on a machine with an NVIDIA driver."""
    return device.startswith("cuda") or (device == "auto" and os.path.exists("/dev/nvidiactl"))


def proxy(config: str | Path | None, host: str, **flags: Any) -> None:
    from .proxy import run

    s = settings(config, **flags)
    run(_bento(s), s.port, parse_workers(s.workers), host)


def worker(config: str | Path | None, host: str, **flags: Any) -> None:
    from .worker import run

    s = settings(config, **flags)
    if not s.num_threads:  # one worker per pod: its intra-op threads fill the pod's CPUs
        os.environ["JUBAKO_NUM_THREADS"] = str(cores())
    run(_bento(s), s.worker_port, s.worker_http_port, host)
