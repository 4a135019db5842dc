"""Where batch inputs and outputs live: a local path or an ``s3://bucket/key`` URL.

S3 uses boto3 with the settings it shares with the registry (``jubako/s3.py``:
``JUBAKO_REGISTRY_S3_ENDPOINT_URL``, ``_REGION``, ``_ACCESS_KEY_ID``,
``_SECRET_ACCESS_KEY``, ``_ADDRESSING_STYLE``; without keys, boto3's own chain: ``AWS_*``
variables, instance or pod identity). The bucket comes
from the URL. Reads stream (ranged GETs for Parquet, which needs to seek); the final
output is a multipart upload that only appears when it completes, and each chunk's part
is one PUT, so no reader ever sees a half-written object.
"""

from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from jubako.errors import ConfigError, JubakoError, NotFound

PART_SIZE = 16 << 20  # multipart part size of the final upload (S3's minimum is 5 MiB)
READ_BLOCK = 8 << 20  # ranged GET size for seekable S3 reads


def is_s3(url: str) -> bool:
    return url.startswith("s3://")


def _split(url: str) -> tuple[str, str]:
    rest = url[len("s3://"):]
    bucket, _, key = rest.partition("/")
    if not bucket or not key:
        raise ConfigError(f"{url}: an S3 URL looks like s3://bucket/key")
    return bucket, key


_client: Any = None


