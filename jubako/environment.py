"""Where a bento runs: check the environment against its requirements, or make one that fits.

``check`` compares the installed distributions with the bento's requirement lines (explicit
ones, then the inferred pins). ``ensure_venv`` makes a virtual environment for the bento,
layered on the current one (its packages first, then everything installed here, jubako
included), installs the requirements with pip (from the bento's wheels when it carries them,
else from the configured index), and caches it by a digest of what went into it, so a second
start with the same requirements reuses it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import site
import subprocess
import sys
import venv
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .errors import JubakoError
from .manifest import BentoManifest
from .requirements import resolved, runtime_provided
from .store import Bundle

log = logging.getLogger("jubako.environment")
READY = ".jubako-ready"  # written last: a venv without it is half-made and is made again
PIP_TIMEOUT_S = 900


class RequirementsNotMet(JubakoError):
    """The environment lacks packages the bento needs (or has them at other versions)."""


@dataclass(frozen=True)
class Problem:
    requirement: str
    installed: str | None  # None: not installed

    def __str__(self) -> str:
        if self.installed is None:
            return f"{self.requirement} (not installed)"
        return f"{self.requirement} (installed: {self.installed})"


def relaxed_pins(manifest: BentoManifest) -> dict[str, str]:
    """Inferred pins of distributions the runtime itself provides (numpy, torch...): name ->
    the version the bento was built with. Those run on the runtime's build, whatever its
    version: a laptop's torch must not make every pod download a second torch over the image's
    CUDA one. Explicit lines are never relaxed (pin torch there to insist)."""
    provided = runtime_provided()
    explicit = {canonicalize_name(Requirement(line).name) for line in manifest.python.requirements}
    out = {}
    for line in manifest.python.inferred:
        req = Requirement(line)
        key = canonicalize_name(req.name)
        if key in provided and key not in explicit:
            out[req.name] = str(next(iter(req.specifier)).version) if req.specifier else ""
    return out


def needed(manifest: BentoManifest) -> list[str]:
    """The lines the bento needs here: explicit ones as written, inferred pins (relaxed to the
    name for what the runtime provides)."""
    relaxed = relaxed_pins(manifest)
    lines = resolved(manifest.python.requirements, manifest.python.inferred)
    return [Requirement(line).name if Requirement(line).name in relaxed else line for line in lines]


def check(lines: list[str], version: Callable[[str], str] = metadata.version) -> list[Problem]:
    """The requirement lines the environment does not satisfy (markers are honoured)."""
    problems = []
    for line in lines:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate():
            continue
        try:
            installed = version(req.name)
        except metadata.PackageNotFoundError:
            problems.append(Problem(line, None))
            continue
        if req.specifier and not req.specifier.contains(installed, prereleases=True):
            problems.append(Problem(line, installed))
    return problems


def refusal(bundle: Bundle[BentoManifest], problems: list[Problem]) -> RequirementsNotMet:
    listed = "; ".join(str(p) for p in problems)
    return RequirementsNotMet(
        f"{bundle.manifest.tag} needs packages this environment lacks: {listed}."
        " Install them, or run with --install (JUBAKO_INSTALL=1) to make a virtual environment"
        " for this bento"
    )


def digest(bundle: Bundle[BentoManifest]) -> str:
    """What the venv depends on: this interpreter and environment, the lines, the wheels."""
    m = bundle.manifest
    sha = {f.path: f.sha256 for f in m.files}
    data = {
        "python": sys.version,
        "base": sys.prefix,
        "requirements": needed(m),
        "wheels": [sha.get(w, w) for w in m.python.wheels],
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:32]


def _python(root: Path) -> Path:
    return root / "bin" / "python"


def _site_packages(root: Path) -> Path:
    return root / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"


def ensure_venv(bundle: Bundle[BentoManifest], cache: Path) -> Path:
    """The python of a venv that satisfies the bento (made on first use); raises with pip's error."""
    root = cache / digest(bundle)
    if (root / READY).is_file():
        return _python(root)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f".{root.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        venv.EnvBuilder(with_pip=False, symlinks=True).create(tmp)
        # Layered, not copied: this environment's site folders come after the venv's own, so
        # the bento's packages win and everything else (jubako, torch) is shared. addsitedir
        # also runs their .pth files (an editable jubako needs them).
        layers = [p for p in site.getsitepackages() if Path(p).is_dir()]
        (_site_packages(tmp) / "_jubako_layers.pth").write_text(
            "".join(f"import site; site.addsitedir({p!r})\n" for p in layers)
        )
        _pip_install(bundle, tmp)
        (tmp / READY).write_text(json.dumps({"bento": str(bundle.manifest.tag), "lines": needed(bundle.manifest)}))
        try:
            tmp.rename(root)
        except OSError:
            if not (root / READY).is_file():  # another start made it at the same moment
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _python(root)


