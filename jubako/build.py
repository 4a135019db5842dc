"""``jubako build``: from a project folder and its build config to a bento in the store."""

from __future__ import annotations

import fnmatch
import glob
import platform
import shutil
import tomllib
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from . import manifest as manifests
from .bundle import file_entries, walk_files
from .errors import ConfigError, NotFound
from .loader import SRC_DIR, import_service
from .manifest import BentoManifest, ModelRef, PythonSpec, StaticSpec, utcnow
from .requirements import infer, own_modules, resolved, scan_source
from .service import Service
from .store import Bundle, Store
from .tags import Tag, new_version

CONFIG_FILE = "jubako.yaml"
ALWAYS_EXCLUDED = [
    ".git", ".hg", ".svn", ".venv", "venv", "__pycache__", "*.pyc", "*.pyo", ".pytest_cache",
    ".mypy_cache", ".ruff_cache", ".ipynb_checkpoints", ".DS_Store",
]


class PythonConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    requirements: list[str] = Field(default_factory=list)
    requirements_file: str | None = None
    wheels: bool = False  # carry the wheels of what the runtime image lacks (docs/requirements.md)


class BuildConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    service: str
    name: str | None = None
    version: str | None = None
    description: str = ""
    include: list[str] = Field(default_factory=lambda: ["**/*.py"])
    exclude: list[str] = Field(default_factory=list)
    python: PythonConfig = Field(default_factory=PythonConfig)
    labels: dict[str, str] = Field(default_factory=dict)
    models: list[str] = Field(default_factory=list)


