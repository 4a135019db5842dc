"""Pull integrity (issue 13 item 14): every blob is verified before the store shows it, and
a failed or interrupted pull leaves nothing usable. Against a real registry whose stored
bytes were altered, and against a small HTTP server that misbehaves on purpose (wrong
bytes, cut connections, ignored ranges, extra bytes) for both download readers (the
``http.client`` one for big files, the httpx one for small files)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from jubako.client import RegistryClient
from jubako.client.download import DIRECT_MIN, download
from jubako.client.pull import pull
from jubako.client.push import push
from jubako.client.registry import RegistryError
from jubako.errors import InvalidBundle
from jubako.store import Store

from .conftest import ADMIN
from .factories import make_bento, make_model

SMALL = 100_000  # read through httpx
BIG = DIRECT_MIN + 123_457  # read through http.client


@dataclass
class Blob:
    """What the fake server does with GET /blob (and what it saw)."""

    data: bytes
    wrong: bool = False  # flip one byte
    extra: bytes = b""  # bytes past the listed size
    cut_after: int | None = None  # close the connection after this many body bytes...
    cuts: int = 0  # ...this many times
    ignore_range: bool = False
    status: int = 0  # answer this error status instead
    stall_after: int | None = None  # send this many bytes, then wait for `release`
    stalled: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    ranges: list[str] = field(default_factory=list)
    auth: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    api: dict[str, bytes] = field(default_factory=dict)  # path -> JSON body


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    blob: Blob

    def log_message(self, *a: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        b = self.server.blob  # type: ignore[attr-defined]
        if self.path in b.api:
            body = b.api[self.path]
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        b.auth.append(self.headers.get("Authorization", ""))
        b.paths.append(self.path)
        if b.status:
            self.send_response(b.status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"no")
            return
        data = bytearray(b.data + b.extra)
        if b.wrong:
            data[len(data) // 2] ^= 0xFF
        start = 0
        rng = self.headers.get("Range")
        if rng:
            b.ranges.append(rng)
        if rng and not b.ignore_range:
            start = int(rng.removeprefix("bytes=").rstrip("-"))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = memoryview(data)[start:]
        if b.stall_after is not None:
            self.wfile.write(body[: b.stall_after])
            self.wfile.flush()
            b.stalled.set()
            b.release.wait(60)
            self.close_connection = True
            return
        if b.cuts and b.cut_after is not None:
            b.cuts -= 1
            self.wfile.write(body[: b.cut_after])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def fake() -> Iterator[tuple[str, Blob]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.blob = Blob(b"")  # type: ignore[attr-defined]
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", server.blob  # type: ignore[attr-defined]
    server.blob.release.set()  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("size", [SMALL, BIG])
def test_download_resumes_a_cut_connection_with_a_range(fake, tmp_path: Path, size: int) -> None:  # type: ignore[no-untyped-def]
    url, blob = fake
    blob.data = os.urandom(size)
    blob.cut_after, blob.cuts = size // 3, 2
    dest = tmp_path / "w.bin"
    with RegistryClient(url, ADMIN) as c:
        download(c, f"{url}/blob", dest, size, _sha(blob.data))
    assert dest.read_bytes() == blob.data
    assert len(blob.ranges) == 2 and all(r.startswith("bytes=") for r in blob.ranges)
    assert blob.auth == ["", "", ""]  # the registry token never goes to the storage URL


@pytest.mark.parametrize("size", [SMALL, BIG])
def test_download_starts_over_when_the_range_is_ignored(fake, tmp_path: Path, size: int) -> None:  # type: ignore[no-untyped-def]
    url, blob = fake
    blob.data = os.urandom(size)
    blob.cut_after, blob.cuts, blob.ignore_range = size // 2, 1, True
    dest = tmp_path / "w.bin"
    with RegistryClient(url, ADMIN) as c:
        download(c, f"{url}/blob", dest, size, _sha(blob.data))
    assert dest.read_bytes() == blob.data and len(blob.ranges) == 1


@pytest.mark.parametrize("size", [SMALL, BIG])
@pytest.mark.parametrize("fault", ["wrong", "extra", "cut every time"])
def test_download_refuses_bad_bytes_and_removes_the_file(
    fake, tmp_path: Path, size: int, fault: str
) -> None:  # type: ignore[no-untyped-def]
    url, blob = fake
    blob.data = os.urandom(size)
    if fault == "wrong":
        blob.wrong = True
    elif fault == "extra":
        blob.extra = b"more"
    else:
        blob.cut_after, blob.cuts = size // 10, 100  # 3 tries get 30 %
    dest = tmp_path / "w.bin"
    expected = InvalidBundle if fault != "cut every time" else RegistryError
    with RegistryClient(url, ADMIN) as c, pytest.raises(expected):
        download(c, f"{url}/blob", dest, size, _sha(blob.data))
    assert not dest.exists()


@pytest.mark.parametrize("size", [SMALL, BIG])
def test_download_error_status_is_not_retried(fake, tmp_path: Path, size: int) -> None:  # type: ignore[no-untyped-def]
    url, blob = fake
    blob.data, blob.status = os.urandom(size), 403
    dest = tmp_path / "w.bin"
    with RegistryClient(url, ADMIN) as c, pytest.raises(RegistryError) as e:
        download(c, f"{url}/blob", dest, size, _sha(blob.data))
    assert e.value.status == 403 and len(blob.auth) == 1 and not dest.exists()


def test_download_of_a_big_file_honours_a_proxy(fake, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Where the environment names a proxy, big files go through it too (httpx's reader)."""
    url, blob = fake
    blob.data = os.urandom(BIG)
    for k in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HTTP_PROXY", url)  # the fake server answers as the proxy
    dest = tmp_path / "w.bin"
    with RegistryClient(url, ADMIN) as c:
        download(c, "http://storage.invalid/blob", dest, BIG, _sha(blob.data))
    assert dest.read_bytes() == blob.data
    assert blob.paths == ["http://storage.invalid/blob"]


