"""S3 through boto3: multipart uploads with presigned part URLs, presigned GETs.

Presigned URLs are signed for ``s3_public_endpoint_url`` when set (the host clients can
reach), while the registry itself talks to ``s3_endpoint_url``. Each upload goes to its own
key (``blobs/sha256/<hex>/<upload>``): S3 makes an object visible at CompleteMultipartUpload,
so a shared key would let a bad upload replace a good blob before it is verified.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ..config import Settings
from .base import (
    CHUNK,
    DigestMismatch,
    Part,
    PartsMissing,
    PartsReplaced,
    Storage,
    StorageError,
    Stored,
    Unfinished,
    UploadGone,
)

CONCURRENCY = 16  # S3 calls in flight for one request (the connection pool holds 32)


class S3Storage(Storage):
    kind = "s3"

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str = "",
        public_endpoint_url: str = "",
        region: str = "us-east-1",
        access_key_id: str = "",
        secret_access_key: str = "",
        addressing_style: str = "path",
        prefix: str = "",
        presign: bool = True,
        create_bucket: bool = False,
    ):
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.presigns = presign
        cfg = Config(
            signature_version="s3v4",
            s3={"addressing_style": addressing_style},
            retries={"max_attempts": 5, "mode": "standard"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            max_pool_connections=32,
        )
        creds = {}
        if access_key_id:
            creds = {"aws_access_key_id": access_key_id, "aws_secret_access_key": secret_access_key}
        self.client = boto3.client(
            "s3", endpoint_url=endpoint_url or None, region_name=region, config=cfg, **creds
        )
        self.presigner = boto3.client(
            "s3",
            endpoint_url=public_endpoint_url or endpoint_url or None,
            region_name=region,
            config=cfg,
            **creds,
        )
        if create_bucket:
            try:
                self.client.head_bucket(Bucket=bucket)
            except ClientError:
                self.client.create_bucket(Bucket=bucket)

    @classmethod
    def from_settings(cls, s: Settings) -> S3Storage:
        return cls(
            s.s3_bucket,
            endpoint_url=s.s3_endpoint_url,
            public_endpoint_url=s.s3_public_endpoint_url,
            region=s.s3_region,
            access_key_id=s.s3_access_key_id,
            secret_access_key=s.s3_secret_access_key,
            addressing_style=s.s3_addressing_style,
            prefix=s.s3_prefix,
            presign=s.presign,
            create_bucket=s.s3_create_bucket,
        )

    def key_for(self, digest: str, upload_id: str) -> str:
        return f"{self.prefix}blobs/sha256/{digest}/{upload_id}"

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError) as e:
            raise StorageError(f"S3 bucket {self.bucket}: {e}") from None

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
            return True
        except ClientError as e:
            if _code(e) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def read(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        kw = {}
        if start or end is not None:
            kw["Range"] = f"bytes={start}-{'' if end is None else end}"
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key, **kw)["Body"]
        except ClientError as e:
            raise StorageError(f"S3 object {key}: {e}") from None
        try:
            yield from body.iter_chunks(CHUNK)
        finally:
            body.close()

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def put_empty(self, key: str) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=b"")

    def begin(self, key: str) -> str:
        return self.client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]

    def begin_many(self, keys: list[str]) -> list[str]:
        # One round trip per blob: a manifest of 30 000 small files would wait on them in
        # turn (the client's pool allows 32 connections).
        if len(keys) < 2:
            return [self.begin(k) for k in keys]
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            return list(pool.map(self.begin, keys))

    def put_part(self, key: str, upload: str, number: int, path: Path, size: int) -> None:
        with open(path, "rb") as f:
            self.client.upload_part(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload,
                PartNumber=number,
                Body=f,
                ContentLength=size,
            )

    def parts(self, key: str, upload: str) -> dict[int, Part]:
        return self._parts_or_none(key, upload) or {}

    def upload_parts(self, key: str, upload: str) -> dict[int, Part] | None:
        return self._parts_or_none(key, upload)

    def parts_many(self, uploads: list[tuple[str, str]]) -> list[dict[int, Part] | None]:
        if len(uploads) < 2:
            return [self.upload_parts(k, u) for k, u in uploads]
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            return list(pool.map(lambda ku: self.upload_parts(*ku), uploads))

    def _list_parts(self, key: str, upload: str) -> dict[int, Part]:
        out: dict[int, Part] = {}
        pages = self.client.get_paginator("list_parts").paginate(
            Bucket=self.bucket, Key=key, UploadId=upload
        )
        for page in pages:
            for p in page.get("Parts", []):
                out[p["PartNumber"]] = Part(p["PartNumber"], p["Size"], p["ETag"])
        return out

    def presign_part(self, key: str, upload: str, number: int, expiry: int) -> str | None:
        if not self.presigns:
            return None
        return self.presigner.generate_presigned_url(
            "upload_part",
            Params={"Bucket": self.bucket, "Key": key, "UploadId": upload, "PartNumber": number},
            ExpiresIn=expiry,
        )

    def presign_get(self, key: str, expiry: int, filename: str = "") -> str | None:
        if not self.presigns:
            return None
        return self.presigner.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expiry
        )

    def complete(self, key: str, upload: str, size: int, sha256: str, part_count: int) -> None:
        # Idempotent: a completion that finds the multipart upload gone (a concurrent
        # completion, or a crash after CompleteMultipartUpload) verifies the object instead.
        # InvalidPart: a part listed a moment ago was replaced since (every joiner of a push
        # may send the same part; with SSE-KMS, or moto under load, its ETag changes): list
        # again and retry once, then start the blob over.
        try:
            for attempt in range(2):
                got = self._parts_or_none(key, upload)
                if got is None:
                    break
                missing = [n for n in range(1, part_count + 1) if n not in got]
                if missing:
                    raise PartsMissing(f"parts {missing[:5]} not uploaded")
                total = sum(got[n].size for n in range(1, part_count + 1))
                if total != size:
                    raise DigestMismatch(f"uploaded {total} bytes, expected {size}")
                parts = [{"PartNumber": n, "ETag": got[n].etag} for n in range(1, part_count + 1)]
                try:
                    self.client.complete_multipart_upload(
                        Bucket=self.bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
                    )
                    break
                except ClientError as e:
                    if _code(e) == "NoSuchUpload":
                        break
                    if _code(e) != "InvalidPart":
                        raise
                    if attempt:
                        raise PartsReplaced(f"parts of {key} changed while it was completed") from None
            self._verify(key, size, sha256, gone=upload)
        except (ClientError, BotoCoreError) as e:
            raise StorageError(f"S3 completion of {key}: {e}") from None

    def _parts_or_none(self, key: str, upload: str) -> dict[int, Part] | None:
        try:
            return self._list_parts(key, upload)
        except ClientError as e:
            if _code(e) == "NoSuchUpload":
                return None
            raise

    def _verify(self, key: str, size: int, sha256: str, *, gone: str) -> None:
        # S3 has no whole-object sha256 for multipart uploads: read it back, streamed.
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as e:
            if _code(e) in ("404", "NoSuchKey", "NotFound"):
                raise UploadGone(f"upload {gone} is gone and {key} was never stored") from None
            raise
        if head["ContentLength"] != size:
            self.delete(key)
            raise DigestMismatch(f"stored {head['ContentLength']} bytes, expected {size}")
        h = hashlib.sha256()
        n = 0
        for chunk in self.read(key):
            h.update(chunk)
            n += len(chunk)
        if n != size or h.hexdigest() != sha256:
            self.delete(key)
            raise DigestMismatch(
                f"uploaded {n} bytes with sha256 {h.hexdigest()}, expected {size} bytes with"
                f" sha256 {sha256}"
            )

    def abort(self, key: str, upload: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload)
        except ClientError as e:
            if _code(e) != "NoSuchUpload":
                raise

    def list_objects(self) -> Iterator[Stored]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{self.prefix}blobs/"
        )
        for page in pages:
            for obj in page.get("Contents", []):
                yield Stored(obj["Key"], obj["LastModified"])

    def list_unfinished(self) -> Iterator[Unfinished]:
        pages = self.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=f"{self.prefix}blobs/"
        )
        for page in pages:
            for u in page.get("Uploads", []):
                yield Unfinished(u["Key"], u["UploadId"], u["Initiated"])


def _code(e: ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))