def s3_client() -> Any:
    """A boto3 S3 client configured like the registry's (``JUBAKO_REGISTRY_S3_*``)."""
    global _client
    if _client is None:
        import boto3
        from botocore.config import Config

        from jubako.s3 import S3Access

        try:
            s = S3Access()
        except ValueError as e:
            raise ConfigError(f"S3 settings (JUBAKO_REGISTRY_S3_*): {e}") from None
        cfg = Config(
            signature_version="s3v4",
            s3={"addressing_style": s.s3_addressing_style},
            retries={"max_attempts": 5, "mode": "standard"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        creds = {}
        if s.s3_access_key_id:
            creds = {"aws_access_key_id": s.s3_access_key_id, "aws_secret_access_key": s.s3_secret_access_key}
        _client = boto3.client("s3", endpoint_url=s.s3_endpoint_url or None, region_name=s.s3_region,
                               config=cfg, **creds)
    return _client


def reset_client() -> None:
    global _client
    _client = None


def _s3_error(e: Exception, url: str) -> JubakoError:
    code = getattr(e, "response", {}).get("Error", {}).get("Code", "")
    if code in ("404", "NoSuchKey", "NotFound"):
        return NotFound(f"{url}: no such object")
    if code == "NoSuchBucket":
        return NotFound(f"{url}: no such bucket")
    return JubakoError(f"{url}: {e}")


@dataclass
class Info:
    size: int
    fingerprint: str  # changes when the object changes (mtime or ETag)


def stat(url: str) -> Info:
    if is_s3(url):
        bucket, key = _split(url)
        try:
            head = s3_client().head_object(Bucket=bucket, Key=key)
        except Exception as e:
            raise _s3_error(e, url) from None
        return Info(int(head["ContentLength"]), str(head.get("ETag", "")).strip('"'))
    try:
        st = os.stat(url)
    except FileNotFoundError:
        raise NotFound(f"{url}: no such file") from None
    return Info(st.st_size, f"{st.st_size}:{st.st_mtime_ns}")


class _Counting(io.RawIOBase):
    """A raw stream over another one that counts the bytes read (progress by bytes)."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        data = self.inner.read(len(b))
        n = len(data)
        b[:n] = data
        self.count += n
        return n

    def close(self) -> None:
        try:
            self.inner.close()
        finally:
            super().close()


def open_stream(url: str) -> tuple[IO[bytes], _Counting]:
    """A buffered binary stream read front to back, and its byte counter."""
    if is_s3(url):
        bucket, key = _split(url)
        try:
            body = s3_client().get_object(Bucket=bucket, Key=key)["Body"]
        except Exception as e:
            raise _s3_error(e, url) from None
    else:
        try:
            body = open(url, "rb", buffering=0)  # noqa: SIM115 - closed by the caller
        except FileNotFoundError:
            raise NotFound(f"{url}: no such file") from None
    raw = _Counting(body)
    return io.BufferedReader(raw, 1 << 20), raw


class S3SeekableReader(io.RawIOBase):
    """Random access to one S3 object through ranged GETs, one block cached."""

    def __init__(self, url: str, size: int):
        self.bucket, self.key = _split(url)
        self.size = size
        self.pos = 0
        self._block_start = -1
        self._block = b""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def _get(self, start: int, end: int) -> bytes:
        r = s3_client().get_object(Bucket=self.bucket, Key=self.key, Range=f"bytes={start}-{end - 1}")
        return bytes(r["Body"].read())

    def readinto(self, b: Any) -> int:
        n = min(len(b), self.size - self.pos)
        if n <= 0:
            return 0
        start = self.pos
        bs = self._block_start
        if bs >= 0 and bs <= start and start + n <= bs + len(self._block):
            data = self._block[start - bs : start - bs + n]
        elif n >= READ_BLOCK:
            data = self._get(start, start + n)
        else:
            self._block_start = start
            self._block = self._get(start, min(self.size, start + READ_BLOCK))
            data = self._block[:n]
        b[: len(data)] = data
        self.pos += len(data)
        return len(data)


def open_seekable(url: str) -> Any:
    if is_s3(url):
        return io.BufferedReader(S3SeekableReader(url, stat(url).size), 1 << 20)
    return url


# --- the parts folder (one object per finished chunk) -------------------------------


class Parts:
    """The folder next to the output holding finished chunks: ``<output>.parts/``."""

    def __init__(self, output: str):
        self.output = output
        self.s3 = is_s3(output)
        if self.s3:
            self.bucket, key = _split(output)
            self.prefix = key + ".parts/"
        else:
            self.dir = Path(output + ".parts")

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.s3 else str(self.dir)

    def list(self) -> list[str]:
        if self.s3:
            names: list[str] = []
            pager = s3_client().get_paginator("list_objects_v2")
            try:
                for page in pager.paginate(Bucket=self.bucket, Prefix=self.prefix):
                    names += [o["Key"][len(self.prefix):] for o in page.get("Contents", [])]
            except Exception as e:
                raise _s3_error(e, str(self)) from None
            return sorted(names)
        if not self.dir.is_dir():
            return []
        return sorted(p.name for p in self.dir.iterdir() if not p.name.startswith("."))

    def put(self, name: str, data: bytes) -> None:
        """Write one part whole: a temporary file renamed into place, or one PUT."""
        if self.s3:
            s3_client().put_object(Bucket=self.bucket, Key=self.prefix + name, Body=data)
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=f".{name}.")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.dir / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, name: str) -> bytes:
        if self.s3:
            return bytes(s3_client().get_object(Bucket=self.bucket, Key=self.prefix + name)["Body"].read())
        return (self.dir / name).read_bytes()

    def open(self, name: str) -> IO[bytes]:
        if self.s3:
            return io.BytesIO(self.get(name))
        return open(self.dir / name, "rb")  # noqa: SIM115

    def delete(self, names: list[str]) -> None:
        if not names:
            return
        if self.s3:
            for i in range(0, len(names), 1000):
                batch = [{"Key": self.prefix + n} for n in names[i : i + 1000]]
                s3_client().delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            return
        for n in names:
            (self.dir / n).unlink(missing_ok=True)

    def remove_all(self) -> None:
        self.delete(self.list())
        if not self.s3:
            if self.dir.is_dir():
                for p in self.dir.iterdir():  # temporaries of a killed run
                    p.unlink(missing_ok=True)
                self.dir.rmdir()


# --- final files, complete or absent ---------------------------------------------------


def exists(url: str) -> bool:
    try:
        stat(url)
        return True
    except NotFound:
        return False


def remove(url: str) -> None:
    if is_s3(url):
        bucket, key = _split(url)
        s3_client().delete_object(Bucket=bucket, Key=key)
    else:
        Path(url).unlink(missing_ok=True)


class AtomicWriter(io.RawIOBase):
    """A writable stream that becomes ``url`` only on :meth:`commit`.

    Local: a temporary file in the same folder, fsynced and renamed. S3: a multipart
    upload (parts of :data:`PART_SIZE`), completed on commit and aborted otherwise.
    """

    def __init__(self, url: str, tmp_dir: str | None = None):
        self.url = url
        self.s3 = is_s3(url)
        self.written = 0
        if self.s3:
            self.bucket, self.key = _split(url)
            self.upload_id = s3_client().create_multipart_upload(Bucket=self.bucket, Key=self.key)["UploadId"]
            self.buf = bytearray()
            self.parts: list[dict[str, Any]] = []
        else:
            path = Path(url)
            path.parent.mkdir(parents=True, exist_ok=True)
            # tmp_dir: a folder on the same file system (the rename must not cross one)
            where = Path(tmp_dir) if tmp_dir else path.parent
            where.mkdir(parents=True, exist_ok=True)
            fd, self.tmp = tempfile.mkstemp(dir=where, prefix=f".{path.name}.")
            self.f = os.fdopen(fd, "wb")

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.written

    def write(self, b: Any) -> int:
        n = len(b) if not isinstance(b, memoryview) else b.nbytes
        if self.s3:
            self.buf += b
            while len(self.buf) >= PART_SIZE:
                self._upload(bytes(self.buf[:PART_SIZE]))
                del self.buf[:PART_SIZE]
        else:
            self.f.write(b)
        self.written += n
        return n

    def _upload(self, data: bytes) -> None:
        num = len(self.parts) + 1
        r = s3_client().upload_part(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id,
                                    PartNumber=num, Body=data)
        self.parts.append({"PartNumber": num, "ETag": r["ETag"]})

    def close(self) -> None:  # pyarrow closes its sink; committing is explicit
        pass

    def commit(self) -> None:
        if self.s3:
            if self.buf or not self.parts:
                self._upload(bytes(self.buf))
                self.buf.clear()
            s3_client().complete_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=self.upload_id,
                MultipartUpload={"Parts": self.parts},
            )
        else:
            self.f.flush()
            os.fsync(self.f.fileno())
            self.f.close()
            os.replace(self.tmp, self.url)
        super().close()

    def abort(self) -> None:
        try:
            if self.s3:
                s3_client().abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)
            else:
                self.f.close()
                Path(self.tmp).unlink(missing_ok=True)
        finally:
            super().close()
