"""The bento and model manifests (``bento.yaml`` / ``model.yaml``).

A manifest lists every file of its bundle with size and sha256, so the digest of the
manifest bytes identifies the whole bundle. ``schema_version`` lets the format evolve:
readers refuse versions newer than they know.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from . import __version__, manifest_load, safeyaml
from .digest import sha256_bytes
from .errors import InvalidBundle
from .tags import NAME_PATTERN, VERSION_PATTERN, Tag

# The newest format this jubako reads. A manifest is written with the lowest version that
# describes it (1, unless it uses a field added later), so older readers keep reading it.
SCHEMA_VERSION = 2
STATIC_SCHEMA_VERSION = 2  # bento.yaml's `static` (static web content)
BENTO_MANIFEST = "bento.yaml"
MODEL_MANIFEST = "model.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class FileEntry(_Strict):
    path: str
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


# --- API input/output types --------------------------------------------------------


def shape_text(shape: list[int | None]) -> str:
    """A tensor shape as messages show it: ``(n, 16)``, ``n`` for a free dimension."""
    return "(" + ", ".join("n" if d is None else str(d) for d in shape) + ")"


class TensorSpec(_Strict):
    """An n-dimensional array; ``None`` in ``shape`` is a free dimension."""

    kind: Literal["tensor"] = "tensor"
    dtype: str
    shape: list[int | None]
    container: Literal["numpy", "torch"] = "numpy"


class JSONSpec(_Strict):
    """A JSON value validated by a JSON schema (from a pydantic model, list or dict)."""

    kind: Literal["json"] = "json"
    json_schema: dict[str, Any] = Field(default_factory=dict, alias="schema")
    model: str | None = None  # import path of the pydantic model, when there is one


class TextSpec(_Strict):
    kind: Literal["text"] = "text"


class BytesSpec(_Strict):
    kind: Literal["bytes"] = "bytes"
    content_type: str = "application/octet-stream"


IOSpec = Annotated[TensorSpec | JSONSpec | TextSpec | BytesSpec, Field(discriminator="kind")]


class BatchingSpec(_Strict):
    max_batch_size: int = Field(ge=1)
    max_latency_ms: float = Field(gt=0)


class ApiSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    route: str
    input: IOSpec
    output: IOSpec
    batchable: bool = False
    batching: BatchingSpec | None = None
    is_async: bool = False
    doc: str = ""


# --- Bundles ----------------------------------------------------------------------


class ModelRef(_Strict):
    """A model used by a bento, pinned to a version and to the digest of its manifest."""

    tag: str
    digest: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")

    @property
    def parsed(self) -> Tag:
        return Tag.parse(self.tag)


class PythonSpec(_Strict):
    """What the bento needs from Python (see docs/requirements.md)."""

    version: str = ""  # major.minor of the interpreter that built it
    requirements: list[str] = Field(default_factory=list)  # explicit lines of the build config
    inferred: list[str] = Field(default_factory=list)  # "name==version", from the import scan
    wheels: list[str] = Field(default_factory=list)  # bundled wheel files, relative to the bento


STATIC_ROUTE = "/ui"  # where the proxy serves a bento's static content (runtime/static.py)
# the largest static file: the proxy holds a file in memory while it answers it (larger
# assets belong in object storage or a CDN); the build refuses more, the proxy skips it
MAX_STATIC_FILE_BYTES = 32 << 20


class StaticSpec(_Strict):
    """Static web content a service declared (``@jubako.service(static="web")``): the files
    are listed in ``files`` under ``static/`` like any other, and the proxy serves them under
    ``/ui/`` (docs/runtime.md)."""

    # fixed, so a crafted manifest cannot have the proxy serve src/ or the models
    path: Literal["static"] = "static"
    source: str = ""  # the folder as declared, relative to the service's module (for people)


class _Bundle(_Strict):
    # fields that were added to the format later: left out of the dump while unset, so a
    # manifest written before them keeps its bytes, and its digest
    _omit_unset: ClassVar[tuple[str, ...]] = ()

    schema_version: int = 1
    name: str = Field(pattern=f"^{NAME_PATTERN}$")
    version: str = Field(pattern=f"^{VERSION_PATTERN}$")
    created_at: datetime
    labels: dict[str, str] = Field(default_factory=dict)
    description: str = ""
    jubako_version: str = __version__
    files: list[FileEntry] = Field(default_factory=list)

    @field_validator("schema_version")
    @classmethod
    def _known_schema(cls, v: int) -> int:
        if v > SCHEMA_VERSION:
            raise ValueError(
                f"schema_version {v} is newer than this jubako understands ({SCHEMA_VERSION});"
                " upgrade jubako"
            )
        return v

    @property
    def tag(self) -> Tag:
        return Tag(self.name, self.version)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def dump(self) -> bytes:
        data = self.model_dump(mode="json", by_alias=True)
        for key in self._omit_unset:
            if data.get(key) is None:
                data.pop(key, None)
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True).encode()

    def digest(self) -> str:
        return "sha256:" + sha256_bytes(self.dump())


class BentoManifest(_Bundle):
    kind: Literal["bento"] = "bento"
    service: str  # entrypoint "module:attr", relative to src/
    service_name: str = ""
    apis: list[ApiSpec] = Field(default_factory=list)
    models: list[ModelRef] = Field(default_factory=list)
    python: PythonSpec = Field(default_factory=PythonSpec)
    static: StaticSpec | None = None

    _omit_unset = ("static",)

    @model_validator(mode="before")
    @classmethod
    def _static_schema(cls, data: Any) -> Any:
        # a new manifest with static content is written as version 2: a reader that predates
        # it says "upgrade jubako" instead of "static: extra inputs are not permitted"
        if isinstance(data, dict) and data.get("static") is not None and "schema_version" not in data:
            data = {**data, "schema_version": STATIC_SCHEMA_VERSION}
        return data

    @model_validator(mode="after")
    def _static_needs_v2(self) -> BentoManifest:
        if self.static is not None and self.schema_version < STATIC_SCHEMA_VERSION:
            raise ValueError(f"static: static content needs schema_version {STATIC_SCHEMA_VERSION}")
        return self


class ModelManifest(_Bundle):
    kind: Literal["model"] = "model"
    framework: str  # "torch" | "onnx"
    framework_version: str = ""
    format: str  # "torch.state_dict" | "torch.torchscript" | "onnx"
    inputs: list[TensorSignature] = Field(default_factory=list)
    outputs: list[TensorSignature] = Field(default_factory=list)
    options: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)


class TensorSignature(_Strict):
    name: str
    dtype: str
    shape: list[int | str | None]


ModelManifest.model_rebuild()
Manifest = BentoManifest | ModelManifest


def utcnow() -> datetime:
    return datetime.now(UTC)


def parse_manifest(data: bytes, source: str, kind: type[Manifest]) -> Manifest:
    """Parse manifest bytes; errors name the source and the offending field."""
    try:
        raw = manifest_load.load(data)  # no aliases, bounded depth: the bytes may be hostile
    except yaml.YAMLError as e:
        raise InvalidBundle(f"{source}: not valid YAML: {e}") from None
    except safeyaml.UnsafeYAML as e:
        raise InvalidBundle(f"{source}: {e}") from None
    if not isinstance(raw, dict):
        raise InvalidBundle(f"{source}: expected a mapping at the top level")
    try:
        return kind.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        raise InvalidBundle(f"{source}: {loc}: {err['msg']}") from None


def read_manifest(directory: Path, kind: type[Manifest]) -> Manifest:
    name = BENTO_MANIFEST if kind is BentoManifest else MODEL_MANIFEST
    path = directory / name
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InvalidBundle(f"{directory}: no {name}") from None
    return parse_manifest(data, str(path), kind)
