"""A local folder: ``sha256/<2>/<hex>`` per blob, parts under ``.uploads/``.

An upload begun alone has its folder ``.uploads/<id>/``. Uploads begun together
(``begin_many``: a push's new blobs, tens of thousands) share one batch folder
``.uploads/<batch>-<count>/`` and have ids ``<batch>-<count>.<i>``: the batch folder says
they are open, each one's part folder ``<i>/`` is made by its first part, and ``<i>.gone``
marks one completed or aborted. Opening or aborting a session of 30 000 blobs is then one
folder, not 30 000 (a mkdir or rmtree each was a quarter of the push's time)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from .base import (
    CHUNK,
    DigestMismatch,
    Part,
    PartsMissing,
    Storage,
    StorageError,
    Stored,
    Unfinished,
    UploadGone,
)


def _mtime(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime, UTC)


def _count(batch: str) -> int | None:
    """The number of uploads of a batch folder's name (``<32 hex>-<count>``), else None."""
    head, dash, n = batch.partition("-")
    if not dash or len(head) != 32 or not n.isdigit():
        return None
    return int(n)


def _listing(folder: Path) -> tuple[set[str], set[str]] | None:
    """(gone, with parts): the indexes of a batch's uploads, None when the batch is gone."""
    try:
        names = [e.name for e in os.scandir(folder)]
    except (FileNotFoundError, NotADirectoryError):
        return None
    return {n[:-5] for n in names if n.endswith(".gone")}, {n for n in names if n.isdigit()}


def _gone(folder: Path) -> set[str] | None:
    """The indexes of a batch's uploads that are gone, None when the batch is."""
    try:
        return {e.name[:-5] for e in os.scandir(folder) if e.name.endswith(".gone")}
    except (FileNotFoundError, NotADirectoryError):
        return None


