"""Registry integrity (issue 13): what is pulled is exactly what was pushed, under concurrent
completions, SQLite transactions and manifests that lie about sizes and digests.

Each test runs on the embedded default (SQLite + local folder) and, where storage matters,
on PostgreSQL + moto's S3 server.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from jubako.registry.db.models import Base, BlobUpload, Repository
from jubako.registry.db.session import make_engine, make_sessionmaker
from jubako.registry.storage.base import DigestMismatch
from jubako.registry.storage.local import LocalStorage
from sqlalchemy import func, select

from jubako.bundle import verify_bundle
from jubako.client.pull import pull
from jubako.client.push import push
from jubako.client.registry import ConflictError, RegistryError, RegistryNotFound
from jubako.manifest import FileEntry, ModelManifest, utcnow
from jubako.store import Store

from .conftest import ADMIN, make_settings, serve
from .factories import make_bento, make_model

EMPTY = hashlib.sha256(b"").hexdigest()
BOTH = ["sqlite-local", "postgres-s3"]


def model_manifest(name: str, version: str, files: dict[str, tuple[int, str]]) -> str:
    """A model manifest text declaring ``files`` as path -> (size, sha256)."""
    m = ModelManifest(
        name=name,
        version=version,
        created_at=utcnow(),
        framework="torch",
        format="torch.state_dict",
        files=[FileEntry(path=p, size=s, sha256=d) for p, (s, d) in files.items()],
    )
    return m.dump().decode()


def raw(served) -> httpx.Client:  # type: ignore[no-untyped-def]
    """An HTTP client that returns every answer (the tests look at status codes)."""
    return httpx.Client(
        base_url=served.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60
    )


def start_push(http: httpx.Client, name: str, version: str, files: dict[str, bytes]) -> dict:
    decl = {p: (len(b), hashlib.sha256(b).hexdigest()) for p, b in files.items()}
    r = http.put(
        f"/api/v1/models/{name}/versions/{version}",
        json={"manifest": model_manifest(name, version, decl)},
    )
    assert r.status_code in (200, 201), r.text
    return r.json()


def upload_parts(http: httpx.Client, upload: dict, files: dict[str, bytes]) -> None:
    by_digest = {hashlib.sha256(b).hexdigest(): b for b in files.values()}
    for blob in upload["blobs"]:
        data = by_digest[blob["digest"]]
        for part in blob["parts"]:
            start = (part["number"] - 1) * blob["part_size"]
            r = http.put(
                f"/api/v1/uploads/{upload['id']}/blobs/{blob['digest']}/parts/{part['number']}",
                content=data[start : start + part["size"]],
            )
            assert r.status_code == 200, r.text


def blob_bytes(http: httpx.Client, digest: str) -> bytes:
    r = http.get(f"/api/v1/blobs/{digest}")
    assert r.status_code == 200, r.text
    return r.content


# --- item 1: completion is atomic and idempotent ----------------------------------------


def test_local_storage_concurrent_completes_store_the_right_bytes(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "blobs")
    for _ in range(5):
        data = os.urandom(3 << 20)
        digest = hashlib.sha256(data).hexdigest()
        key = storage.key_for(digest, "u")
        upload = storage.begin(key)
        spool = tmp_path / "part"
        spool.write_bytes(data)
        storage.put_part(key, upload, 1, spool, len(data))
        barrier = threading.Barrier(4)

        def complete(barrier: threading.Barrier = barrier) -> None:
            barrier.wait(10)
            storage.complete(key, upload, len(data), digest, 1)  # noqa: B023

        with ThreadPoolExecutor(4) as pool:
            for f in [pool.submit(complete) for _ in range(4)]:
                f.result(timeout=60)
        assert hashlib.sha256(b"".join(storage.read(key))).hexdigest() == digest
        storage.delete(key)
    assert list(storage.uploads.iterdir()) == []  # no temp files or part folders left


def test_local_storage_mismatch_leaves_nothing(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "blobs")
    data = b"x" * 1000
    digest = hashlib.sha256(b"y" * 1000).hexdigest()
    key = storage.key_for(digest, "u")
    upload = storage.begin(key)
    spool = tmp_path / "part"
    spool.write_bytes(data)
    storage.put_part(key, upload, 1, spool, len(data))
    with pytest.raises(DigestMismatch):
        storage.complete(key, upload, len(data), digest, 1)
    assert not storage.exists(key)


@pytest.mark.parametrize("backend", BOTH)
def test_concurrent_blob_completes_answer_alike(registry) -> None:  # type: ignore[no-untyped-def]
    with raw(registry) as http:
        for i in range(4):
            files = {"w.bin": os.urandom(3 << 20)}
            push = start_push(http, "race", f"v{i}", files)
            upload = push["upload"]
            upload_parts(http, upload, files)
            digest = upload["blobs"][0]["digest"]
            barrier = threading.Barrier(3)

            def complete(barrier: threading.Barrier = barrier) -> int:
                barrier.wait(10)
                url = f"/api/v1/uploads/{upload['id']}/blobs/{digest}/complete"  # noqa: B023
                return http.post(url).status_code

            with ThreadPoolExecutor(3) as pool:
                codes = [f.result(timeout=120) for f in [pool.submit(complete) for _ in range(3)]]
            assert codes == [200, 200, 200]
            r = http.post(
                f"/api/v1/uploads/{upload['id']}/complete",
                json={"digest": push["version"]["digest"]},
            )
            assert r.status_code == 200 and r.json()["state"] == "ready", r.text
            assert blob_bytes(http, digest) == files["w.bin"]


# --- item 2: SQLite transactions behave like PostgreSQL's --------------------------------


def test_sqlite_savepoint_does_not_commit_early(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    engine = make_engine(f"sqlite:///{path}")
    Base.metadata.create_all(engine)
    sessions = make_sessionmaker(engine)

    def visible() -> int:
        other = sqlite3.connect(path)
        try:
            return other.execute("select count(*) from repositories").fetchone()[0]
        finally:
            other.close()

    with sessions() as db:
        db.scalar(select(func.count(Repository.id)))  # the request reads first
        with db.begin_nested():
            db.add(Repository(kind="model", name="a"))
        assert visible() == 0  # not before the request commits
        db.rollback()
    assert visible() == 0
    with sessions() as db:
        with db.begin_nested():
            db.add(Repository(kind="model", name="b"))
        db.commit()
    assert visible() == 1
    engine.dispose()


# --- item 3: no blob is recorded under a digest the server did not verify ---------------


@pytest.mark.parametrize("backend", BOTH)
def test_manifest_cannot_poison_a_blob(registry) -> None:  # type: ignore[no-untyped-def]
    data = os.urandom(17_000)
    digest = hashlib.sha256(data).hexdigest()
    with raw(registry) as http:
        lies = [
            {"w.bin": (0, digest)},  # empty file under another file's digest
            {"w.bin": (5, EMPTY)},  # the empty file's digest with a size
            {"a.bin": (17_000, digest), "b.bin": (16_000, digest)},  # one digest, two sizes
        ]
        for i, files in enumerate(lies):
            r = http.put(
                f"/api/v1/models/evil/versions/v{i}",
                json={"manifest": model_manifest("evil", f"v{i}", files)},
            )
            assert r.status_code == 422, (files, r.status_code, r.text)
        assert http.get(f"/api/v1/blobs/{digest}").status_code == 404

        # The real owner pushes the bytes: they are uploaded and verified.
        files = {"weights.bin": data}
        push = start_push(http, "owner", "v1", files)
        assert [b["digest"] for b in push["upload"]["blobs"]] == [digest]
        upload_parts(http, push["upload"], files)
        assert http.post(
            f"/api/v1/uploads/{push['upload']['id']}/blobs/{digest}/complete"
        ).is_success
        r = http.post(
            f"/api/v1/uploads/{push['upload']['id']}/complete",
            json={"digest": push["version"]["digest"]},
        )
        assert r.status_code == 200, r.text
        assert blob_bytes(http, digest) == data

        # Once stored, the digest cannot be claimed with another size.
        r = http.put(
            "/api/v1/models/evil/versions/v9",
            json={"manifest": model_manifest("evil", "v9", {"w.bin": (100, digest)})},
        )
        assert r.status_code == 422, r.text
        # An honest empty file is fine.
        r = http.put(
            "/api/v1/models/empty/versions/v1",
            json={"manifest": model_manifest("empty", "v1", {"e": (0, EMPTY)})},
        )
        assert r.status_code in (200, 201), r.text


# --- item 5: declared sizes and counts are bounded ---------------------------------------


@pytest.mark.parametrize("backend", BOTH)
def test_declared_sizes_and_counts_are_bounded(backend, tmp_path: Path, request) -> None:  # type: ignore[no-untyped-def]
    db, storage = backend.split("-")
    db_url = request.getfixturevalue("pg_url") if db == "postgres" else "sqlite"
    moto = request.getfixturevalue("moto_endpoint") if storage == "s3" else None
    served = serve(make_settings(tmp_path, db_url, storage, moto, max_files=20))
    try:
        with raw(served) as http:

            def put(name: str, files: dict[str, tuple[int, str]]) -> httpx.Response:
                text = model_manifest(name, "v1", files)
                return http.put(f"/api/v1/models/{name}/versions/v1", json={"manifest": text})

            big = hashlib.sha256(b"big").hexdigest()
            r = put("huge", {"w.bin": (1 << 53, big)})  # past the largest blob
            assert r.status_code == 422 and "larger than" in r.text, r.text
            many = {f"f{i}": (1, hashlib.sha256(b"%d" % i).hexdigest()) for i in range(21)}
            r = put("many", many)
            assert r.status_code == 422 and "files" in r.text, r.text

            size = 100 << 30  # 100 GiB at 5 MiB parts would be 20 480 parts; S3 allows 10 000
            r = put("large", {"w.bin": (size, big)})
            assert r.status_code == 201, r.text
            (blob,) = r.json()["upload"]["blobs"]
            parts = blob["parts"]
            assert len(parts) <= 10_000
            assert sum(p["size"] for p in parts) == size
            assert all(p["size"] == blob["part_size"] for p in parts[:-1])
            assert blob["part_size"] % (1 << 20) == 0
    finally:
        served.stop()


# --- item 11: concurrent pushes of one model join instead of failing -------------------


@pytest.mark.parametrize("backend", BOTH)
def test_concurrent_pushes_sharing_a_model_all_succeed(registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base = Store(tmp_path / "base")
    model = make_model(base, "shared", "v1", {"w.bin": 6 << 20, "cfg.json": b"{}"})  # 2 parts
    stores = []
    for i in range(8):  # eight CI jobs, each with the same model and its own bento
        shutil.copytree(base.home, tmp_path / f"job{i}")
        store = Store(tmp_path / f"job{i}")
        make_bento(store, f"svc{i}", "v1", [store.models.get("shared:v1")])
        stores.append(store)
    barrier = threading.Barrier(len(stores))

    def job(i: int) -> list[str]:
        with registry.client() as c:
            barrier.wait(30)
            return [p.state for p in push(c, f"svc{i}:v1", store=stores[i])]

    with ThreadPoolExecutor(len(stores)) as pool:
        results = [f.result(timeout=300) for f in [pool.submit(job, i) for i in range(8)]]
    assert results == [["ready", "ready"]] * 8
    with registry.client() as c:
        events = c.request("GET", "/api/v1/audit", params={"action": "model.push"}).json()
        assert len(events["items"]) == 1  # one version, one push (the others joined it)
        for i in (0, 7):
            dst = Store(tmp_path / f"pulled{i}")
            pull(c, f"svc{i}:v1", store=dst)
            got = dst.models.get("shared:v1")
            assert got.manifest.digest() == model.manifest.digest()
            assert verify_bundle(got.path, got.manifest) == []


# --- items 8 and 9: retries after a crash, orphans swept --------------------------------


def storage_of(served):  # type: ignore[no-untyped-def]
    return served.app.state.registry.storage


def stored_not_recorded(served, http, name: str, files: dict[str, bytes]):  # type: ignore[no-untyped-def]
    """A push of one file whose parts are uploaded and whose blob the storage completed, as
    a completion does before it records the blob (where a SIGKILL or a slow verify leaves
    it); returns the push."""
    push = start_push(http, name, "v1", files)
    upload = push["upload"]
    upload_parts(http, upload, files)
    with served.app.state.registry.sessions() as db:
        bu = db.scalar(select(BlobUpload).where(BlobUpload.upload_id == upload["id"]))
        key, multipart = bu.key, bu.multipart_id
    (data,) = files.values()
    storage_of(served).complete(key, multipart, len(data), hashlib.sha256(data).hexdigest(), 1)
    return push


def meanwhile(registry, hold, request):  # type: ignore[no-untyped-def]
    """``request()`` (an HTTP call) on another thread while ``hold(db)`` has done its work
    in a transaction that is not committed yet; the transaction commits a second later
    (the request is expected to wait for it: SQLite's write lock, PostgreSQL's row locks).
    Returns the request's answer."""
    answers: list[httpx.Response] = []
    with registry.app.state.registry.sessions() as db:
        hold(db)
        other = threading.Thread(target=lambda: answers.append(request()))
        other.start()
        other.join(1.0)
        db.commit()
    other.join(30)
    (r,) = answers
    return r


