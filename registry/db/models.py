"""Tables of the registry. Change them only together with a migration in migrations/."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None:
            if value.tzinfo is None:
                value = value.replace(tzinfo=UTC)
            value = value.astimezone(UTC)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


# Version states. BROKEN: a bento whose model was deleted with force (never swept; pushing
# the model and the bento again repairs it).
UPLOADING, READY, FAILED, BROKEN = "uploading", "ready", "failed", "broken"
KINDS = ("bento", "model")


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))  # dashboard login
    scope: Mapped[str | None] = mapped_column(String(16))  # what a password login may do
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Token(Base):
    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # shown in listings, never the secret
    scope: Mapped[str] = mapped_column(String(16))  # read | write | admin
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    user: Mapped[User] = relationship(lazy="joined")


class Repository(Base):
    __tablename__ = "repositories"
    __table_args__ = (UniqueConstraint("kind", "name", name="uq_repositories_kind_name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    name: Mapped[str] = mapped_column(String(63))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Version(Base):
    __tablename__ = "versions"
    __table_args__ = (
        UniqueConstraint("repository_id", "version", name="uq_versions_repository_version"),
        Index("ix_versions_kind_created", "kind", "created_at", "id"),
        Index("ix_versions_kind_name_created", "kind", "name", "created_at", "id"),
        Index("ix_versions_state_updated", "state", "updated_at"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(8))  # denormalized from the repository,
    name: Mapped[str] = mapped_column(String(63))  # so listings need no join
    version: Mapped[str] = mapped_column(String(63))
    state: Mapped[str] = mapped_column(String(16), default=UPLOADING)
    digest: Mapped[str] = mapped_column(String(71))  # "sha256:<hex>" of the manifest
    manifest: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    file_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ready_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(128), default="")
    labels: Mapped[list[Label]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", passive_deletes=True
    )

    @property
    def tag(self) -> str:
        return f"{self.name}:{self.version}"

    @property
    def label_dict(self) -> dict[str, str]:
        return {lb.key: lb.value for lb in self.labels}


class Label(Base):
    __tablename__ = "version_labels"
    __table_args__ = (Index("ix_version_labels_key_value", "key", "value"),)
    version_id: Mapped[int] = mapped_column(
        ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(317), primary_key=True)
    value: Mapped[str] = mapped_column(String(255))


class VersionFile(Base):
    __tablename__ = "version_files"
    version_id: Mapped[int] = mapped_column(
        ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True
    )
    path: Mapped[str] = mapped_column(String(1024), primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), index=True)  # hex sha256
    size: Mapped[int] = mapped_column(BigInteger)


class VersionRef(Base):
    """A bento version uses a model version."""

    __tablename__ = "version_refs"
    bento_version_id: Mapped[int] = mapped_column(
        ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True
    )
    model_version_id: Mapped[int] = mapped_column(
        ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class Blob(Base):
    """A file's content, stored once whatever the number of versions holding it."""

    __tablename__ = "blobs"
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)  # hex sha256
    size: Mapped[int] = mapped_column(BigInteger)
    key: Mapped[str] = mapped_column(String(512))  # where the storage backend keeps it
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Upload(Base):
    """The upload session of one version push."""

    __tablename__ = "uploads"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    version_id: Mapped[int] = mapped_column(
        ForeignKey("versions.id", ondelete="CASCADE"), unique=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    created_by: Mapped[str] = mapped_column(String(128), default="")
    # Loaded only when asked for (a push may have tens of thousands); the domain reads
    # them as rows (domain/uploads.py), and the database deletes them with the upload.
    blobs: Mapped[list[BlobUpload]] = relationship(
        cascade="all, delete-orphan", lazy="select", passive_deletes=True
    )
    version: Mapped[Version] = relationship(lazy="joined")


class BlobUpload(Base):
    __tablename__ = "blob_uploads"
    __table_args__ = (
        UniqueConstraint("upload_id", "digest", name="uq_blob_uploads_upload_digest"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    upload_id: Mapped[str] = mapped_column(ForeignKey("uploads.id", ondelete="CASCADE"))
    digest: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    key: Mapped[str] = mapped_column(String(512))
    part_size: Mapped[int] = mapped_column(BigInteger)
    multipart_id: Mapped[str] = mapped_column(String(1024), default="")
    done: Mapped[bool] = mapped_column(default=False)

    @property
    def part_count(self) -> int:
        return max(1, -(-self.size // self.part_size))


class AuditEvent(Base):
    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(128))  # user name
    token_id: Mapped[int | None] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(256))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    client: Mapped[str] = mapped_column(String(64), default="")


class Deployment(Base):
    """A BentoDeployment as reported by the operator."""

    __tablename__ = "deployments"
    __table_args__ = (Index("ix_deployments_bento", "bento_name", "bento_version"),)
    namespace: Mapped[str] = mapped_column(String(253), primary_key=True)
    name: Mapped[str] = mapped_column(String(253), primary_key=True)
    cluster: Mapped[str] = mapped_column(String(253), default="")
    bento_name: Mapped[str] = mapped_column(String(63))
    bento_version: Mapped[str] = mapped_column(String(63))
    status: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
