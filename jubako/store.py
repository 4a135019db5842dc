"""The local store (``$JUBAKO_HOME``, default ``~/.jubako``) of bentos and models.

Layout: ``bentos/<name>/<version>/`` and ``models/<name>/<version>/``, each a manifest
plus files. Bundles are immutable: they are assembled in ``.tmp/`` on the same file
system and appear in one ``rename``, so a reader never sees half a bundle. A scratch
directory's name carries the host and process that own it, so the scratch left by a
process that was killed (a pull or a build SIGKILLed mid-way) is removed by the next
process that stages on the same host.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from . import config
from .bundle import check_bundle, write_manifest
from .errors import AlreadyExists, InvalidBundle, NotFound
from .manifest import BentoManifest, ModelManifest, read_manifest
from .tags import Tag

M = TypeVar("M", BentoManifest, ModelManifest)


@dataclass(frozen=True)
class Bundle(Generic[M]):
    path: Path
    manifest: M

    @property
    def tag(self) -> Tag:
        return self.manifest.tag


class BundleStore(Generic[M]):
    def __init__(self, root: Path, tmp: Path, kind: type[M]):
        self.root = root
        self.tmp = tmp
        self.kind = kind
        self.noun = "bento" if kind is BentoManifest else "model"

    def _dir(self, tag: Tag) -> Path:
        tag.validate()
        return self.root / tag.name / tag.version

    def resolve(self, tag: Tag | str) -> Tag:
        """Turn ``name:latest`` into the newest concrete version."""
        tag = Tag.parse(tag) if isinstance(tag, str) else tag
        if not tag.is_latest:
            return tag
        versions = self.list(tag.name)
        if not versions:
            raise NotFound(f"{self.noun} {tag.name!r} not found in {self.root.parent}")
        return versions[0].tag

    def get(self, tag: Tag | str) -> Bundle[M]:
        tag = self.resolve(tag)
        path = self._dir(tag)
        if not path.is_dir():
            raise NotFound(f"{self.noun} {tag} not found in {self.root.parent}")
        return Bundle(path, read_manifest(path, self.kind))

    def exists(self, tag: Tag) -> bool:
        return self._dir(tag).is_dir()

    def list(self, name: str | None = None) -> list[Bundle[M]]:
        """Bundles, newest first."""
        out: list[Bundle[M]] = []
        names = [name] if name else sorted(os.listdir(self.root)) if self.root.is_dir() else []
        for n in names:
            base = self.root / n
            if not base.is_dir():
                continue
            for v in os.listdir(base):
                try:
                    out.append(Bundle(base / v, read_manifest(base / v, self.kind)))
                except InvalidBundle:
                    continue  # a damaged entry should not hide the others; `get` reports it
        out.sort(key=lambda b: (b.manifest.created_at, b.manifest.version), reverse=True)
        return out

    def delete(self, tag: Tag | str) -> Tag:
        bundle = self.get(tag)
        # Rename first so the removal looks atomic to readers, then delete at leisure.
        trash = Path(tempfile.mkdtemp(dir=self._tmpdir(), prefix=_scratch_prefix("delete")))
        os.rename(bundle.path, trash / "b")
        shutil.rmtree(trash)
        with contextlib.suppress(OSError):
            bundle.path.parent.rmdir()  # last version of this name
        return bundle.tag

    def _tmpdir(self) -> Path:
        self.tmp.mkdir(parents=True, exist_ok=True)
        sweep_dead_scratch(self.tmp)
        return self.tmp

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A scratch directory on the store's file system; removed unless committed."""
        path = Path(tempfile.mkdtemp(dir=self._tmpdir(), prefix=_scratch_prefix(self.noun)))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def commit(self, staged: Path, manifest: M, verified: bool = False) -> Bundle[M]:
        """Write the manifest, verify every file (unless the caller just hashed them all),
        and move the bundle into place."""
        write_manifest(staged, manifest)
        if not verified:
            check_bundle(staged, manifest)
        dest = self._dir(manifest.tag)
        if dest.exists():
            raise AlreadyExists(f"{self.noun} {manifest.tag} already exists")
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(staged, dest)
        except OSError:
            if dest.exists():
                raise AlreadyExists(f"{self.noun} {manifest.tag} already exists") from None
            raise
        return Bundle(dest, manifest)


def _scratch_prefix(kind: str) -> str:
    # kind.host.pid.: who owns it, for sweep_dead_scratch (a home may be shared by hosts)
    return f"{kind}.{socket.gethostname()}.{os.getpid()}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def sweep_dead_scratch(tmp: Path) -> list[str]:
    """Remove the scratch directories in ``tmp`` whose owner, a process of this host, is
    gone; another host's and a running process's are left alone. Returns the names removed."""
    host, removed = socket.gethostname(), []
    try:
        names = os.listdir(tmp)
    except FileNotFoundError:
        return removed
    for name in names:
        parts = name.split(".")
        if len(parts) < 4 or not parts[-2].isdigit() or ".".join(parts[1:-2]) != host:
            continue
        if not _alive(int(parts[-2])):
            shutil.rmtree(tmp / name, ignore_errors=True)
            removed.append(name)
    return removed


class Store:
    def __init__(self, home: Path | None = None):
        self.home = (home or config.home()).expanduser()
        tmp = self.home / ".tmp"
        self.bentos: BundleStore[BentoManifest] = BundleStore(
            self.home / "bentos", tmp, BentoManifest
        )
        self.models: BundleStore[ModelManifest] = BundleStore(
            self.home / "models", tmp, ModelManifest
        )
