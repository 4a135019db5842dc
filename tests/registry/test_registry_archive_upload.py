"""``POST /api/v1/archives`` (one-request push of an archive, used by the dashboard) and the
archive download of models."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from jubako.archive import export, extract
from jubako.store import Store

from .factories import make_bento, make_model
from .test_registry_api import V1, api, new_token


@pytest.fixture
def src(tmp_path: Path) -> Store:
    return Store(tmp_path / "src")


def _archive(bundle, store: Store, compression: str = "none") -> bytes:  # type: ignore[no-untyped-def]
    buf = io.BytesIO()
    export(bundle, buf, compression, store=store)
    return buf.getvalue()


def _spool_is_empty(served) -> bool:  # type: ignore[no-untyped-def]
    spool = served.settings.data_dir / "blobs" / ".uploads"
    return not any(p.name.startswith(("archive-", "part-")) for p in spool.iterdir())


def test_archive_push_round_trip_on_every_backend(registry, src: Store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # 6 MiB + a bit: two parts of 5 MiB, so put_part/complete run multipart on S3 too.
    model = make_model(src, "arch-model", "v1", {"w.bin": (6 << 20) + 7, "empty": b""})
    bento = make_bento(src, "arch-bento", "v1", [model])
    body = _archive(bento, src, "zstd")
    token = new_token(registry, "write")
    with api(registry, token) as c:
        r = c.post(f"{V1}/archives", content=body, params={"label": ["team=vision"]})
        assert r.status_code == 200, r.text
        pushed = r.json()["pushed"]
        assert [(p["kind"], p["tag"], p["created"]) for p in pushed] == [
            ("model", "arch-model:v1", True),
            ("bento", "arch-bento:v1", True),
        ]
        assert pushed[1]["digest"] == bento.manifest.digest()
        assert pushed[0]["uploaded_bytes"] == (6 << 20) + 7

        v = c.get(f"{V1}/bentos/arch-bento/versions/v1").json()
        assert v["state"] == "ready" and v["labels"] == {"team": "vision"}
        assert v["created_by"] == "u-write"
        m = c.get(f"{V1}/models/arch-model/versions/v1").json()
        assert m["state"] == "ready" and m["labels"] == {}

        # Same archive again: nothing to do.
        again = c.post(f"{V1}/archives", content=body).json()["pushed"]
        assert [p["created"] for p in again] == [False, False]

        # The downloaded archive holds the same files.
        r = c.get(f"{V1}/bentos/arch-bento/versions/v1/archive")
        assert r.status_code == 200
        ex = extract(io.BytesIO(r.content), tmp_path / "out")
        assert ex.manifest.digest() == bento.manifest.digest()
        for name in ("w.bin", "empty"):
            got = (tmp_path / "out/models/arch-model/v1" / name).read_bytes()
            assert got == (model.path / name).read_bytes()
    with api(registry) as admin:  # the pushes are audited as the CLI's are
        events = admin.get(f"{V1}/audit").json()["items"]
    assert {("model.ready", "arch-model:v1"), ("bento.ready", "arch-bento:v1")} <= {
        (e["action"], e["target"]) for e in events
    }


def test_model_archive_download_and_reupload(local_registry, src: Store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model = make_model(src, "solo", "v1")
    with api(local_registry) as c:
        assert c.post(f"{V1}/archives", content=_archive(model, src, "gzip")).status_code == 200
        r = c.get(f"{V1}/models/solo/versions/v1/archive", params={"compression": "gzip"})
        assert r.status_code == 200
        assert r.headers["content-disposition"] == 'attachment; filename="solo-v1.tar.gz"'
        ex = extract(io.BytesIO(r.content), tmp_path / "m")
        assert ex.manifest.digest() == model.manifest.digest() and ex.models == []
        # Uncompressed, the registry's stream is byte for byte what `jubako export` writes.
        r = c.get(f"{V1}/models/solo/versions/v1/archive")
        assert r.content == _archive(model, src)


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_hostile_or_broken_archives_leave_nothing(local_registry, src: Store) -> None:  # type: ignore[no-untyped-def]
    model = make_model(src, "victim", "v1", {"w.bin": b"weights!"})
    manifest = (model.path / "model.yaml").read_bytes()
    cases = {
        "garbage": (b"this is not a tar archive" * 100, "tar"),
        "traversal": (_tar({"model.yaml": manifest, "../w.bin": b"weights!"}), ".."),
        "tampered": (_tar({"model.yaml": manifest, "w.bin": b"WEIGHTS!"}), "sha256"),
        "missing": (_tar({"model.yaml": manifest}), "lacks"),
        "truncated": (_archive(model, src)[:700], ""),
    }
    with api(local_registry) as c:
        for what, (body, fragment) in cases.items():
            r = c.post(f"{V1}/archives", content=body)
            assert r.status_code == 422, (what, r.status_code, r.text)
            assert fragment in r.json()["detail"], (what, r.text)
        assert c.post(f"{V1}/archives", content=b"").status_code == 400
        assert c.get(f"{V1}/models").json()["items"] == []
    assert _spool_is_empty(local_registry)


def test_archive_push_goes_through_the_same_checks(local_registry, src: Store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model = make_model(src, "chk-model", "v1")
    with api(local_registry) as c:
        assert c.post(f"{V1}/archives", content=_archive(model, src)).status_code == 200
        # Other content under the same tag: 409 unless forced, as with `jubako push`.
        other = Store(tmp_path / "other")
        clash = make_model(other, "chk-model", "v1", {"w.bin": os.urandom(100)})
        r = c.post(f"{V1}/archives", content=_archive(clash, other))
        assert r.status_code == 409 and "already exists" in r.json()["detail"]
        r = c.post(f"{V1}/archives", content=_archive(clash, other), params={"force": "true"})
        assert r.status_code == 200, r.text
        v = c.get(f"{V1}/models/chk-model/versions/v1").json()
        assert v["digest"] == clash.manifest.digest()
        # Bad labels are refused before anything is stored.
        bento = make_bento(src, "chk-bento", "v1")
        r = c.post(f"{V1}/archives", content=_archive(bento, src), params={"label": ["no-equals"]})
        assert r.status_code == 400
        r = c.post(f"{V1}/archives", content=_archive(bento, src), params={"label": ["bad key=1"]})
        assert r.status_code == 400
        assert c.get(f"{V1}/bentos/chk-bento/versions/v1").status_code == 404
    assert _spool_is_empty(local_registry)


def test_archive_push_needs_write(local_registry, src: Store) -> None:  # type: ignore[no-untyped-def]
    body = _archive(make_model(src, "scoped", "v1"), src)
    with api(local_registry, new_token(local_registry, "read")) as c:
        assert c.post(f"{V1}/archives", content=body).status_code == 403
    with api(local_registry, None) as c:
        assert c.post(f"{V1}/archives", content=body).status_code == 401