@pytest.mark.parametrize("backend", BOTH)
def test_a_push_joining_a_version_as_it_completes_answers_it_ready(registry) -> None:  # type: ignore[no-untyped-def]
    """Another client pushes the same model version while the last pusher's completion is
    committing. The newcomer must wait for that commit and answer the version ready: read
    between the two (on PostgreSQL, READ COMMITTED), it found the version uploading and its
    session gone, dropped the now ready version and started it over, so the first client's
    bento push was refused ('model ... is not in the registry'), or it touched the deleted
    session (a 500)."""
    from jubako.registry.domain import uploads
    from jubako.registry.domain.audit import SYSTEM

    files = {"w.bin": os.urandom(100_000)}
    digest = hashlib.sha256(files["w.bin"]).hexdigest()
    reg = registry.app.state.registry
    text = model_manifest("racing", "v1", {"w.bin": (len(files["w.bin"]), digest)})
    with raw(registry) as http:
        r = http.put("/api/v1/models/racing/versions/v1", json={"manifest": text})
        assert r.status_code == 201, r.text
        push = r.json()
        upload = push["upload"]
        upload_parts(http, upload, files)
        r = http.post(f"/api/v1/uploads/{upload['id']}/blobs/{digest}/complete")
        assert r.status_code == 200, r.text
        r = meanwhile(registry,  # the completion, before its commit
                      lambda db: uploads.complete_version(db, reg.storage, SYSTEM,
                                                          uploads.get_upload(db, upload["id"]), push["version"]["digest"]),
                      lambda: http.put("/api/v1/models/racing/versions/v1", json={"manifest": text}))
        assert r.status_code == 200, r.text
        assert r.json()["upload"] is None and r.json()["version"]["state"] == "ready"
        r = http.get("/api/v1/models/racing/versions/v1")
        assert r.status_code == 200 and r.json()["state"] == "ready"
        assert r.json()["digest"] == push["version"]["digest"]


