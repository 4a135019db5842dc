"""A bento's static web content, served by the proxy under ``/ui/`` (docs/runtime.md).

A service declares the folder (``@jubako.service(static="web")``); the build copies it into
the bento under ``static/`` and lists every file in the manifest with its size and sha256.

The request path is never joined onto a folder: it is looked up in the manifest's file
list, so ``..``, absolute paths, encoded dots and names the build did not list cannot reach
anything else (``%2e%2e`` arrives here already decoded once, as ``..``, and is refused like
it; a second decoding is never done). The file is then opened without following a link.

Caching: a URL keeps its name across bento versions, so browsers revalidate every time
(``Cache-Control: no-cache``) and get a cheap 304 by ``ETag``, the file's sha256 from the
manifest (nothing is hashed at run time), or by ``Last-Modified``, the bento's build time.
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote

from jubako import manifest as manifests
from jubako.manifest import STATIC_ROUTE, BentoManifest

from .codec import JSON, error_body

log = logging.getLogger("jubako.runtime.static")

PREFIX = STATIC_ROUTE
INDEX = "index.html"
CACHE_CONTROL = b"no-cache"
_THREAD_READ_BYTES = 256 << 10  # larger files are read off the event loop

# The standard library's own table, not the host's /etc/mime.types, so a type does not depend
# on the image; plus what it lacks or has stale (RFC 9239: JavaScript is text/javascript).
_TYPES = mimetypes.MimeTypes()
for _ext, _type in {".js": "text/javascript", ".mjs": "text/javascript", ".map": "application/json",
                    ".webmanifest": "application/manifest+json", ".wasm": "application/wasm",
                    ".woff": "font/woff", ".woff2": "font/woff2", ".webp": "image/webp"}.items():
    _TYPES.add_type(_type, _ext)
_CHARSET_TYPES = ("text/", "application/json", "application/manifest+json", "image/svg+xml")


class Response(NamedTuple):
    status: int
    body: bytes
    content_type: bytes
    headers: list[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class StaticFile:
    path: Path  # on disk, inside the bento
    size: int
    etag: bytes  # '"<sha256>"'
    content_type: bytes


def content_type(name: str) -> bytes:
    """The Content-Type of a file name; text types say UTF-8."""
    ctype, encoding = _TYPES.guess_type(name, strict=False)
    if ctype is None or encoding is not None:  # unknown, or compressed (x.css.gz): raw bytes
        return b"application/octet-stream"
    if ctype.startswith(_CHARSET_TYPES):
        ctype += "; charset=utf-8"
    return ctype.encode()


class Target(NamedTuple):
    """What a path under the prefix resolves to: a file's key, or a folder to redirect to
    with a trailing slash (its relative links resolve inside it only then)."""

    key: str
    redirect: bool = False


def resolve(files: Mapping[str, object], rel: str) -> Target | None:
    """The key of ``files`` (POSIX paths relative to the static folder) that ``rel``, the
    decoded request path after ``/ui/``, names; ``index.html`` for a folder; None for any
    path that names nothing listed, or has an empty, ``.`` or ``..`` segment, a backslash or
    a NUL byte."""
    if "\0" in rel or "\\" in rel:
        return None
    key = rel + INDEX if rel == "" or rel.endswith("/") else rel
    if any(seg in ("", ".", "..") for seg in key.split("/")):
        return None
    if key in files:
        return Target(key)
    if f"{key}/{INDEX}" in files:
        return Target(key, redirect=True)
    return None


def not_modified(headers: Iterable[tuple[bytes, bytes]], etag: bytes, last_modified: datetime) -> bool:
    """RFC 9110 13.1: If-None-Match decides when present (weak comparison), else
    If-Modified-Since (second resolution)."""
    inm = ims = None
    for k, v in headers:
        if k == b"if-none-match":
            inm = v if inm is None else inm + b"," + v
        elif k == b"if-modified-since":
            ims = v
    if inm is not None:
        tags = {t.strip().removeprefix(b"W/") for t in inm.split(b",")}
        return b"*" in tags or etag in tags
    if ims is None:
        return False
    try:
        since = parsedate_to_datetime(ims.decode("latin-1"))
    except (TypeError, ValueError, IndexError):
        return False  # an unreadable date is ignored, as the RFC says
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return last_modified <= since


def _read(path: Path, size: int) -> bytes | None:
    """The file's bytes, opened without following a link; None when it is not a regular
    file of the listed size (changed since the bento was verified)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    with open(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return None
        data = f.read(size + 1)
    return data if len(data) == size else None


class StaticSite:
    """The static files of one bento, by their path relative to its static folder."""

    def __init__(self, root: Path, manifest: BentoManifest):
        assert manifest.static is not None
        folder = manifest.static.path + "/"
        listed = [f for f in manifest.files if f.path.startswith(folder)]
        cap = manifests.MAX_STATIC_FILE_BYTES  # jubako build refuses more; another tool might not
        for f in listed:
            if f.size > cap:
                log.warning("static file %s has %d bytes, over the %d served: not served", f.path, f.size, cap)
        self.files = {
            f.path[len(folder):]: StaticFile(root / f.path, f.size, b'"%s"' % f.sha256.encode(),
                                             content_type(f.path))
            for f in listed if f.size <= cap
        }
        built = manifest.created_at if manifest.created_at.tzinfo else manifest.created_at.replace(tzinfo=UTC)
        self.last_modified = built.astimezone(UTC).replace(microsecond=0)
        self._last_modified = format_datetime(self.last_modified, usegmt=True).encode()

    @classmethod
    def of(cls, root: Path, manifest: BentoManifest) -> StaticSite | None:
        """The bento's static site; None when it declares no static content."""
        if manifest.static is None:
            return None
        site = cls(root, manifest)
        log.info("static content: %d file(s) served under %s/", len(site.files), PREFIX)
        return site

    @staticmethod
    def owns(path: str) -> bool:
        return path == PREFIX or path.startswith(PREFIX + "/")

    async def respond(self, method: str, path: str, headers: Iterable[tuple[bytes, bytes]],
                      root: str = "") -> Response:
        """The answer to ``method path`` (``path`` decoded, without the root path prefix)."""
        if method not in ("GET", "HEAD"):
            return Response(405, error_body(f"use GET {root}{path}"), JSON, [(b"allow", b"GET, HEAD")])
        if path == PREFIX:
            target: Target | None = Target("", redirect=True)
        else:
            target = resolve(self.files, path[len(PREFIX) + 1:])
        if target is None:
            return Response(404, error_body(f"no file {path}"), JSON, [])
        if target.redirect:
            where = f"{root}{PREFIX}/" + (quote(target.key) + "/" if target.key else "")
            return Response(307, b"", JSON, [(b"location", where.encode())])
        f = self.files[target.key]
        meta = [(b"etag", f.etag), (b"last-modified", self._last_modified), (b"cache-control", CACHE_CONTROL),
                (b"x-content-type-options", b"nosniff")]
        if not_modified(headers, f.etag, self.last_modified):
            return Response(304, b"", f.content_type, meta)
        if f.size > _THREAD_READ_BYTES:
            data = await asyncio.to_thread(_read, f.path, f.size)
        else:
            data = _read(f.path, f.size)
        if data is None:
            log.error("static file %s is no longer the file the bento listed", f.path)
            return Response(500, error_body(f"{path}: the file changed since the bento was verified"), JSON, [])
        return Response(200, data, f.content_type, meta)
