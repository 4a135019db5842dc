"""Blob downloads for ``jubako pull``: one streamed GET per file, hashed and written as it
arrives, resumed with a ``Range`` request after a transport error, and checked (size and
sha256) before it returns. The caller downloads into a staging directory and commits it
into the store only after every file passed, so nothing unverified is ever visible.

Why two readers. Profiled on a 1 GiB blob from moto's S3 server (bench/README.md,
"Registry"), client CPU per GiB: httpx ``iter_bytes(1 MiB)`` 2.3-2.8 s (h11 copies every
64 KiB read, the re-chunking copies again), httpx ``iter_raw`` 1.4-1.5 s, stdlib
``http.client`` reading into a reused 1 MiB buffer 0.9-1.05 s, like raw boto3; sha256 is
another 0.75 s. So a big file is read with ``http.client`` into a few reused buffers while
a second thread hashes and writes the previous ones (hashlib and ``os.write`` release the
GIL, so both cores work). Small files, and URLs the environment sends through a proxy, go
through the shared httpx client (its keep-alive pool matters more there than the copies).

One stream per file, not parallel ranged GETs: moto reads the whole object for every
ranged GET (2.5x slower here), and a pull of several files already runs ``parallel``
streams. No fsync: like the raw baseline, durability is the file system's; the store's
rename is what makes a bundle visible.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import queue
import re
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

import httpx

from jubako.errors import InvalidBundle

from .registry import RegistryClient, RegistryError, raise_for

RETRIES = 3  # connections per file: the first plus two resumptions
CHUNK = 1 << 20  # bytes per socket read and per buffer
DEPTH = 4  # buffers per file in flight: bounds memory at DEPTH * CHUNK per stream
DIRECT_MIN = 8 << 20  # files from this size on are read with http.client
CONTENT_RANGE = re.compile(r"bytes (\d+)-")

Progress = Callable[[int], None]


class _Writer:
    """Hashes and writes filled buffers in order on its own thread, and hands them back."""

    def __init__(self, out: BinaryIO, size: int):
        self.out = out
        self.sha = hashlib.sha256()
        self.error: BaseException | None = None
        self.free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        for _ in range(DEPTH):
            self.free.put(bytearray(min(CHUNK, max(size, 1))))
        self.todo: queue.Queue[tuple[bytearray, int] | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="jubako-pull-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (item := self.todo.get()) is not None:
            buf, n = item
            try:
                if self.error is None:
                    with memoryview(buf)[:n] as view:
                        self.sha.update(view)
                        while view:  # a raw write may take part of the buffer
                            view = view[self.out.write(view) :]
            except BaseException as e:  # noqa: BLE001 -- raised in the reading thread
                self.error = e
            self.free.put(buf)
            self.todo.task_done()
        self.todo.task_done()

    def buffer(self) -> bytearray:
        buf = self.free.get()  # waits while DEPTH buffers are queued: bounded memory
        if self.error is not None:
            self.free.put(buf)
            raise self.error
        return buf

    def put(self, buf: bytearray, n: int) -> None:
        self.todo.put((buf, n))

    def drain(self) -> None:
        self.todo.join()
        if self.error is not None:
            raise self.error

    def restart(self) -> None:
        """Back to byte 0 (the server ignored the Range header)."""
        self.drain()
        self.out.seek(0)
        self.out.truncate()
        self.sha = hashlib.sha256()

    def close(self) -> None:
        self.todo.put(None)
        self.thread.join()


class _Response:
    """A streamed GET: status, where its body starts, and ``readinto``."""

    status: int
    start: int  # the offset of the first body byte in the blob

    def readinto(self, buf: memoryview) -> int:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


def _start_of(status: int, content_range: str | None) -> int:
    if status != 206:
        return 0
    m = CONTENT_RANGE.match(content_range or "")
    return int(m.group(1)) if m else -1


class _Direct(_Response):
    """``http.client``: reads straight into the caller's buffer (no per-read copies)."""

    def __init__(self, req: httpx.Request, timeout: float):
        u = urlsplit(str(req.url))
        port = u.port
        if u.scheme == "https":
            ctx = httpx.create_ssl_context()  # the CA bundle httpx would use
            self.conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                u.hostname or "", port, timeout=timeout, context=ctx
            )
        else:
            self.conn = http.client.HTTPConnection(u.hostname or "", port, timeout=timeout)
        target = u.path or "/"
        if u.query:
            target += "?" + u.query
        headers = {k: v for k, v in req.headers.items() if k.lower() != "accept-encoding"}
        try:
            self.conn.request("GET", target, headers=headers)
            self.resp = self.conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
            self.conn.close()
            raise RegistryError(f"download failed: {e}") from None
        self.status = self.resp.status
        self.start = _start_of(self.status, self.resp.getheader("Content-Range"))
        if not 200 <= self.status < 300:
            body = self.resp.read(64 << 10)
            self.conn.close()
            raise_for(httpx.Response(self.status, content=body, headers=self.resp.getheaders()))

    def readinto(self, buf: memoryview) -> int:
        return self.resp.readinto(buf)

    def close(self) -> None:
        self.conn.close()