class LocalStorage(Storage):
    kind = "local"
    presigns = False

    def __init__(self, root: Path):
        self.root = Path(root)
        self.uploads = self.root / ".uploads"
        self.uploads.mkdir(parents=True, exist_ok=True)

    def key_for(self, digest: str, upload_id: str) -> str:
        # Content-addressed: `complete` verifies before the rename, so a bad upload can
        # never replace a good blob, and two uploads of the same content are harmless.
        return f"sha256/{digest[:2]}/{digest}"

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise StorageError(f"bad key {key!r}")
        return path

    def _updir(self, upload: str) -> Path:
        """Where the parts of ``upload`` go."""
        batch = self._batch(upload)
        return batch[0] / batch[1] if batch else self.uploads / upload

    def _batch(self, upload: str) -> tuple[Path, str] | None:
        """(batch folder, index) of an upload begun by ``begin_many``, else None."""
        if not upload or "/" in upload or upload.startswith("."):
            raise StorageError(f"bad upload id {upload!r}")
        name, dot, i = upload.partition(".")
        if not dot:
            return None
        if not i.isdigit() or _count(name) is None:
            raise StorageError(f"bad upload id {upload!r}")
        return self.uploads / name, i

    def _stray_file(self, upload: str) -> bool:
        """Whether ``upload`` names a file left in ``.uploads`` (list_unfinished)."""
        return "/" not in upload and not upload.startswith(".") and (self.uploads / upload).is_file()

    def _open(self, upload: str) -> bool:
        batch = self._batch(upload)
        if batch is None:
            return (self.uploads / upload).is_dir()
        return batch[0].is_dir() and not (batch[0] / f"{batch[1]}.gone").exists()

    def _finish(self, upload: str) -> None:
        """Make ``upload`` gone (completed or aborted) and drop its parts."""
        batch = self._batch(upload)
        if batch is not None:
            with contextlib.suppress(FileNotFoundError):
                (batch[0] / f"{batch[1]}.gone").touch()
        shutil.rmtree(self._updir(upload), ignore_errors=True)

    def check(self) -> None:
        if not os.access(self.root, os.W_OK):
            raise StorageError(f"{self.root} is not writable")

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def read(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        try:
            f = open(self._path(key), "rb")
        except FileNotFoundError:
            raise StorageError(f"blob {key} is missing from {self.root}") from None
        with f:
            f.seek(start)
            left = None if end is None else end - start + 1
            while left is None or left > 0:
                chunk = f.read(CHUNK if left is None else min(CHUNK, left))
                if not chunk:
                    break
                if left is not None:
                    left -= len(chunk)
                yield chunk

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def put_empty(self, key: str) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()

    def begin(self, key: str) -> str:
        upload = uuid.uuid4().hex
        self._updir(upload).mkdir(parents=True)
        return upload

    def begin_many(self, keys: list[str]) -> list[str]:
        if len(keys) < 2:
            return [self.begin(k) for k in keys]
        batch = f"{uuid.uuid4().hex}-{len(keys)}"
        (self.uploads / batch).mkdir(parents=True)
        return [f"{batch}.{i}" for i in range(len(keys))]

    def put_part(self, key: str, upload: str, number: int, path: Path, size: int) -> None:
        if not self._open(upload):
            raise StorageError(f"upload {upload} is gone")
        d = self._updir(upload)
        d.mkdir(exist_ok=True)  # a batch's upload: made by its first part
        os.replace(path, d / f"{number:05d}")  # same file system: the spool is under root

    def upload_parts(self, key: str, upload: str) -> dict[int, Part] | None:
        return self.parts(key, upload) if self._open(upload) else None

    def parts_many(self, uploads: list[tuple[str, str]]) -> list[dict[int, Part] | None]:
        # One listing per batch says which of its uploads are gone and which have parts:
        # a session of 30 000 blobs is not 90 000 lookups.
        listed: dict[str, tuple[set[str], set[str]] | None] = {}
        out: list[dict[int, Part] | None] = []
        for key, upload in uploads:
            batch = self._batch(upload)
            if batch is None:
                out.append(self.upload_parts(key, upload))
                continue
            folder, i = batch
            if folder.name not in listed:
                listed[folder.name] = _listing(folder)
            entries = listed[folder.name]
            if entries is None or i in entries[0]:
                out.append(None)
            else:
                out.append(self.parts(key, upload) if i in entries[1] else {})
        return out

    def parts(self, key: str, upload: str) -> dict[int, Part]:
        d = self._updir(upload)
        out = {}
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(d):
                if entry.name.isdigit():
                    out[int(entry.name)] = Part(int(entry.name), entry.stat().st_size)
        return out

    def complete(self, key: str, upload: str, size: int, sha256: str, part_count: int) -> None:
        # Idempotent and safe to run concurrently for one upload: each completion assembles
        # into its own temp file, and only a verified file is renamed onto the
        # content-addressed key, so whatever lies there has the right bytes.
        d = self._updir(upload)
        dest = self._path(key)
        if self._complete_at(dest, size):
            self._finish(upload)
            return
        got = self.parts(key, upload)
        missing = [n for n in range(1, part_count + 1) if n not in got]
        if missing:
            if self._complete_at(dest, size):  # another completion finished meanwhile
                return
            if not self._open(upload):
                raise UploadGone(f"upload {upload} is gone and {key} was never stored")
            raise PartsMissing(f"parts {missing[:5]} not uploaded")
        h = hashlib.sha256()
        total = 0
        fd, tmp = tempfile.mkstemp(dir=self.uploads, prefix=f"{upload}-", suffix=".blob")
        try:
            with os.fdopen(fd, "wb") as out:
                for n in range(1, part_count + 1):
                    with open(d / f"{n:05d}", "rb") as f:
                        while chunk := f.read(CHUNK):
                            h.update(chunk)
                            out.write(chunk)
                            total += len(chunk)
                out.flush()
                os.fsync(out.fileno())  # never a renamed file with bytes still in flight
            if total != size or h.hexdigest() != sha256:
                raise DigestMismatch(
                    f"uploaded {total} bytes with sha256 {h.hexdigest()}, expected {size}"
                    f" bytes with sha256 {sha256}"
                )
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, dest)
        except FileNotFoundError:
            # A concurrent completion removed the parts after storing the blob.
            if not self._complete_at(dest, size):
                raise DigestMismatch(f"the parts of upload {upload} are gone") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        self._finish(upload)

    def _complete_at(self, dest: Path, size: int) -> bool:
        """Whether a verified blob of ``size`` bytes is at ``dest`` (only verified files
        are ever renamed there)."""
        try:
            if dest.stat().st_size != size:
                return False
            os.utime(dest)  # the orphan sweep spares files touched within its grace period
            return True
        except FileNotFoundError:
            return False

    def abort(self, key: str, upload: str) -> None:
        if self._stray_file(upload):  # a stray spooled part or assembly file
            with contextlib.suppress(FileNotFoundError):
                (self.uploads / upload).unlink()
            return
        if self._batch(upload) is not None:
            self._finish(upload)
            return
        path = self._updir(upload)  # an upload begun alone, or a whole batch's folder
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:  # a stray spooled part or assembly file (list_unfinished)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def abort_many(self, uploads: list[tuple[str, str]]) -> None:
        # A batch whose every upload is aborted here or gone already goes in one rmtree.
        batches: dict[Path, set[str]] = {}
        for key, upload in uploads:
            batch = None if self._stray_file(upload) else self._batch(upload)
            if batch is None:
                self.abort(key, upload)
            else:
                batches.setdefault(batch[0], set()).add(batch[1])
        for folder, aborted in batches.items():
            gone = _gone(folder)
            if gone is None:
                continue
            if len(aborted | gone) >= (_count(folder.name) or 0):
                shutil.rmtree(folder, ignore_errors=True)
            else:
                for i in aborted:
                    self._finish(f"{folder.name}.{i}")

    def release(self, uploads: list[tuple[str, str]]) -> None:
        for folder in {b[0] for _k, u in uploads if (b := self._batch(u)) is not None}:
            shutil.rmtree(folder, ignore_errors=True)

    def list_objects(self) -> Iterator[Stored]:
        base = self.root / "sha256"
        for dirpath, _dirs, files in os.walk(base):
            for f in files:
                path = Path(dirpath, f)
                with contextlib.suppress(FileNotFoundError):
                    yield Stored(path.relative_to(self.root).as_posix(), _mtime(path))

    def list_unfinished(self) -> Iterator[Unfinished]:
        # Upload folders, and the files a crash leaves: spooled parts, assembly files.
        # A batch: its open uploads one by one, or the folder itself once all are gone.
        for entry in os.scandir(self.uploads):
            with contextlib.suppress(FileNotFoundError):
                started = _mtime(Path(entry.path))
                count = _count(entry.name)
                gone = _gone(Path(entry.path)) if count is not None else None
                if count is None or gone is None or len(gone) >= count:
                    yield Unfinished("", entry.name, started)
                    continue
                for i in range(count):
                    if str(i) not in gone:
                        yield Unfinished("", f"{entry.name}.{i}", started)

    def spool_dir(self) -> Path:
        return self.uploads
