"""The example bentos (torch and ONNX) round-trip through the registry."""

from __future__ import annotations

from pathlib import Path

from jubako.bundle import verify_bundle
from jubako.client.pull import pull
from jubako.client.push import push
from jubako.manifest import ModelManifest, read_manifest
from jubako.store import Store

from ..conftest import EXAMPLE_BENTOS


def test_examples_roundtrip(pg_s3_registry, example_store: Store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pg_s3_registry.client() as c:
        bentos = example_store.bentos.list()
        assert len(bentos) == len(EXAMPLE_BENTOS)
        for bento in bentos:
            name = bento.tag.name
            pushed = push(c, str(bento.tag), store=example_store)
            assert all(p.state == "ready" for p in pushed)
            dst = Store(tmp_path / "dst")
            pull(c, f"{name}:latest", store=dst)
            got = dst.bentos.get(bento.tag)
            assert got.manifest.digest() == bento.manifest.digest()
            assert verify_bundle(got.path, got.manifest) == []
            out = tmp_path / f"out-{name}"
            pull(c, str(bento.tag), output=out)
            for ref in bento.manifest.models:
                mdir = out / "models" / ref.parsed.name / ref.parsed.version
                m = read_manifest(mdir, ModelManifest)
                assert m.digest() == ref.digest and verify_bundle(mdir, m) == []
