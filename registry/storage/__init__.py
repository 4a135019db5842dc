"""Blob storage backends: S3 (boto3) and a local folder, behind one interface."""

from __future__ import annotations

from ..config import Settings
from .base import Storage, StorageError


def from_settings(settings: Settings) -> Storage:
    if settings.storage_kind == "s3":
        from .s3 import S3Storage

        return S3Storage.from_settings(settings)
    from .local import LocalStorage

    return LocalStorage(settings.blob_dir)


__all__ = ["Storage", "StorageError", "from_settings"]
