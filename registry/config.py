"""Registry settings from environment variables (prefix ``JUBAKO_REGISTRY_``).

Every field is documented in docs/registry.md. With nothing set, the registry runs in
embedded mode: SQLite and a local folder under ``data_dir``, through the same code paths
as PostgreSQL + S3.
"""

from __future__ import annotations

import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from jubako.errors import ConfigError
from jubako.s3 import S3Access

_PLACEHOLDERS = {"", "changeme", "change-me", "secret", "changethis"}


def _default_data_dir() -> Path:
    from jubako import config

    return config.home() / "registry"


class Settings(S3Access):  # s3_endpoint_url, s3_region, keys, s3_addressing_style: jubako/s3.py
    model_config = SettingsConfigDict(env_prefix="JUBAKO_REGISTRY_", extra="ignore")

    data_dir: Path = Field(default_factory=_default_data_dir)
    database_url: str = ""  # default: sqlite:///<data_dir>/registry.db
    # Schema migrations at start-up: None means "only in embedded mode".
    migrate: bool | None = None

    storage: Literal["auto", "local", "s3"] = "auto"  # auto: s3 when a bucket is set
    storage_dir: Path | None = None  # local backend; default <data_dir>/blobs
    s3_bucket: str = ""
    s3_public_endpoint_url: str = ""  # the host clients reach, used to presign URLs
    s3_prefix: str = ""
    s3_create_bucket: bool = False
    presign: bool = True  # hand out presigned S3 URLs; False streams through the registry
    presign_expiry_s: int = 3600

    part_size: int = Field(default=64 << 20, ge=5 << 20)  # multipart part size
    upload_timeout_s: int = Field(default=3600, ge=0)  # abandoned uploads are failed after
    gc_grace_s: int = Field(default=600, ge=0)  # unreferenced blobs are kept this long
    sweep_interval_s: int = Field(default=300, ge=0)  # 0 disables the background sweeper

    secret_key: str = ""  # sessions/CSRF of the dashboard; generated in embedded mode
    bootstrap_token: str = ""  # an admin token to create at start when no token exists
    public_url: str = ""  # base URL of the registry as clients see it (download links)
    max_manifest_bytes: int = 4 << 20
    max_files: int = Field(default=100_000, ge=1)  # files listed in one manifest
    max_blob_bytes: int = Field(default=5 << 40, ge=1)  # one file (S3's largest object)
    # Request bodies: JSON and forms, then archive uploads (POST /api/v1/archives, the
    # dashboard's upload). Parts are also held to their declared size. Over a cap: 413.
    max_body_bytes: int = Field(default=16 << 20, ge=1024)
    max_upload_bytes: int = Field(default=16 << 30, ge=1024)
    # Failed token checks and logins per client address (and per user name for password
    # logins) within the window before 429; counted in this process, so per replica.
    auth_max_failures: int = Field(default=50, ge=0)  # 0: no limit
    auth_failure_window_s: int = Field(default=60, ge=1)
    environment: Literal["development", "production"] = "development"

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.environment == "production" and self.secret_key in _PLACEHOLDERS:
            raise ValueError(
                "JUBAKO_REGISTRY_SECRET_KEY must be set to a random value in production"
            )
        if self.storage == "s3" and not self.s3_bucket:
            raise ValueError("JUBAKO_REGISTRY_S3_BUCKET is required with storage=s3")
        if self.max_body_bytes <= self.max_manifest_bytes:
            # A push is the manifest inside JSON: every push would be refused with 413.
            raise ValueError(
                "JUBAKO_REGISTRY_MAX_BODY_BYTES must be larger than MAX_MANIFEST_BYTES"
                f" ({self.max_body_bytes} <= {self.max_manifest_bytes})"
            )
        return self

    @property
    def embedded(self) -> bool:
        return not self.database_url

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir.expanduser() / 'registry.db'}"

    @property
    def storage_kind(self) -> str:
        if self.storage == "auto":
            return "s3" if self.s3_bucket else "local"
        return self.storage

    @property
    def blob_dir(self) -> Path:
        return (self.storage_dir or self.data_dir / "blobs").expanduser()

    @property
    def should_migrate(self) -> bool:
        return self.embedded if self.migrate is None else self.migrate

    @cached_property
    def effective_secret_key(self) -> str:
        if self.secret_key:
            return self.secret_key
        path = self.data_dir.expanduser() / "secret_key"
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            key = secrets.token_urlsafe(32)
            path.write_text(key)
            path.chmod(0o600)
            return key


def load() -> Settings:
    try:
        return Settings()
    except ValueError as e:
        raise ConfigError(f"registry configuration: {e}") from None
