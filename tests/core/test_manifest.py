import pytest

from jubako.errors import InvalidBundle
from jubako.manifest import (
    SCHEMA_VERSION,
    BentoManifest,
    FileEntry,
    ModelManifest,
    ModelRef,
    TensorSpec,
    parse_manifest,
    utcnow,
)

SHA = "a" * 64


def bento(**kw: object) -> BentoManifest:
    base = dict(
        name="demo", version="v1", created_at=utcnow(), service="service:Demo",
        files=[FileEntry(path="src/service.py", size=3, sha256=SHA)],
        models=[ModelRef(tag="m:v1", digest="sha256:" + SHA)],
    )
    return BentoManifest(**{**base, **kw})


def test_dump_parse_round_trip_keeps_the_digest() -> None:
    m = bento(labels={"team": "search"})
    again = parse_manifest(m.dump(), "bento.yaml", BentoManifest)
    assert again == m
    assert again.digest() == m.digest()
    assert m.digest().startswith("sha256:")


def test_digest_changes_with_any_file() -> None:
    other = bento(files=[FileEntry(path="src/service.py", size=3, sha256="b" * 64)])
    assert other.digest() != bento().digest()


def test_newer_schema_is_refused_with_advice() -> None:
    data = bento().dump().replace(b"schema_version: 1", f"schema_version: {SCHEMA_VERSION + 1}".encode())
    with pytest.raises(InvalidBundle, match="schema_version: .*upgrade jubako"):
        parse_manifest(data, "bento.yaml", BentoManifest)


def test_errors_name_the_field() -> None:
    data = bento().dump().replace(b"size: 3", b"size: -1")
    with pytest.raises(InvalidBundle, match=r"bento.yaml: files\.0\.size"):
        parse_manifest(data, "bento.yaml", BentoManifest)
    with pytest.raises(InvalidBundle, match="unknown_field"):
        parse_manifest(bento().dump() + b"unknown_field: 1\n", "bento.yaml", BentoManifest)
    with pytest.raises(InvalidBundle, match="not valid YAML"):
        parse_manifest(b"a: [", "bento.yaml", BentoManifest)
    with pytest.raises(InvalidBundle, match="mapping"):
        parse_manifest(b"- 1", "bento.yaml", BentoManifest)


def test_a_model_manifest_is_not_a_bento() -> None:
    model = ModelManifest(name="m", version="v1", created_at=utcnow(), framework="onnx", format="onnx")
    with pytest.raises(InvalidBundle):
        parse_manifest(model.dump(), "bento.yaml", BentoManifest)


def test_tensor_spec_shape_allows_free_dimensions() -> None:
    assert TensorSpec(dtype="float32", shape=[None, 4]).shape == [None, 4]
