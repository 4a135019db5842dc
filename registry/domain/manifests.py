"""Checks of a pushed manifest: names, paths, labels, and the blobs it declares."""

from __future__ import annotations

import re
from typing import Any

from jubako.errors import InvalidBundle
from jubako.manifest import BentoManifest, ModelManifest, parse_manifest
from jubako.tags import LATEST, Tag

from ..errors import BadRequest

EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


MANIFEST_KINDS: dict[str, type[BentoManifest] | type[ModelManifest]] = {
    "bento": BentoManifest,
    "model": ModelManifest,
}


LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)


def check_name(kind: str, name: str, version: str | None = None) -> None:
    Tag(name, version or LATEST).validate()


MAX_PATH = 1024  # the version_files.path column


def _check_paths(kind: str, manifest: BentoManifest | ModelManifest) -> None:
    seen = set()
    for f in manifest.files:
        p = f.path
        parts = p.split("/")
        if (
            not p
            or p.startswith("/")
            or "\\" in p
            or "\x00" in p
            or any(s in ("", ".", "..") for s in parts)
        ):
            raise InvalidBundle(f"files: unsafe path {p!r}")
        if len(p) > MAX_PATH:
            raise InvalidBundle(f"files: path {p[:60]!r}... longer than {MAX_PATH} characters")
        if p in ("bento.yaml", "model.yaml"):
            raise InvalidBundle(f"files: {p!r} is the manifest itself")
        if kind == "bento" and parts[0] == "models":
            raise InvalidBundle(f"files: {p!r}: models/ is reserved for referenced models")
        if p in seen:
            raise InvalidBundle(f"files: {p!r} listed twice")
        seen.add(p)


def parse(kind: str, name: str, version: str, text: str) -> BentoManifest | ModelManifest:
    check_name(kind, name, version)
    if version == LATEST:
        raise BadRequest("'latest' is not a version one can push")
    m = parse_manifest(text.encode(), "manifest", MANIFEST_KINDS[kind])
    if (m.name, m.version) != (name, version):
        raise InvalidBundle(f"manifest names {m.tag}, but the request is for {name}:{version}")
    _check_paths(kind, m)
    return m


def check_labels(labels: dict[str, Any]) -> dict[str, str]:
    for k, v in labels.items():
        if not LABEL_KEY.fullmatch(k):
            raise BadRequest(f"invalid label key {k!r}")
        if v is not None and (not isinstance(v, str) or len(v) > 255 or "\x00" in v):
            raise BadRequest(
                f"label {k!r}: value must be a string of at most 255 characters, without NUL"
            )
    return labels


def wanted_blobs(
    m: BentoManifest | ModelManifest, *, max_files: int, max_blob_bytes: int
) -> dict[str, int]:
    """The manifest's blobs, digest -> size, refusing declarations no bytes can match: a
    blob is only ever recorded under a digest verified from bytes of the declared size."""
    if len(m.files) > max_files:
        raise InvalidBundle(f"files: {len(m.files)} files, at most {max_files} are accepted")
    wanted: dict[str, int] = {}
    for f in m.files:
        if f.size > max_blob_bytes:
            raise InvalidBundle(
                f"files: {f.path!r}: {f.size} bytes is larger than {max_blob_bytes}"
            )
        if (f.size == 0) != (f.sha256 == EMPTY_SHA256):
            raise InvalidBundle(f"files: {f.path!r}: {f.size} bytes cannot have sha256 {f.sha256}")
        if wanted.setdefault(f.sha256, f.size) != f.size:
            raise InvalidBundle(f"files: sha256 {f.sha256} is declared with two sizes")
    return wanted