@pytest.mark.parametrize("backend", BOTH)
def test_an_abort_as_the_push_completes_leaves_the_version_ready(registry) -> None:  # type: ignore[no-untyped-def]
    """DELETE of an upload session while its completion is committing: the abort waits and
    answers 404 (finished). It set the version failed over the completion's ready (then
    swept: a pushed version lost)."""
    from jubako.registry.domain import uploads
    from jubako.registry.domain.audit import SYSTEM

    files = {"w.bin": os.urandom(50_000)}
    digest = hashlib.sha256(files["w.bin"]).hexdigest()
    reg = registry.app.state.registry
    with raw(registry) as http:
        push = start_push(http, "aborted", "v1", files)
        upload = push["upload"]
        upload_parts(http, upload, files)
        assert http.post(f"/api/v1/uploads/{upload['id']}/blobs/{digest}/complete").status_code == 200
        r = meanwhile(registry,  # the completion, before its commit
                      lambda db: uploads.complete_version(db, reg.storage, SYSTEM,
                                                          uploads.get_upload(db, upload["id"]), push["version"]["digest"]),
                      lambda: http.delete(f"/api/v1/uploads/{upload['id']}"))
        assert r.status_code == 404, r.text
        assert http.get("/api/v1/models/aborted/versions/v1").json()["state"] == "ready"
        assert blob_bytes(http, digest) == files["w.bin"]


