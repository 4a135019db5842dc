"""Models in the local store: save (per framework), get, and load.

Inside a served bento, ``load("name")`` resolves to the version the bento pinned at build
time (and checks its digest), not to whatever is newest in the store.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..bundle import file_entries, walk_files
from ..errors import InvalidBundle, NotFound
from ..manifest import BentoManifest, ModelManifest, TensorSignature, read_manifest, utcnow
from ..store import Bundle, Store
from ..tags import Tag, new_version


@dataclass
class _BentoContext:
    root: Path
    manifest: BentoManifest
    store: Store


# A context variable, not a module global: jubako run's in-process executor creates a service
# instance per thread, each inside its own context, and overlapping exits on a global restored
# the wrong "previous" one, leaving a finished run's bento active for the whole process.
_active: contextvars.ContextVar[_BentoContext | None] = contextvars.ContextVar("jubako_bento", default=None)


@contextlib.contextmanager
def bento_context(root: Path, manifest: BentoManifest, store: Store | None = None) -> Iterator[None]:
    """Resolve model names against ``manifest`` (used by the runtime while it loads a bento)."""
    token = _active.set(_BentoContext(root, manifest, store or Store()))
    try:
        yield
    finally:
        _active.reset(token)


def _from_bento(ctx: _BentoContext, tag: Tag) -> Bundle[ModelManifest]:
    for ref in ctx.manifest.models:
        pinned = ref.parsed
        if pinned.name != tag.name:
            continue
        if not tag.is_latest and tag.version != pinned.version:
            raise NotFound(f"bento {ctx.manifest.tag} pins model {pinned}, not {tag}")
        local = ctx.root / "models" / pinned.name / pinned.version
        bundle = (
            Bundle(local, read_manifest(local, ModelManifest))
            if local.is_dir()
            else ctx.store.models.get(pinned)
        )
        if bundle.manifest.digest() != ref.digest:
            raise InvalidBundle(f"model {pinned}: digest differs from the one bento {ctx.manifest.tag} pinned")
        return bundle
    raise NotFound(f"bento {ctx.manifest.tag} does not reference model {tag.name!r}")


def get(tag: str | Tag, store: Store | None = None) -> Bundle[ModelManifest]:
    tag = Tag.parse(tag) if isinstance(tag, str) else tag
    active = _active.get()
    if active is not None:
        return _from_bento(active, tag)
    return (store or Store()).models.get(tag)


def load(tag: str | Tag, store: Store | None = None) -> Any:
    """Load a model for inference on the selected device (see ``jubako.devices``)."""
    bundle = get(tag, store)
    framework = bundle.manifest.framework
    if framework == "torch":
        from . import torch as fw
    elif framework == "onnx":
        from . import onnx as fw  # type: ignore[no-redef]
    else:
        raise InvalidBundle(f"model {bundle.tag}: unknown framework {framework!r}")
    return fw.load_bundle(bundle)


def signatures(specs: list[Any] | None) -> list[TensorSignature]:
    """Accept ``TensorSignature``, dicts, or ``(name, dtype, shape)`` tuples."""
    out = []
    for s in specs or []:
        if isinstance(s, TensorSignature):
            out.append(s)
        elif isinstance(s, dict):
            out.append(TensorSignature(**s))
        else:
            name, dtype, shape = s
            out.append(TensorSignature(name=name, dtype=str(dtype), shape=list(shape)))
    return out


def save_files(
    name: str,
    write: Callable[[Path], None],
    *,
    framework: str,
    framework_version: str,
    format: str,
    inputs: list[TensorSignature],
    outputs: list[TensorSignature],
    options: dict[str, Any] | None = None,
    labels: dict[str, str] | None = None,
    metadata: dict[str, Any] | None = None,
    description: str = "",
    version: str | None = None,
    store: Store | None = None,
) -> Bundle[ModelManifest]:
    """Common tail of every framework's ``save``: ``write`` fills a staging directory."""
    store = store or Store()
    tag = Tag(name, version or new_version())
    tag.validate()
    with store.models.staging() as staged:
        write(staged)
        manifest = ModelManifest(
            name=tag.name,
            version=tag.version,
            created_at=utcnow(),
            labels=labels or {},
            description=description,
            framework=framework,
            framework_version=framework_version,
            format=format,
            inputs=inputs,
            outputs=outputs,
            options=options or {},
            metadata=metadata or {},
            files=file_entries(staged, walk_files(staged)),
        )
        return store.models.commit(staged, manifest)


def __getattr__(name: str) -> Any:
    # jubako.models.torch / .onnx on first use, so `import jubako` never imports torch.
    if name in ("torch", "onnx"):
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(name)


__all__ = ["bento_context", "get", "load", "save_files", "signatures"]
