"""Local storage's uploads begun together (``begin_many``: a push's new blobs) share one
batch folder instead of a folder each (issue 13 item 5), and keep the storage contract:
a completed or aborted upload is gone (``put_part`` and ``complete`` fail,
``upload_parts`` is None), a session's end leaves nothing, and the orphan sweep finds
what a crash leaves."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from jubako.registry.storage.base import StorageError, UploadGone
from jubako.registry.storage.local import LocalStorage

from .test_registry_integrity import raw, start_push, upload_parts


def spooled(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / f"spool-{os.urandom(4).hex()}"
    path.write_bytes(data)
    return path


def test_begin_many_makes_one_folder_and_parts_make_theirs(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "blobs")
    blobs = [os.urandom(100) for _ in range(50)]
    keys = [storage.key_for(hashlib.sha256(b).hexdigest(), "") for b in blobs]
    ids = storage.begin_many(keys)
    assert len(set(ids)) == 50
    assert len(list(storage.uploads.iterdir())) == 1
    assert all(storage.upload_parts(k, u) == {} for k, u in zip(keys, ids, strict=True))
    for k, u, b in list(zip(keys, ids, blobs, strict=True))[:3]:
        storage.put_part(k, u, 1, spooled(tmp_path, b), len(b))
        assert storage.upload_parts(k, u)[1].size == 100  # type: ignore[index]
        storage.complete(k, u, len(b), hashlib.sha256(b).hexdigest(), 1)
        assert storage.read(k) and b"".join(storage.read(k)) == b
    storage.abort(keys[3], ids[3])
    for k, u in zip(keys[:4], ids[:4], strict=True):  # completed or aborted: gone
        assert storage.upload_parts(k, u) is None
        with pytest.raises(StorageError):
            storage.put_part(k, u, 1, spooled(tmp_path, b"x"), 1)
    with pytest.raises(UploadGone):
        storage.complete(keys[3], ids[3], 100, hashlib.sha256(blobs[3]).hexdigest(), 1)
    assert storage.upload_parts(keys[4], ids[4]) == {}  # the others are still open


def test_aborting_every_upload_of_a_batch_removes_its_folder(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "blobs")
    keys = [f"sha256/00/{i:064x}" for i in range(20)]
    ids = storage.begin_many(keys)
    storage.put_part(keys[0], ids[0], 1, spooled(tmp_path, b"x"), 1)
    storage.abort(keys[1], ids[1])
    storage.abort_many(list(zip(keys[2:10], ids[2:10], strict=True)))  # not all: kept
    assert storage.upload_parts(keys[2], ids[2]) is None
    assert storage.upload_parts(keys[0], ids[0]) == {1: storage.parts(keys[0], ids[0])[1]}
    assert len(list(storage.uploads.iterdir())) == 1
    storage.abort_many([(keys[0], ids[0])] + list(zip(keys[10:], ids[10:], strict=True)))
    assert list(storage.uploads.iterdir()) == []
    assert all(storage.upload_parts(k, u) is None for k, u in zip(keys, ids, strict=True))


def test_unfinished_lists_a_batch_by_its_open_uploads(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "blobs")
    keys = [f"sha256/00/{i:064x}" for i in range(5)]
    ids = storage.begin_many(keys)
    storage.abort(keys[0], ids[0])
    assert {u.upload for u in storage.list_unfinished()} == set(ids[1:])
    storage.abort_many(list(zip(keys[1:3], ids[1:3], strict=True)))
    assert {u.upload for u in storage.list_unfinished()} == set(ids[3:])
    for k, u in zip(keys[3:], ids[3:], strict=True):  # one by one: all gone, folder kept
        storage.abort(k, u)
    (storage.uploads / f"{ids[3]}-x1.blob").write_bytes(b"x")  # a crash's assembly file
    stale = list(storage.list_unfinished())  # the sweep removes the folder and the file
    assert len(stale) == 2
    storage.abort_many([(u.key, u.upload) for u in stale])
    assert list(storage.uploads.iterdir()) == []


@pytest.mark.parametrize("backend", ["sqlite-local", "postgres-local"])
def test_a_push_leaves_no_upload_folders(registry) -> None:  # type: ignore[no-untyped-def]
    storage = registry.app.state.registry.storage
    with raw(registry) as http:
        files = {f"f{i}.bin": os.urandom(100 + i) for i in range(40)}
        push = start_push(http, "batch", "v1", files)
        assert len(list(storage.uploads.iterdir())) == 1  # one folder for 40 blob uploads
        upload = push["upload"]
        upload_parts(http, upload, files)
        for b in upload["blobs"]:
            r = http.post(f"/api/v1/uploads/{upload['id']}/blobs/{b['digest']}/complete")
            assert r.status_code == 200, r.text
        (batch,) = storage.uploads.iterdir()  # each completed upload: its marker, no parts
        assert sorted(p.name for p in batch.iterdir()) == sorted(f"{i}.gone" for i in range(40))
        r = http.post(f"/api/v1/uploads/{upload['id']}/complete",
                      json={"digest": push["version"]["digest"]})
        assert r.status_code == 200 and r.json()["state"] == "ready", r.text
        assert list(storage.uploads.iterdir()) == []

        aborted = start_push(http, "batch", "v2", {f"g{i}.bin": os.urandom(50) for i in range(30)})
        one = aborted["upload"]["blobs"][0]
        r = http.put(f"/api/v1/uploads/{aborted['upload']['id']}/blobs/{one['digest']}/parts/1",
                     content=b"z" * one["size"])
        assert r.status_code == 200, r.text
        assert http.delete(f"/api/v1/uploads/{aborted['upload']['id']}").status_code == 204
        assert list(storage.uploads.iterdir()) == []


def test_parts_many_answers_as_upload_parts_does(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "blobs")
    keys = [f"sha256/00/{i:064x}" for i in range(6)]
    ids = storage.begin_many(keys[:5]) + storage.begin_many(keys[5:])  # a batch, and one alone
    for k, u in [(keys[0], ids[0]), (keys[1], ids[1]), (keys[5], ids[5])]:
        storage.put_part(k, u, 2, spooled(tmp_path, b"ab"), 2)
    storage.abort(keys[1], ids[1])
    storage.abort(keys[2], ids[2])
    pairs = list(zip(keys, ids, strict=True)) + [(keys[0], ids[0].split(".")[0] + ".99")]
    got = storage.parts_many(pairs)
    assert got == [storage.upload_parts(k, u) for k, u in pairs]
    assert got[0] == got[5] == {2: storage.parts(keys[0], ids[0])[2]}
    assert got[1] is None and got[2] is None and got[3] == {}