@pytest.mark.parametrize("backend", BOTH)
def test_a_model_deleted_while_a_bento_using_it_is_pushed_is_refused_as_used(registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """DELETE of a model while a push of a bento that uses it is committing: the delete
    waits for that commit and refuses (409, used by the bento). It counted the users before
    the bento committed, then deleted the model, and the bento's reference went with it
    (ON DELETE CASCADE): a ready bento whose model is gone, not marked broken."""
    from jubako.registry.domain import versions
    from jubako.registry.domain.audit import SYSTEM

    store = Store(tmp_path / "store")
    model = make_model(store, "base", "v1", {"w.bin": os.urandom(2000)})
    bento = make_bento(store, "uses-base", "v1", [model], files={"src/service.py": b"x = 1\n"})
    reg = registry.app.state.registry
    with registry.client() as c:
        push(c, "base:v1", kind="model", store=store)
    with raw(registry) as http:
        r = meanwhile(registry,  # the bento's push, before its commit
                      lambda db: versions.create_version(db, reg.storage, SYSTEM, "bento", "uses-base", "v1",
                                                         bento.manifest.dump().decode(), part_size=5 << 20,
                                                         upload_timeout_s=600),
                      lambda: http.delete("/api/v1/models/base/versions/v1"))
        assert r.status_code == 409 and "uses-base:v1" in r.text, r.text
        assert http.get("/api/v1/models/base/versions/v1").json()["state"] == "ready"


@pytest.mark.parametrize("backend", BOTH)
def test_two_deletes_of_one_version_at_once_answer_204_then_404(registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from jubako.registry.domain import queries, versions
    from jubako.registry.domain.audit import SYSTEM

    store = Store(tmp_path / "store")
    make_model(store, "twice", "v1", {"w.bin": os.urandom(2000)})
    with registry.client() as c:
        push(c, "twice:v1", kind="model", store=store)
    reg = registry.app.state.registry
    with raw(registry) as http:
        r = meanwhile(registry,  # the first delete, before its commit
                      lambda db: versions.delete_version(db, reg.storage, SYSTEM,
                                                         queries.get_version(db, "model", "twice", "v1"), force=False),
                      lambda: http.delete("/api/v1/models/twice/versions/v1"))
        assert r.status_code == 404, r.text
        assert http.get("/api/v1/models/twice/versions/v1").status_code == 404


@pytest.mark.parametrize("backend", BOTH)
def test_two_label_changes_of_one_version_at_once_both_apply(registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Two PATCHes adding the same new label at once: the second waits for the first and
    changes its value (both inserted the row: a duplicate key, a 500)."""
    from jubako.registry.domain import queries, versions
    from jubako.registry.domain.audit import SYSTEM

    store = Store(tmp_path / "store")
    make_model(store, "labelled", "v1", {"w.bin": os.urandom(2000)})
    with registry.client() as c:
        push(c, "labelled:v1", kind="model", store=store)
    with raw(registry) as http:
        r = meanwhile(registry,  # the first change, before its commit
                      lambda db: versions.update_labels(db, SYSTEM, queries.get_version(db, "model", "labelled", "v1"),
                                                        {"stage": "a"}),
                      lambda: http.patch("/api/v1/models/labelled/versions/v1", json={"labels": {"stage": "b"}}))
        assert r.status_code == 200, r.text
        assert http.get("/api/v1/models/labelled/versions/v1").json()["labels"]["stage"] == "b"


@pytest.mark.parametrize("backend", BOTH)
def test_two_tokens_for_a_new_user_at_once_are_both_made(registry) -> None:  # type: ignore[no-untyped-def]
    """The first token of a user makes the user: two at once both inserted it (a duplicate
    key, a 500); the second now finds the first's user once it commits."""
    from jubako.registry import auth

    with raw(registry) as http:
        r = meanwhile(registry,  # the first token, before its commit
                      lambda db: auth.create_token(db, user_name="newcomer", scope="read"),
                      lambda: http.post("/api/v1/tokens", json={"user": "newcomer", "scope": "read"}))
        assert r.status_code == 201, r.text
        users = {t["user"] for t in http.get("/api/v1/tokens").json() if t["user"] == "newcomer"}
        assert users == {"newcomer"}


@pytest.mark.parametrize("backend", BOTH)
def test_retry_after_a_crash_in_blob_completion(registry) -> None:  # type: ignore[no-untyped-def]
    """The registry stored the blob, then died before recording it: the retried
    completion finds the stored blob, verifies it and finishes, with no manual step."""
    files = {"w.bin": os.urandom(200_000)}
    digest = hashlib.sha256(files["w.bin"]).hexdigest()
    with raw(registry) as http:
        push = stored_not_recorded(registry, http, "crash", files)  # then SIGKILL
        upload = push["upload"]
        r = http.post(f"/api/v1/uploads/{upload['id']}/blobs/{digest}/complete")
        assert r.status_code == 200, r.text
        r = http.post(
            f"/api/v1/uploads/{upload['id']}/complete", json={"digest": push["version"]["digest"]}
        )
        assert r.status_code == 200 and r.json()["state"] == "ready", r.text
        assert blob_bytes(http, digest) == files["w.bin"]


@pytest.mark.parametrize("backend", BOTH)
def test_sweep_removes_orphans_and_spares_live_blobs(registry, backend) -> None:  # type: ignore[no-untyped-def]
    storage = storage_of(registry)
    ready = {"w.bin": os.urandom(50_000)}
    pending = {"p.bin": os.urandom(60_000)}
    with raw(registry) as http:
        push = start_push(http, "live", "v1", ready)
        upload_parts(http, push["upload"], ready)
        for b in push["upload"]["blobs"]:
            http.post(f"/api/v1/uploads/{push['upload']['id']}/blobs/{b['digest']}/complete")
        done = http.post(
            f"/api/v1/uploads/{push['upload']['id']}/complete",
            json={"digest": push["version"]["digest"]},
        )
        assert done.status_code == 200, done.text
        inflight = start_push(http, "pending", "v1", pending)  # parts sent, not completed
        upload_parts(http, inflight["upload"], pending)

        # What crashes leave: a stored object no row names, an unfinished upload.
        orphan = os.urandom(1000)
        odigest = hashlib.sha256(orphan).hexdigest()
        okey = storage.key_for(odigest, "0" * 32)
        stray = storage.begin(storage.key_for(odigest, "1" * 32))
        local = backend.endswith("local")
        if local:  # stored at its address, never recorded; a spooled part left behind
            path = storage.root / okey
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(orphan)
            (storage.uploads / "part-crashed").write_bytes(b"x")
        else:
            storage.client.put_object(Bucket=storage.bucket, Key=okey, Body=orphan)

        def sweep(grace: int) -> dict:
            r = http.post(
                "/api/v1/admin/sweep", params={"upload_timeout_s": 3600, "gc_grace_s": grace}
            )
            assert r.status_code == 200, r.text
            return r.json()

        kept = sweep(3600)  # within the grace period: nothing goes
        assert kept["orphans_removed"] == 0
        if local:  # (moto dates every multipart upload 2010-11-10: no grace period there)
            assert kept["uploads_aborted"] == 0
        assert okey in set(storage.list_keys())
        swept = sweep(0)
        assert swept["orphans_removed"] == 1
        assert kept["uploads_aborted"] + swept["uploads_aborted"] >= 1
        assert okey not in set(storage.list_keys())
        assert stray not in {u.upload for u in storage.list_unfinished()}
        with registry.app.state.registry.sessions() as db:
            live = set(db.scalars(select(BlobUpload.multipart_id)))
        assert {u.upload for u in storage.list_unfinished()} == live
        assert stray not in live

        # The ready version's blob and the pending upload's parts are untouched.
        assert blob_bytes(http, hashlib.sha256(ready["w.bin"]).hexdigest()) == ready["w.bin"]
        up = inflight["upload"]
        for b in up["blobs"]:
            r = http.post(f"/api/v1/uploads/{up['id']}/blobs/{b['digest']}/complete")
            assert r.status_code == 200, r.text
        r = http.post(
            f"/api/v1/uploads/{up['id']}/complete", json={"digest": inflight["version"]["digest"]}
        )
        assert r.status_code == 200, r.text
        assert blob_bytes(http, hashlib.sha256(pending["p.bin"]).hexdigest()) == pending["p.bin"]


# --- item 10: a forced model delete leaves its bentos broken, everywhere -----------------


@pytest.mark.parametrize("backend", BOTH)
def test_forced_model_delete_breaks_its_bentos(registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = Store(tmp_path / "src")
    model = make_model(src, "m", "v1")
    make_bento(src, "b", "v1", [model])
    make_bento(src, "other", "v1")
    with registry.client() as c:
        push(c, "b:v1", store=src)
        push(c, "other:v1", store=src)
        with pytest.raises(ConflictError):  # in use: refused without force
            c.delete_version("model", "m", "v1")
        c.delete_version("model", "m", "v1", force=True)

        assert c.get_version("bento", "b", "v1")["state"] == "broken"
        assert c.get_version("bento", "other", "v1")["state"] == "ready"
        listed = {v["tag"]: v["state"] for v in c.list_versions("bento")}
        assert listed == {"b:v1": "broken", "other:v1": "ready"}
        assert [v["tag"] for v in c.list_versions("bento", state="broken")] == ["b:v1"]
        with pytest.raises(RegistryNotFound):  # `latest` is the newest ready version
            c.get_version("bento", "b", "latest")
        for path in ("download", "archive"):
            r = c.http.get(f"/api/v1/bentos/b/versions/v1/{path}")
            assert r.status_code == 409 and "broken" in r.text, (path, r.text)
        with pytest.raises(RegistryError, match="broken"):
            pull(c, "b:v1", store=Store(tmp_path / "dst"))
        events = c.request("GET", "/api/v1/audit", params={"action": "bento.broken"}).json()
        assert [e["target"] for e in events["items"]] == ["b:v1"]
        with httpx.Client(base_url=registry.url, follow_redirects=True, timeout=30) as ui:
            csrf = re.search(r'name="csrf" value="([^"]+)"', ui.get("/ui/login").text)[1]  # type: ignore[index]
            ui.post("/ui/login", data={"csrf": csrf, "method": "token", "token": ADMIN})
            page = ui.get("/ui/bentos/b", params={"state": "broken"})  # the dashboard's filter
            assert page.status_code == 200 and "/ui/bentos/b/v1" in page.text, page.text[:500]
            assert ui.get("/ui/bentos/b/v1/archive").status_code == 409

        # Pushing the model and the bento again repairs it.
        pushed = push(c, "b:v1", store=src)
        assert [p.state for p in pushed] == ["ready", "ready"]
        assert c.get_version("bento", "b", "latest")["version"] == "v1"
        pull(c, "b:v1", store=Store(tmp_path / "dst2"))


def test_a_part_replaced_while_its_blob_completes_is_listed_again_then_the_blob_restarts(  # type: ignore[no-untyped-def]
    pg_s3_registry, monkeypatch
) -> None:
    """Every joiner of a push may send the same part; when one arrives between the listing
    of the parts and CompleteMultipartUpload with another ETag (S3 with SSE-KMS; moto under
    load), S3 answers InvalidPart. Once, the registry lists the parts again and completes;
    twice, it starts the blob over and asks the client to send it again (409, retry), and
    the push then finishes. (A CI run failed a push of eight joiners on this.)"""
    served = pg_s3_registry
    storage = storage_of(served)
    real = storage._parts_or_none
    stale = {"left": 0}

    def listed(key, upload):  # type: ignore[no-untyped-def]
        got = real(key, upload)
        if got and stale["left"] > 0:  # what the listing saw before the part was replaced
            stale["left"] -= 1
            got = {n: dataclasses.replace(p, etag='"0123456789abcdef0123456789abcdef"') for n, p in got.items()}
        return got

    monkeypatch.setattr(storage, "_parts_or_none", listed)
    for name, stale_listings, first_status in (("once", 1, 200), ("twice", 2, 409)):
        files = {"w.bin": os.urandom(100_000)}
        digest = hashlib.sha256(files["w.bin"]).hexdigest()
        manifest = model_manifest(name, "v1", {"w.bin": (len(files["w.bin"]), digest)})
        with raw(served) as http:
            push = http.put(f"/api/v1/models/{name}/versions/v1", json={"manifest": manifest}).json()
            upload = push["upload"]
            upload_parts(http, upload, files)
            stale["left"] = stale_listings
            r = http.post(f"/api/v1/uploads/{upload['id']}/blobs/{digest}/complete")
            assert r.status_code == first_status, r.text
            if first_status == 409:
                assert r.json()["retry"] is True and "send it again" in r.json()["detail"]
                again = http.put(f"/api/v1/models/{name}/versions/v1", json={"manifest": manifest})
                assert again.status_code == 200, again.text  # resumed: the blob's new parts
                again = again.json()["upload"]
                upload_parts(http, again, files)
                r = http.post(f"/api/v1/uploads/{upload['id']}/blobs/{digest}/complete")
                assert r.status_code == 200, r.text
            r = http.post(f"/api/v1/uploads/{upload['id']}/complete", json={"digest": push["version"]["digest"]})
            assert r.status_code == 200 and r.json()["state"] == "ready", r.text
            assert blob_bytes(http, digest) == files["w.bin"]


@pytest.mark.parametrize("backend", BOTH)
def test_a_part_sent_after_its_blob_was_stored_but_not_yet_recorded_is_not_needed(registry) -> None:  # type: ignore[no-untyped-def]
    """A joiner's part arrives after another pusher's completion stored the blob (its
    multipart upload gone) but before that completion recorded it (still verifying, or
    SIGKILLed right there): the part is not needed, and the push goes on. It was a 400
    "upload ... is gone" that failed the push (the SIGKILL chaos test, once)."""
    files = {"w.bin": os.urandom(120_000)}
    digest = hashlib.sha256(files["w.bin"]).hexdigest()
    with raw(registry) as http:
        push = stored_not_recorded(registry, http, "late-part", files)
        upload = push["upload"]
        upload_parts(http, upload, files)  # the joiner's copy of the same part: 200
        r = http.post(f"/api/v1/uploads/{upload['id']}/blobs/{digest}/complete")
        assert r.status_code == 200, r.text
        r = http.post(f"/api/v1/uploads/{upload['id']}/complete", json={"digest": push["version"]["digest"]})
        assert r.status_code == 200 and r.json()["state"] == "ready", r.text
        assert blob_bytes(http, digest) == files["w.bin"]
