"""Bento and model archives: tar streams, optionally gzip or zstd compressed.

Export writes the manifest first, then the files, then (for a bento) every model it uses
under ``models/<name>/<version>/`` — the self-contained layout of docs/contracts.md. Both
directions stream: nothing is held whole in memory.

Import treats the archive as hostile. Each member is checked before anything is written
(:func:`check_member`): no absolute paths, no ``..``, no links, no devices, no duplicates,
and sizes must agree with the manifest. Files are hashed while written and compared with
the manifests; the bundles are assembled in the store's staging area and appear only when
all of them verify, so a bad archive leaves nothing behind.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import zstandard

from .bundle import MODELS_DIR
from .digest import copy_hashing
from .errors import AlreadyExists, InvalidBundle, JubakoError, UnsafeArchive
from .manifest import (
    BENTO_MANIFEST,
    MODEL_MANIFEST,
    BentoManifest,
    Manifest,
    ModelManifest,
    parse_manifest,
)
from .store import Bundle, Store

COMPRESSIONS = ("none", "gzip", "zstd")
SUFFIXES = {"none": ".tar", "gzip": ".tar.gz", "zstd": ".tar.zst"}
MANIFEST_LIMIT = 16 << 20  # a manifest larger than this is not a manifest
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


# --- Export ------------------------------------------------------------------------


def _members(bundle: Bundle[BentoManifest] | Bundle[ModelManifest], prefix: str) -> Iterator[tuple[str, Path]]:
    name = BENTO_MANIFEST if bundle.manifest.kind == "bento" else MODEL_MANIFEST
    yield prefix + name, bundle.path / name
    for f in bundle.manifest.files:
        yield prefix + f.path, bundle.path / f.path


def _bento_models(bundle: Bundle[BentoManifest], store: Store) -> list[Bundle[ModelManifest]]:
    from . import models

    with models.bento_context(bundle.path, bundle.manifest, store):
        return [models.get(ref.parsed.name) for ref in bundle.manifest.models]


def export(
    bundle: Bundle[BentoManifest] | Bundle[ModelManifest],
    out: BinaryIO,
    compression: str = "none",
    store: Store | None = None,
) -> None:
    """Stream ``bundle`` (with its models, for a bento) as a tar archive into ``out``."""
    if compression not in COMPRESSIONS:
        raise JubakoError(f"unknown compression {compression!r}: use one of {', '.join(COMPRESSIONS)}")
    entries = list(_members(bundle, ""))
    if isinstance(bundle.manifest, BentoManifest):
        for m in _bento_models(bundle, store or Store()):  # type: ignore[arg-type]
            entries += _members(m, f"{MODELS_DIR}/{m.tag.name}/{m.tag.version}/")
    mtime = int(bundle.manifest.created_at.timestamp())  # same bundle -> same archive bytes
    if compression == "gzip":
        sink: BinaryIO = gzip.GzipFile(fileobj=out, mode="wb", mtime=0)  # type: ignore[assignment]
    elif compression == "zstd":
        sink = zstandard.ZstdCompressor(level=3).stream_writer(out, closefd=False)  # type: ignore[assignment]
    else:
        sink = out
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for arcname, path in entries:
            info = tarfile.TarInfo(arcname)
            info.size = path.stat().st_size
            info.mode = 0o644
            info.mtime = mtime
            with open(path, "rb") as f:
                tar.addfile(info, f)
    if sink is not out:
        sink.close()


# --- Member checks (pure) ------------------------------------------------------------


def normalize(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.rstrip("/")


def check_member(name: str, kind: str, linkname: str = "") -> str | None:
    """Why an archive member is unsafe, or ``None``. ``kind``: file, dir, symlink, hardlink, other."""
    if not name or name == ".":
        return "empty member name"
    if "\x00" in name or "\\" in name:
        return "member name contains a NUL or backslash"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if ".." in PurePosixPath(name).parts:
        return "path leaves the bundle ('..')"
    if kind in ("symlink", "hardlink"):
        base = PurePosixPath(name).parent if kind == "symlink" else PurePosixPath()
        target = linkname
        depth = 0
        escapes = target.startswith("/")
        for part in (base / target).parts if not escapes else ():
            depth += -1 if part == ".." else (0 if part == "." else 1)
            escapes = escapes or depth < 0
        if escapes:
            return f"link to {linkname!r} leaves the bundle"
        return "links are not allowed in a bundle (bundles hold plain files)"
    if kind not in ("file", "dir"):
        return "device, fifo or other special file"
    return None


def _kind(m: tarfile.TarInfo) -> str:
    if m.isreg():
        return "file"
    if m.isdir():
        return "dir"
    if m.issym():
        return "symlink"
    if m.islnk():
        return "hardlink"
    return "other"


# --- Import ----------------------------------------------------------------------------


class _Prefixed(io.RawIOBase):
    """A stream with some bytes already read from it put back in front."""

    def __init__(self, head: bytes, rest: BinaryIO):
        self.head, self.rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buf: bytearray) -> int:  # type: ignore[override]
        if self.head:
            n = min(len(buf), len(self.head))
            buf[:n], self.head = self.head[:n], self.head[n:]
            return n
        data = self.rest.read(len(buf))
        buf[: len(data)] = data
        return len(data)


def _decompressed(fileobj: BinaryIO) -> BinaryIO:
    head = fileobj.read(4)
    raw = io.BufferedReader(_Prefixed(head, fileobj), 1 << 20)
    if head.startswith(_GZIP_MAGIC):
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    if head.startswith(_ZSTD_MAGIC):
        return zstandard.ZstdDecompressor().stream_reader(raw)  # type: ignore[return-value]
    return raw  # type: ignore[return-value]


@dataclass
class Extracted:
    """What an archive held, as written into a staging directory and verified."""

    root: Path
    manifest: Manifest
    models: list[ModelManifest] = field(default_factory=list)


def _bundle_of(path: str) -> tuple[str, str]:
    """(bundle prefix, path inside the bundle) for an archive path."""
    parts = path.split("/")
    if parts[0] == MODELS_DIR and len(parts) > 3:
        return "/".join(parts[:3]) + "/", "/".join(parts[3:])
    return "", path


def extract(fileobj: BinaryIO, dest: Path) -> Extracted:
    """Unpack a bento or model archive into the empty directory ``dest``, verifying it."""
    written: dict[str, tuple[int, str]] = {}
    manifests: dict[str, Manifest] = {}
    try:
        tar = tarfile.open(fileobj=_decompressed(fileobj), mode="r|")
    except (tarfile.TarError, EOFError, zstandard.ZstdError, OSError) as e:
        raise InvalidBundle(f"not a tar archive: {e}") from None
    with tar:
        try:
            for member in tar:
                _extract_member(tar, member, dest, written, manifests)
        except (tarfile.TarError, EOFError, zstandard.ZstdError, OSError) as e:
            if isinstance(e, JubakoError):
                raise
            raise InvalidBundle(f"archive is truncated or corrupt: {e}") from None
    return _verify(dest, written, manifests)


def _extract_member(
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    dest: Path,
    written: dict[str, tuple[int, str]],
    manifests: dict[str, Manifest],
) -> None:
    name = normalize(member.name)
    problem = check_member(name, _kind(member), member.linkname)
    if problem:
        raise UnsafeArchive(f"archive member {member.name!r}: {problem}")
    target = dest / name
    if member.isdir():
        if target.exists() and not target.is_dir():
            raise UnsafeArchive(f"archive member {member.name!r}: clashes with a file")
        target.mkdir(parents=True, exist_ok=True)
        return
    if name in written:
        raise UnsafeArchive(f"archive member {member.name!r}: appears twice")
    prefix, inner = _bundle_of(name)
    expected = manifests.get(prefix)
    if inner in (BENTO_MANIFEST, MODEL_MANIFEST):
        if member.size > MANIFEST_LIMIT:
            raise UnsafeArchive(f"archive member {member.name!r}: manifest of {member.size} bytes")
    elif expected is not None:
        entry = next((f for f in expected.files if f.path == inner), None)
        if entry is None:
            raise InvalidBundle(f"archive member {member.name!r}: not listed in {prefix or ''}{_manifest_name(expected)}")
        if entry.size != member.size:
            raise InvalidBundle(
                f"archive member {member.name!r}: size {member.size} disagrees with the manifest ({entry.size})"
            )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        src = tar.extractfile(member)
        assert src is not None
        with open(target, "xb") as out:
            written[name] = copy_hashing(src, out, limit=member.size)
    except (FileExistsError, NotADirectoryError, IsADirectoryError):
        raise UnsafeArchive(f"archive member {member.name!r}: clashes with another member") from None
    if written[name][0] != member.size:
        raise InvalidBundle(f"archive member {member.name!r}: truncated")
    if inner == BENTO_MANIFEST and not prefix:
        manifests[prefix] = parse_manifest(target.read_bytes(), member.name, BentoManifest)
    elif inner == MODEL_MANIFEST:
        manifests[prefix] = parse_manifest(target.read_bytes(), member.name, ModelManifest)


def _manifest_name(m: Manifest) -> str:
    return BENTO_MANIFEST if m.kind == "bento" else MODEL_MANIFEST


def _verify(dest: Path, written: dict[str, tuple[int, str]], manifests: dict[str, Manifest]) -> Extracted:
    top = manifests.get("")
    if top is None:
        raise InvalidBundle(f"archive has no {BENTO_MANIFEST} or {MODEL_MANIFEST} at its top")
    seen = set()
    for prefix, manifest in manifests.items():
        for f in manifest.files:
            path = prefix + f.path
            seen.add(path)
            got = written.get(path)
            if got is None:
                raise InvalidBundle(f"archive lacks {path!r}, listed in its manifest")
            if got != (f.size, f.sha256):
                raise InvalidBundle(f"archive member {path!r}: sha256 {got[1]} != {f.sha256} in the manifest")
        seen.add(prefix + _manifest_name(manifest))
    extra = sorted(set(written) - seen)
    if extra:
        raise InvalidBundle(f"archive member {extra[0]!r}: not part of any manifest")
    models = [m for p, m in manifests.items() if p]
    if isinstance(top, BentoManifest):
        refs = {ref.tag: ref.digest for ref in top.models}
        got = {str(m.tag): m.digest() for m in models}
        for tag, digest in refs.items():
            if tag not in got:
                raise InvalidBundle(f"archive lacks model {tag}, used by bento {top.tag}")
            if got[tag] != digest:
                raise InvalidBundle(f"model {tag} in the archive differs from the one bento {top.tag} pinned")
        for tag in got.keys() - refs.keys():
            raise InvalidBundle(f"archive holds model {tag}, which bento {top.tag} does not use")
        for prefix, m in manifests.items():
            if prefix and prefix != f"{MODELS_DIR}/{m.name}/{m.version}/":
                raise InvalidBundle(f"model {m.tag} is stored under {prefix!r}")
    elif models:
        raise InvalidBundle("a model archive cannot hold other models")
    return Extracted(dest, top, models)


@dataclass
class Imported:
    bundle: Bundle[BentoManifest] | Bundle[ModelManifest]
    added_models: list[str] = field(default_factory=list)
    existing_models: list[str] = field(default_factory=list)
    existed: bool = False


def import_archive(fileobj: BinaryIO, store: Store | None = None) -> Imported:
    """Verify an archive and add its bundles to the store: all of them, or none."""
    store = store or Store()
    with store.bentos.staging() as staged:
        ex = extract(fileobj, staged / "x")
        added: list[Bundle[ModelManifest]] = []
        result_models: tuple[list[str], list[str]] = ([], [])
        try:
            for m in ex.models:
                src = staged / "x" / MODELS_DIR / m.name / m.version
                if _present(store.models, m):
                    result_models[1].append(str(m.tag))
                    continue
                added.append(store.models.commit(src, m, verified=True))
                result_models[0].append(str(m.tag))
            if ex.models:
                (staged / "x" / MODELS_DIR).rename(staged / "models-done")
            kind = store.bentos if isinstance(ex.manifest, BentoManifest) else store.models
            if _present(kind, ex.manifest):
                return Imported(kind.get(ex.manifest.tag), *result_models, existed=True)  # type: ignore[arg-type]
            bundle = kind.commit(staged / "x", ex.manifest, verified=True)  # type: ignore[arg-type]
        except BaseException:
            for b in added:  # all or nothing: take back the models this import added
                store.models.delete(b.tag)
            raise
        return Imported(bundle, *result_models)


def _present(kind_store, manifest: Manifest) -> bool:  # type: ignore[no-untyped-def]
    """True if the store holds this exact bundle; AlreadyExists if it holds another one."""
    if not kind_store.exists(manifest.tag):
        return False
    existing = kind_store.get(manifest.tag).manifest
    if existing.digest() != manifest.digest():
        raise AlreadyExists(
            f"{manifest.kind} {manifest.tag} already exists in the store with different content"
        )
    return True