def _corrupt_stored_blobs(registry) -> int:  # type: ignore[no-untyped-def]
    """Flip one byte in every stored blob, keeping sizes (wherever the backend keeps them)."""
    s = registry.settings
    n = 0
    if s.storage == "s3":
        import boto3

        s3 = boto3.client("s3", endpoint_url=s.s3_endpoint_url)
        for obj in s3.list_objects_v2(Bucket=s.s3_bucket).get("Contents", []):
            data = bytearray(s3.get_object(Bucket=s.s3_bucket, Key=obj["Key"])["Body"].read())
            if data:
                data[len(data) // 2] ^= 0xFF
                s3.put_object(Bucket=s.s3_bucket, Key=obj["Key"], Body=bytes(data))
                n += 1
    else:
        for p in Path(s.data_dir).rglob("*"):
            data = bytearray(p.read_bytes()) if p.is_file() else b""
            if data and _sha(data) in str(p):  # a content-addressed blob
                data[len(data) // 2] ^= 0xFF
                p.write_bytes(bytes(data))
                n += 1
    return n


@pytest.mark.parametrize("backend", ["sqlite-local", "postgres-s3"])
def test_pull_of_altered_blobs_fails_and_leaves_the_store_unchanged(
    registry, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    src = Store(tmp_path / "src")
    model = make_model(src, "clf", "v1", {"w.bin": BIG, "cfg.json": b"{}"})
    make_bento(src, "svc", "v1", [model])
    with registry.client() as c:
        push(c, "svc:v1", store=src)
        assert _corrupt_stored_blobs(registry) >= 3
        dst = Store(tmp_path / "dst")
        with pytest.raises(InvalidBundle, match="sha256"):
            pull(c, "svc:v1", store=dst)
        assert dst.models.list() == [] and dst.bentos.list() == []
        assert not any(p.is_file() for p in dst.home.rglob("*"))  # no staged leftovers
        out = tmp_path / "out"
        with pytest.raises(InvalidBundle, match="sha256"):
            pull(c, "svc:v1", output=out)
        assert not (out / "bento.yaml").exists()  # its presence would mean complete


PULL = """
import sys
from pathlib import Path
from jubako.client import RegistryClient
from jubako.client.pull import pull
from jubako.store import Store
with RegistryClient(sys.argv[1], "t") as c:
    pull(c, "m:v1", kind="model", store=Store(Path(sys.argv[2])))
"""


def test_killed_pull_leaves_nothing_usable(fake, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A pull process SIGKILLed mid-download leaves no model in the store; the next pull
    completes it."""
    url, blob = fake
    src = Store(tmp_path / "src")
    model = make_model(src, "m", "v1", {"w.bin": BIG})
    blob.data = (model.path / "w.bin").read_bytes()
    f = model.manifest.files[0]
    info = {
        "tag": "m:v1",
        "digest": model.manifest.digest(),
        "manifest": model.manifest.dump().decode(),
        "files": [{"path": f.path, "size": f.size, "sha256": f.sha256, "url": f"{url}/blob"}],
    }
    blob.api["/api/v1/models/m/versions/v1/download"] = json.dumps(info).encode()
    blob.stall_after = BIG // 2
    home = tmp_path / "home"
    proc = subprocess.Popen([sys.executable, "-c", PULL, url, str(home)])
    try:
        assert blob.stalled.wait(60)
        staged = list((home / ".tmp").rglob("w.bin"))
        assert staged  # it was mid-download
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    store = Store(home)
    assert store.models.list() == [] and not store.models.exists(model.tag)
    blob.stall_after = None
    blob.release.set()
    with RegistryClient(url, "t") as c:
        pull(c, "m:v1", kind="model", store=store)
    got = store.models.get("m:v1")
    assert (got.path / "w.bin").read_bytes() == blob.data
    assert os.listdir(home / ".tmp") == []  # the killed pull's scratch was swept