def load_config(path: Path) -> tuple[BuildConfig, Path]:
    """Read ``jubako.yaml`` or ``[tool.jubako]`` of ``pyproject.toml``; returns the project root."""
    path = path.resolve()
    if path.is_dir():
        if (path / CONFIG_FILE).is_file():
            path = path / CONFIG_FILE
        elif (path / "pyproject.toml").is_file():
            path = path / "pyproject.toml"
        else:
            raise ConfigError(f"{path}: no {CONFIG_FILE} or pyproject.toml with [tool.jubako]")
    try:
        if path.name == "pyproject.toml":
            raw = tomllib.loads(path.read_text()).get("tool", {}).get("jubako")
            if raw is None:
                raise ConfigError(f"{path}: no [tool.jubako] section")
        else:
            raw = yaml.safe_load(path.read_text())
    except (OSError, tomllib.TOMLDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the build config must be a mapping")
    try:
        return BuildConfig.model_validate(raw), path.parent
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{path}: {loc}: {err['msg']}") from None


def _excluded(rel: str, patterns: list[str]) -> bool:
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        pattern = pattern.rstrip("/")
        if "/" not in pattern and any(fnmatch.fnmatchcase(p, pattern) for p in parts):
            return True  # a bare name excludes that file or folder anywhere
        if any(fnmatch.fnmatchcase(p, pattern) or fnmatch.fnmatchcase(p, pattern + "/**") for p in prefixes):
            return True
    return False


def select_files(root: Path, include: list[str], exclude: list[str]) -> list[str]:
    """Files under ``root`` matched by ``include`` globs (``**`` recurses) minus ``exclude``."""
    chosen: set[str] = set()
    for pattern in include:
        for match in glob.glob(pattern, root_dir=root, recursive=True):
            p = root / match
            if p.is_file():
                chosen.add(Path(match).as_posix())
            elif p.is_dir():
                chosen.update(f"{Path(match).as_posix()}/{f}" for f in walk_files(p))
    patterns = ALWAYS_EXCLUDED + list(exclude)
    return sorted(r for r in chosen if not _excluded(r, patterns))


def _requirements(cfg: BuildConfig, root: Path) -> list[str]:
    reqs = list(cfg.python.requirements)
    if cfg.python.requirements_file:
        lines = (root / cfg.python.requirements_file).read_text().splitlines()
        reqs += [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    return reqs


def _inferred(root: Path, files: list[str], explicit: list[str]) -> list[str]:
    """Pinned distributions the selected Python files import (before the service is imported,
    so a missing package is reported with every file and line, not as one ImportError)."""
    imports = [
        imp for rel in files if rel.endswith(".py")
        for imp in scan_source((root / rel).read_text(encoding="utf-8", errors="replace"), rel)
    ]
    return infer(imports, own_modules(files), explicit)


def _static_files(svc: Service, folder: Path) -> dict[str, Path]:
    """The files of the service's static folder (``@jubako.service(static=...)``) by their
    path in the bento (under ``static/``); links are copied as the files they point to."""
    if not folder.is_dir():
        raise ConfigError(f"static folder {folder} (static={svc.static!r} of {svc.name}) is not a folder")
    files = sorted(r for r in walk_files(folder) if not _excluded(r, ALWAYS_EXCLUDED))
    if not files:
        raise ConfigError(f"static folder {folder} (static={svc.static!r} of {svc.name}) holds no file")
    cap = manifests.MAX_STATIC_FILE_BYTES
    for rel in files:
        size = (folder / rel).stat().st_size
        if size > cap:
            raise ConfigError(f"static file {folder / rel} has {size} bytes; the proxy serves files of at most"
                              f" {cap} bytes (serve larger assets from object storage)")
    return {f"static/{rel}": folder / rel for rel in files}


def _model_refs(tags: list[Tag], store: Store) -> list[ModelRef]:
    by_name: dict[str, Tag] = {}
    for tag in tags:
        other = by_name.get(tag.name)
        if other and not other.is_latest and not tag.is_latest and other != tag:
            raise ConfigError(f"model {tag.name} is asked for at two versions: {other} and {tag}")
        if other is None or other.is_latest:
            by_name[tag.name] = tag
    refs = []
    for tag in by_name.values():
        try:
            bundle = store.models.get(tag)
        except NotFound:
            raise NotFound(f"model {tag} is not in the store; save it first") from None
        refs.append(ModelRef(tag=str(bundle.tag), digest=bundle.manifest.digest()))
    return refs


def build(
    path: Path,
    *,
    name: str | None = None,
    version: str | None = None,
    labels: dict[str, str] | None = None,
    store: Store | None = None,
    wheels: bool = False,
) -> Bundle[BentoManifest]:
    store = store or Store()
    cfg, root = load_config(Path(path))
    files = select_files(root, cfg.include, cfg.exclude)
    module_file = cfg.service.partition(":")[0].replace(".", "/")
    if f"{module_file}.py" not in files and f"{module_file}/__init__.py" not in files:
        raise ConfigError(f"the service module {module_file}.py is not selected by include/exclude")
    requirements = _requirements(cfg, root)
    inferred = _inferred(root, files, requirements)
    svc = import_service(root, cfg.service, isolated=True)
    tag = Tag(name or cfg.name or svc.name, version or cfg.version or new_version())
    tag.validate()
    refs = _model_refs(svc.models + [Tag.parse(m) for m in cfg.models], store)
    static = _static_files(svc, svc.static_dir) if svc.static_dir is not None else {}
    with store.bentos.staging() as staged:
        copies = {f"{SRC_DIR}/{rel}": root / rel for rel in files} | static
        for rel, src in copies.items():
            dest = staged / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)  # follows links: a bento holds plain files only
        wheel_files: list[str] = []
        if wheels or cfg.python.wheels:
            from .wheels import collect  # runs pip: only when asked

            wheel_files = collect(resolved(requirements, inferred), staged)
        manifest = BentoManifest(
            name=tag.name,
            version=tag.version,
            created_at=utcnow(),
            labels={**cfg.labels, **(labels or {})},
            description=cfg.description,
            service=cfg.service,
            service_name=svc.name,
            apis=[a.spec() for a in svc.apis.values()],
            models=refs,
            python=PythonSpec(
                version=".".join(platform.python_version_tuple()[:2]),
                requirements=requirements,
                inferred=inferred,
                wheels=wheel_files,
            ),
            static=StaticSpec(source=svc.static or "") if static else None,
            files=file_entries(staged, walk_files(staged)),
        )
        return store.bentos.commit(staged, manifest)
