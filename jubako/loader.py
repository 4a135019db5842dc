"""Finding a bento (by tag in the store, or by path) and importing its service."""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Iterator
from pathlib import Path

from .bundle import check_bundle
from .errors import NotFound, ServiceDefinitionError
from .manifest import BENTO_MANIFEST, BentoManifest, read_manifest
from .service import Service
from .store import Bundle, Store

SRC_DIR = "src"


def open_bento(ref: str | Path, store: Store | None = None, verify: bool = True) -> Bundle[BentoManifest]:
    """A bento from a directory holding ``bento.yaml``, or from the store by tag."""
    path = Path(ref)
    if (path / BENTO_MANIFEST).is_file():
        bundle = Bundle(path.resolve(), read_manifest(path, BentoManifest))
    elif isinstance(ref, Path) or "/" in str(ref):
        raise NotFound(f"{ref}: no {BENTO_MANIFEST} there")
    else:
        bundle = (store or Store()).bentos.get(str(ref))
    if verify:
        check_bundle(bundle.path, bundle.manifest)
    return bundle


@contextlib.contextmanager
def _isolated_import(root: Path, module_name: str) -> Iterator[None]:
    """Import from ``root`` and forget those modules afterwards (builds may run side by side).
    A module of the same name imported before (from another bento: every example's module
    is "service") is set aside meanwhile, else the import would return it."""
    saved_path = list(sys.path)
    top = module_name.partition(".")[0]
    shadowed = {n: m for n, m in sys.modules.items() if n == top or n.startswith(top + ".")}
    for n in shadowed:
        del sys.modules[n]
    before = set(sys.modules)
    sys.path.insert(0, str(root))
    try:
        yield
    finally:
        sys.path[:] = saved_path
        for name in set(sys.modules) - before:
            file = getattr(sys.modules[name], "__file__", None) or ""
            if file.startswith(str(root)):
                del sys.modules[name]
        sys.modules.update(shadowed)


def import_service(root: Path, entrypoint: str, *, isolated: bool = False) -> Service:
    """Import ``module:attr`` with ``root`` on ``sys.path``; it must be a ``jubako.Service``."""
    module_name, sep, attr = entrypoint.partition(":")
    if not sep or not module_name or not attr:
        raise ServiceDefinitionError(f"service entrypoint {entrypoint!r} must look like 'module:attr'")
    ctx = _isolated_import(root, module_name) if isolated else contextlib.nullcontext()
    with ctx:
        if not isolated:
            sys.path.insert(0, str(root))
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise ServiceDefinitionError(f"cannot import {module_name!r} from {root}: {e}") from e
        obj = getattr(module, attr, None)
    if obj is None:
        raise ServiceDefinitionError(f"{module_name} has no attribute {attr!r}")
    if not isinstance(obj, Service):
        raise ServiceDefinitionError(
            f"{entrypoint} is a {type(obj).__name__}, not a service; decorate the class with @jubako.service"
        )
    return obj


def load_service(bundle: Bundle[BentoManifest]) -> Service:
    """Import the service of a bento for serving (its src/ stays on sys.path)."""
    return import_service(bundle.path / SRC_DIR, bundle.manifest.service)
