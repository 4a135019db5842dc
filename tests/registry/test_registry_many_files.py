"""A manifest of 30 000 files goes through every step of a push (issue 13 item 5). Per-file
work is set-based (bulk INSERTs and SELECTs, rows rather than ORM objects, one storage
folder for the session's blob uploads); how long it takes is measured by
bench/registry_files.py, not asserted here. The manifests are written by the registry's
canonical dump (byte-identical to ``Manifest.dump()``, test_registry_canonical.py), which
takes a fraction of the emitter's time."""

from __future__ import annotations

import hashlib

import httpx
import pytest
from jubako.registry.domain.canonical import dump

from jubako.manifest import FileEntry, ModelManifest, utcnow

from .conftest import ADMIN

N = 30_000


def manifest(name: str, n: int, content: bytes | None = None) -> str:
    files = [
        FileEntry(
            path=f"d{i % 100}/f{i}.bin",
            size=len(content) if content is not None else 8,
            sha256=hashlib.sha256(content if content is not None else b"%d" % i).hexdigest(),
        )
        for i in range(n)
    ]
    m = ModelManifest(name=name, version="v1", created_at=utcnow(), framework="torch",
                      format="torch.state_dict", files=files)
    return dump(m).decode()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite-local", "postgres-local"])
def test_a_push_of_30000_files(registry) -> None:  # type: ignore[no-untyped-def]
    uploads = registry.app.state.registry.storage.uploads  # local storage's scratch folder
    with httpx.Client(base_url=registry.url, headers={"Authorization": f"Bearer {ADMIN}"},
                      timeout=600) as http:
        # Every file a new blob: the session lists each once, resumed and joined alike.
        body = {"manifest": manifest("many", N)}
        r = http.put("/api/v1/models/many/versions/v1", json=body)
        assert r.status_code == 201, r.text[:300]
        up = r.json()["upload"]
        assert len({b["digest"] for b in up["blobs"]}) == N
        assert all(len(b["parts"]) == 1 and not b["parts"][0]["received"] for b in up["blobs"])
        r = http.get(f"/api/v1/uploads/{up['id']}")
        assert len(r.json()["blobs"]) == N
        r = http.put("/api/v1/models/many/versions/v1", json=body)
        assert r.status_code == 200 and r.json()["upload"]["id"] == up["id"]
        assert len(r.json()["upload"]["blobs"]) == N
        r = http.post(f"/api/v1/uploads/{up['id']}/complete",
                      json={"digest": r.json()["version"]["digest"]})
        assert r.status_code == 409, r.text[:300]  # no blob was uploaded
        assert len(list(uploads.iterdir())) == 1  # the 30 000 blob uploads' one folder
        assert http.delete(f"/api/v1/uploads/{up['id']}").status_code == 204
        assert list(uploads.iterdir()) == []
        r = http.get("/api/v1/models/many/versions/v1")
        assert r.json()["state"] == "failed"

        # 30 000 files of one content: one blob to upload, then the version is ready.
        r = http.put("/api/v1/models/same/versions/v1", json={"manifest": manifest("same", N, b"x")})
        assert r.status_code == 201, r.text[:300]
        push = r.json()
        (blob,) = push["upload"]["blobs"]
        base = f"/api/v1/uploads/{push['upload']['id']}/blobs/{blob['digest']}"
        assert http.put(f"{base}/parts/1", content=b"x").status_code == 200
        assert http.post(f"{base}/complete").status_code == 200
        r = http.post(f"/api/v1/uploads/{push['upload']['id']}/complete",
                      json={"digest": push["version"]["digest"]})
        assert r.status_code == 200 and r.json()["state"] == "ready", r.text[:300]
        assert r.json()["file_count"] == N
        assert list(uploads.iterdir()) == []
        r = http.get("/api/v1/models/same/versions/v1/download", params={"presigned": False})
        files = r.json()["files"]
        assert len(files) == N and {f["sha256"] for f in files} == {blob["digest"]}