def _pip_install(bundle: Bundle[BentoManifest], target: Path) -> None:
    m = bundle.manifest
    lines = needed(m)
    if not lines:
        return
    source: list[str] = []
    if m.python.wheels:  # carried for clusters without an index: never reach out then
        source = ["--no-index", "--find-links", str(bundle.path / "wheels")]
    cmd = [
        sys.executable, "-m", "pip", "--python", str(_python(target)), "install", "--no-input",
        "--disable-pip-version-check", *source, *lines,
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise RequirementsNotMet(f"pip install for {m.tag}: no answer in {PIP_TIMEOUT_S} s") from None
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise RequirementsNotMet(f"cannot install the requirements of {m.tag} ({', '.join(lines)}): pip says: {tail}")


ENV_LINK = "env"  # <deps>/env: the environment a pod's worker runs with (bin/python3)
TERMINATION_MESSAGE_BYTES = 4096  # what Kubernetes keeps of a container's termination message


def install_for_pod(bundle: Bundle[BentoManifest], deps: Path) -> Path:
    """The operator's init container: point ``deps/env`` at an environment that satisfies the
    bento (this one, or its venv made under ``deps``); the worker runs ``deps/env/bin/python3``.

    A link to the environment's folder, not to its python: Python finds a venv by the
    ``pyvenv.cfg`` next to the folder of the path it was started by, before resolving links.
    """
    python = Path(prepare(bundle, install=True, cache=deps))
    target = python.parent.parent if python != Path(sys.executable) else Path(sys.prefix)
    deps.mkdir(parents=True, exist_ok=True)  # a pod mounts it; elsewhere it may not exist yet
    link = deps / ENV_LINK
    tmp = deps / f".{ENV_LINK}.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target, target_is_directory=True)
    tmp.replace(link)  # atomic: a restarted init container never leaves a broken link
    return link / "bin" / "python3"


def write_termination_message(path: Path, message: str) -> None:
    """Kubernetes shows this file's content in the container's terminated state."""
    try:
        path.write_bytes(message.encode()[: TERMINATION_MESSAGE_BYTES - 1])
    except OSError:
        pass  # not in a pod (or not writable): the message is on stderr anyway


def prepare(bundle: Bundle[BentoManifest], install: bool, cache: Path) -> str:
    """The python the bento's workers run with: this one when it satisfies the bento, else the
    bento's venv when ``install``; otherwise refuse, naming every missing or mismatched package."""
    python_here = f"{sys.version_info.major}.{sys.version_info.minor}"
    built_on = bundle.manifest.python.version
    if built_on and built_on != python_here:  # pins and wheels may not fit: say so, try anyway
        log.warning(f"{bundle.manifest.tag} was built on Python {built_on}; this is Python {python_here}",
                    extra={"bento": str(bundle.manifest.tag), "built": built_on, "installed": python_here})
    for name, built in relaxed_pins(bundle.manifest).items():
        with contextlib.suppress(metadata.PackageNotFoundError):
            here = metadata.version(name)
            if built and here != built:
                log.warning(
                    f"{bundle.manifest.tag} was built with {name}=={built}; it runs on this"
                    f" environment's {here}",
                    extra={"bento": str(bundle.manifest.tag), "package": name, "built": built, "installed": here},
                )
    problems = check(needed(bundle.manifest))
    if not problems:
        return sys.executable
    if not install:
        raise refusal(bundle, problems)
    return str(ensure_venv(bundle, cache))