class _Pooled(_Response):
    """The shared httpx client (keep-alive, proxies): copies each chunk into the buffer."""

    def __init__(self, client: RegistryClient, url: str, start: int):
        self.resp = client.stream(url, start=start)
        self.status = self.resp.status_code
        self.start = _start_of(self.status, self.resp.headers.get("Content-Range"))
        self.chunks: Iterator[bytes] = self.resp.iter_bytes()
        self.rest = memoryview(b"")

    def readinto(self, buf: memoryview) -> int:
        if not self.rest:
            self.rest = memoryview(next(self.chunks, b""))
        n = min(len(buf), len(self.rest))
        buf[:n] = self.rest[:n]
        self.rest = self.rest[n:]
        return n

    def close(self) -> None:
        self.resp.close()


def _proxied(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    proxies = urllib.request.getproxies()
    scheme = urlsplit(url).scheme
    return bool(proxies.get(scheme) or proxies.get("all")) and not urllib.request.proxy_bypass(host)


def _open(client: RegistryClient, url: str, size: int, start: int) -> _Response:
    http_client = client.raw if url.startswith(("http://", "https://")) else client.http
    headers = {"Range": f"bytes={start}-"} if start else {}
    req = http_client.build_request("GET", url, headers=headers)  # base URL, token, UA
    if size < DIRECT_MIN or client.custom_transport or _proxied(str(req.url)):
        return _Pooled(client, url, start)
    return _Direct(req, client.read_timeout)


_TRANSIENT = (OSError, http.client.HTTPException, httpx.TransportError, RegistryError)


def download(
    client: RegistryClient,
    url: str,
    dest: Path,
    size: int,
    sha256: str,
    progress: Progress = lambda n: None,
) -> None:
    """Download one blob to ``dest`` and verify it; on any failure ``dest`` is removed."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    ok = False
    with open(dest, "wb", buffering=0) as out:
        writer = _Writer(out, size)
        try:
            got = _receive(client, url, size, writer, progress)
            writer.drain()
            digest = writer.sha.hexdigest()
            if got != size or digest != sha256:
                raise InvalidBundle(
                    f"{dest.name}: downloaded {got} bytes with sha256 {digest}, the manifest"
                    f" lists {size} bytes with sha256 {sha256}"
                )
            ok = True
        finally:
            writer.close()
            if not ok:
                with contextlib.suppress(OSError):
                    dest.unlink()


def _receive(
    client: RegistryClient, url: str, size: int, writer: _Writer, progress: Progress
) -> int:
    got = 0
    for attempt in range(RETRIES):
        if got >= size and attempt:
            break
        try:
            resp = _open(client, url, size, got)
        except RegistryError as e:
            if e.status or attempt == RETRIES - 1:  # an HTTP answer is not transient
                raise
            continue
        try:
            if resp.start != got:  # the server ignored our Range: take it from byte 0
                if resp.start != 0:
                    raise RegistryError(f"download: the server answered a range at {resp.start}")
                writer.restart()
                progress(-got)
                got = 0
            while True:
                buf = writer.buffer()
                try:
                    n = resp.readinto(memoryview(buf))
                except BaseException:
                    writer.free.put(buf)
                    raise
                if not n:
                    writer.free.put(buf)
                    if got < size:  # http.client reports an early close as the end
                        raise ConnectionError(f"connection closed at byte {got} of {size}")
                    return got
                if got + n > size:
                    writer.free.put(buf)
                    raise InvalidBundle(f"more than the {size} bytes listed")
                writer.put(buf, n)
                got += n
                progress(n)
        except _TRANSIENT as e:
            if writer.error is not None or (isinstance(e, RegistryError) and e.status):
                raise
            if attempt == RETRIES - 1:
                raise RegistryError(f"download failed after {RETRIES} tries: {e}") from None
        finally:
            resp.close()
    return got
