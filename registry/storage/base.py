"""The storage interface.

Blobs are files' contents addressed by sha256. An upload is multipart: parts arrive
either straight from the client (presigned URLs, S3 only) or streamed through the registry
(``put_part``), then ``complete`` assembles them and verifies size and sha256 before the
blob becomes visible at its key. Bodies are streamed in chunks, never held whole.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from jubako.errors import JubakoError

log = logging.getLogger("jubako.registry")

CHUNK = 1 << 20


class StorageError(JubakoError):
    pass


class DigestMismatch(StorageError):
    pass


class PartsMissing(StorageError):
    """Completion before every part arrived: nothing is dropped, send them and retry."""


class PartsReplaced(StorageError):
    """The store would not assemble the parts it had just listed, twice (a part sent again
    in between by a concurrent pusher of the same blob, with another ETag): the blob must
    start over."""


class UploadGone(StorageError):
    """The multipart upload no longer exists and no verified blob is at its key (a crash
    after it was completed, before the blob was verified): the blob must start over."""


@dataclass(frozen=True)
class Stored:
    """An object in storage, for finding orphans."""

    key: str
    modified: datetime


@dataclass(frozen=True)
class Unfinished:
    """A multipart upload (S3) or an upload's scratch entry (local) still in storage."""

    key: str
    upload: str
    started: datetime


@dataclass(frozen=True)
class Part:
    number: int
    size: int
    etag: str = ""


class Storage(abc.ABC):
    kind: str
    presigns: bool = False  # hands out URLs the client uses directly

    @abc.abstractmethod
    def key_for(self, digest: str, upload_id: str) -> str:
        """Where the blob of ``digest`` uploaded by ``upload_id`` will live."""

    @abc.abstractmethod
    def check(self) -> None:
        """Raise StorageError when the backend cannot be reached (readiness)."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool: ...

    @abc.abstractmethod
    def read(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The bytes of ``key`` (``end`` inclusive), in chunks."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; no error when it is already gone."""

    @abc.abstractmethod
    def put_empty(self, key: str) -> None: ...

    # --- multipart uploads ---------------------------------------------------------

    @abc.abstractmethod
    def begin(self, key: str) -> str:
        """Start a multipart upload to ``key``; return its id."""

    def begin_many(self, keys: list[str]) -> list[str]:
        """``begin`` for each key (backends with slow calls run them concurrently)."""
        return [self.begin(k) for k in keys]

    @abc.abstractmethod
    def put_part(self, key: str, upload: str, number: int, path: Path, size: int) -> None:
        """Store part ``number`` from a spooled file (the registry streams it through)."""

    @abc.abstractmethod
    def parts(self, key: str, upload: str) -> dict[int, Part]:
        """Parts received so far."""

    def upload_parts(self, key: str, upload: str) -> dict[int, Part] | None:
        """``parts``, or None when the upload no longer exists (completed or aborted)."""
        return self.parts(key, upload)

    def parts_many(self, uploads: list[tuple[str, str]]) -> list[dict[int, Part] | None]:
        """``upload_parts`` for each (key, upload)."""
        return [self.upload_parts(k, u) for k, u in uploads]

    def presign_part(self, key: str, upload: str, number: int, expiry: int) -> str | None:
        return None

    def presign_get(self, key: str, expiry: int, filename: str = "") -> str | None:
        return None

    @abc.abstractmethod
    def complete(self, key: str, upload: str, size: int, sha256: str, part_count: int) -> None:
        """Assemble the parts; verify size and sha256 (DigestMismatch otherwise, and then
        nothing is left at ``key``)."""

    @abc.abstractmethod
    def abort(self, key: str, upload: str) -> None:
        """Drop an unfinished upload and its parts; no error when already gone."""

    def abort_many(self, uploads: list[tuple[str, str]]) -> None:
        """``abort`` each (key, upload); failures are left to the orphan sweep."""
        for key, upload in uploads:
            try:
                self.abort(key, upload)
            except Exception:  # noqa: BLE001 - the orphan sweep finds it again
                log.warning("could not abort upload %s", upload, exc_info=True)

    def release(self, uploads: list[tuple[str, str]]) -> None:
        """The session that began these uploads ended, each one completed or aborted:
        drop what storage kept for them as a group (local batch folders).
        Nothing by default: a backend that keeps no groups has nothing to drop."""
        return None

    def list_keys(self) -> Iterator[str]:
        """Every blob key."""
        return (o.key for o in self.list_objects())

    @abc.abstractmethod
    def list_objects(self) -> Iterator[Stored]:
        """Every stored blob object with its modification time (to find orphans)."""

    @abc.abstractmethod
    def list_unfinished(self) -> Iterator[Unfinished]:
        """Every unfinished upload; ``abort(key, upload)`` removes one."""
