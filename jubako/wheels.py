"""Wheels a bento carries (``jubako build --wheels``), for clusters without a package index.

Only what the runtime image does not already provide: the requirements, and their
dependencies, minus the closure of the image's own distributions. pip resolves from the index
configured where the bento is built (pip's own config and ``PIP_*`` variables), with the
versions installed here as constraints, so the wheels are what the build was tested with.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from .errors import ConfigError
from .requirements import runtime_provided

WHEELS_DIR = "wheels"
PIP_TIMEOUT_S = 900  # a whole resolution and download; pip's own timeout bounds each request


def _installed_constraints(skip: set[str]) -> str:
    lines = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if not name or canonicalize_name(name) in skip:
            continue
        try:
            Version(dist.version)
        except InvalidVersion:
            continue
        lines[canonicalize_name(name)] = f"{name}=={dist.version}"
    return "\n".join(lines[k] for k in sorted(lines)) + "\n"


def collect(lines: list[str], dest: Path) -> list[str]:
    """Write the wheels ``lines`` need beyond the runtime image into ``dest/wheels``.

    Returns their paths relative to ``dest``, sorted. Raises ConfigError with pip's message.
    """
    provided = runtime_provided()
    wanted = [line for line in lines if canonicalize_name(Requirement(line).name) not in provided]
    if not wanted:
        return []
    named = {canonicalize_name(Requirement(line).name) for line in lines} | {"jubako"}
    with tempfile.TemporaryDirectory(prefix="jubako-wheels-") as tmp:
        constraints = Path(tmp) / "constraints.txt"
        constraints.write_text(_installed_constraints(named))
        out = Path(tmp) / "out"
        cmd = [
            sys.executable, "-m", "pip", "wheel", "--no-input", "--disable-pip-version-check",
            "--wheel-dir", str(out), "--constraint", str(constraints), *wanted,
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise ConfigError(f"pip wheel {' '.join(wanted)}: no answer in {PIP_TIMEOUT_S} s") from None
        if proc.returncode != 0:
            tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
            raise ConfigError(f"cannot get the wheels of {', '.join(wanted)}: pip says: {tail}")
        (dest / WHEELS_DIR).mkdir(parents=True, exist_ok=True)
        kept = []
        for wheel in sorted(out.glob("*.whl")):
            try:
                name = parse_wheel_filename(wheel.name)[0]
            except InvalidWheelFilename:
                continue
            if name in provided:
                continue  # the image has it: installing another copy would shadow the image's
            shutil.copyfile(wheel, dest / WHEELS_DIR / wheel.name)
            kept.append(f"{WHEELS_DIR}/{wheel.name}")
        return kept
