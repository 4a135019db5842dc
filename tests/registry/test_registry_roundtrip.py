"""Push and pull round trips on every backend (SQLite/PostgreSQL x local/S3)."""

from __future__ import annotations

from pathlib import Path

from jubako.bundle import verify_bundle
from jubako.client.pull import pull
from jubako.client.push import push
from jubako.manifest import BentoManifest, ModelManifest, read_manifest
from jubako.store import Store

from .factories import make_bento, make_model


def test_push_pull_roundtrip(registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = Store(tmp_path / "src")
    model = make_model(src, "clf", "v1", {"w.bin": 12 << 20, "cfg.json": b"{}"})  # 3 parts
    bento = make_bento(src, "svc", "v1", [model], labels={"team": "a"})
    with registry.client() as c:
        pushed = push(c, "svc:v1", store=src)
        assert [(p.kind, p.tag, p.state) for p in pushed] == [
            ("model", "clf:v1", "ready"),
            ("bento", "svc:v1", "ready"),
        ]
        # Pushing again is a no-op.
        again = push(c, "svc:v1", store=src)
        assert all(p.skipped and p.uploaded_bytes == 0 for p in again)

        info = c.get_version("bento", "svc", "latest")
        assert info["version"] == "v1" and info["state"] == "ready"
        assert info["digest"] == bento.manifest.digest()
        assert info["labels"] == {"team": "a"}

        dst = Store(tmp_path / "dst")
        pulled = pull(c, "svc:latest", store=dst)
        assert [p.tag for p in pulled] == ["clf:v1", "svc:v1"]
        got = dst.bentos.get("svc:v1")
        assert got.manifest.digest() == bento.manifest.digest()
        assert verify_bundle(got.path, got.manifest) == []
        assert dst.models.get("clf:v1").manifest.digest() == model.manifest.digest()

        out = tmp_path / "out"
        pull(c, "svc:v1", output=out)
        bm = read_manifest(out, BentoManifest)
        assert verify_bundle(out, bm) == [] or all("models/" in p for p in verify_bundle(out, bm))
        mdir = out / "models" / "clf" / "v1"
        assert verify_bundle(mdir, read_manifest(mdir, ModelManifest)) == []


def test_shared_blobs_are_stored_once(local_registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = Store(tmp_path / "src")
    same = b"x" * 100_000
    m1 = make_model(src, "m", "v1", {"w.bin": same})
    m2 = make_model(src, "m", "v2", {"w.bin": same, "extra.bin": b"y"})
    with local_registry.client() as c:
        p1 = push(c, "m:v1", store=src, kind="model")
        p2 = push(c, "m:v2", store=src, kind="model")
    assert p1[0].uploaded_bytes == 100_000
    assert p2[0].uploaded_bytes == 1  # only the new file travelled
    blobs = list((local_registry.settings.blob_dir / "sha256").rglob("*"))
    assert len([b for b in blobs if b.is_file()]) == 2
    assert m1 and m2
