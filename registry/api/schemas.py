"""Request and response bodies of the REST API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field

State = Literal["uploading", "ready", "failed", "broken"]


class VersionPush(BaseModel):
    manifest: str = Field(description="bento.yaml or model.yaml, as YAML text")
    labels: dict[str, str] = Field(default_factory=dict, description="Added to the manifest's")
    force: bool = Field(False, description="Replace a ready version with different content")


class LabelsPatch(BaseModel):
    labels: dict[str, str | None] = Field(description="null removes a label")


class VersionOut(BaseModel):
    kind: Literal["bento", "model"]
    name: str
    version: str
    tag: str
    state: State
    digest: str
    size: int
    file_count: int
    labels: dict[str, str]
    created_at: datetime
    updated_at: datetime
    ready_at: datetime | None
    created_by: str


class VersionDetail(VersionOut):
    manifest: dict[str, Any]
    used_by: list[str]


class VersionPage(BaseModel):
    items: list[VersionOut]
    next_cursor: str | None


class PartOut(BaseModel):
    number: int
    size: int
    received: bool
    url: str | None = Field(None, description="Presigned PUT URL; null: PUT to the registry")


class BlobUploadOut(BaseModel):
    digest: str
    size: int
    part_size: int
    parts: list[PartOut]


class UploadOut(BaseModel):
    id: str
    expires_at: datetime
    blobs: list[BlobUploadOut]


class PushOut(BaseModel):
    version: VersionOut
    created: bool
    upload: UploadOut | None = Field(None, description="null when the version is already ready")


class CompleteIn(BaseModel):
    digest: str = Field(pattern=r"^sha256:[0-9a-f]{64}$", description="The manifest's digest")


class PartReceived(BaseModel):
    number: int
    size: int


class BlobDone(BaseModel):
    digest: str
    done: bool


class FileOut(BaseModel):
    path: str
    size: int
    sha256: str
    url: str = Field(description="Presigned GET URL, or a registry path under /api/v1/blobs")


class DownloadOut(BaseModel):
    tag: str
    digest: str
    manifest: str
    files: list[FileOut]


def _no_nul(value: str) -> str:
    if "\x00" in value:  # PostgreSQL refuses NUL in text
        raise ValueError("must not contain NUL bytes")
    return value


NoNulStr = Annotated[str, AfterValidator(_no_nul)]
MAX_JSON_DEPTH = 32  # free-form JSON kept and answered later (a deployment's status)


def _shallow(value: dict[str, Any]) -> dict[str, Any]:
    # Deeper documents would be stored, then fail every later answer that includes them
    # (pydantic refuses to serialize past its own depth limit).
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise ValueError(f"nested more than {MAX_JSON_DEPTH} levels deep")
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return value


class DeploymentIn(BaseModel):
    bento: str = Field(description="name:version the deployment runs")
    cluster: NoNulStr = ""
    status: Annotated[dict[str, Any], AfterValidator(_shallow)] = Field(default_factory=dict)


class DeploymentOut(DeploymentIn):
    namespace: str
    name: str
    updated_at: datetime


class TokenCreate(BaseModel):
    scope: Literal["read", "write", "admin"]
    user: str = Field("admin", min_length=1, max_length=128)
    name: str = Field("", max_length=128)
    expires_in_days: float | None = Field(None, gt=0, le=36500)


class TokenOut(BaseModel):
    id: int
    user: str
    name: str
    prefix: str
    scope: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(TokenOut):
    token: str = Field(description="The secret, shown this once")


class AuditOut(BaseModel):
    id: int
    at: datetime
    actor: str
    token_id: int | None
    action: str
    target: str
    detail: dict[str, Any]
    client: str


class AuditPage(BaseModel):
    items: list[AuditOut]
    next_cursor: int | None


class SweepOut(BaseModel):
    failed: int
    removed: int
    blobs_collected: int
    orphans_removed: int = 0  # storage objects no blob row names
    uploads_aborted: int = 0  # unfinished uploads of sessions that are gone


class Problem(BaseModel):
    detail: str


class ArchivePushed(BaseModel):
    kind: Literal["bento", "model"]
    tag: str
    digest: str
    created: bool = Field(description="false: the registry already had this exact version")
    uploaded_bytes: int


class ArchivePushOut(BaseModel):
    pushed: list[ArchivePushed] = Field(description="Models first, then the archive's bundle")
