import os
from datetime import timedelta
from pathlib import Path

import pytest

from jubako.bundle import file_entries, verify_bundle
from jubako.errors import AlreadyExists, InvalidBundle, NotFound
from jubako.manifest import ModelManifest, utcnow
from jubako.store import Store
from jubako.tags import Tag


def add_model(store: Store, version: str, content: bytes = b"weights", age_s: int = 0) -> ModelManifest:
    with store.models.staging() as staged:
        (staged / "w.bin").write_bytes(content)
        manifest = ModelManifest(
            name="m", version=version, created_at=utcnow() - timedelta(seconds=age_s),
            framework="onnx", format="onnx", files=file_entries(staged, ["w.bin"]),
        )
        store.models.commit(staged, manifest)
    return manifest


def test_commit_get_list_latest(store: Store) -> None:
    add_model(store, "old", age_s=60)
    add_model(store, "new")
    assert [str(b.tag) for b in store.models.list()] == ["m:new", "m:old"]
    assert store.models.get("m").tag == Tag("m", "new")
    assert store.models.get("m:old").manifest.version == "old"
    assert store.models.resolve("m:latest") == Tag("m", "new")
    assert (store.models.get("m:old").path / "w.bin").read_bytes() == b"weights"


def test_bundles_are_immutable(store: Store) -> None:
    add_model(store, "v1")
    with pytest.raises(AlreadyExists, match="m:v1 already exists"):
        add_model(store, "v1", b"other")
    assert (store.models.get("m:v1").path / "w.bin").read_bytes() == b"weights"


def test_commit_refuses_files_that_disagree_and_leaves_nothing(store: Store) -> None:
    with store.models.staging() as staged:
        (staged / "w.bin").write_bytes(b"weights")
        manifest = ModelManifest(
            name="m", version="v1", created_at=utcnow(), framework="onnx", format="onnx",
            files=file_entries(staged, ["w.bin"]),
        )
        (staged / "w.bin").write_bytes(b"tampered")
        with pytest.raises(InvalidBundle, match="w.bin: size"):
            store.models.commit(staged, manifest)
    assert store.models.list() == []
    assert list((store.home / ".tmp").iterdir()) == []


def test_not_found_names_what_is_missing(store: Store) -> None:
    with pytest.raises(NotFound, match="model 'm' not found"):
        store.models.get("m")
    with pytest.raises(NotFound, match="bento b:v1 not found"):
        store.bentos.get("b:v1")


def test_delete(store: Store) -> None:
    add_model(store, "v1")
    add_model(store, "v2")
    store.models.delete("m:v1")
    assert [b.tag.version for b in store.models.list()] == ["v2"]
    store.models.delete("m:v2")
    assert store.models.list() == []
    assert not (store.home / "models" / "m").exists()


def test_a_damaged_entry_does_not_hide_the_others(store: Store) -> None:
    add_model(store, "v1")
    broken = store.home / "models" / "m" / "broken"
    broken.mkdir()
    (broken / "model.yaml").write_text("not: [valid")
    assert [b.tag.version for b in store.models.list()] == ["v1"]
    with pytest.raises(InvalidBundle, match="not valid YAML"):
        store.models.get("m:broken")


def test_verify_bundle_reports_every_kind_of_drift(store: Store, tmp_path: Path) -> None:
    manifest = add_model(store, "v1")
    path = store.models.get("m:v1").path
    assert verify_bundle(path, manifest) == []
    (path / "extra.txt").write_text("x")
    (path / "w.bin").write_bytes(b"weightz")
    problems = verify_bundle(path, manifest)
    assert "extra.txt: not listed in the manifest" in problems
    assert any(p.startswith("w.bin: sha256") for p in problems)
    (path / "w.bin").unlink()
    assert "w.bin: missing" in verify_bundle(path, manifest)


def test_scratch_of_a_killed_process_is_swept_by_the_next_one(store: Store, tmp_path: Path) -> None:
    """A pull or build SIGKILLed mid-way leaves its scratch in .tmp: the next process that
    stages on this host removes it; a live process's and another host's stay."""
    import socket
    import subprocess
    import sys

    child = subprocess.run(
        [sys.executable, "-c",
         "import sys; from pathlib import Path; from jubako.store import Store\n"
         "s = Store(Path(sys.argv[1])); cm = s.models.staging(); p = cm.__enter__()\n"
         "(p / 'w.bin').write_bytes(b'half'); import os; os._exit(9)",  # dies mid-stage
         str(store.home)], check=False)
    assert child.returncode == 9
    tmp = store.home / ".tmp"
    (dead,) = os.listdir(tmp)
    assert dead.startswith(f"model.{socket.gethostname()}.")
    other_host = tmp / "model.elsewhere.example.1.abcd1234"
    other_host.mkdir()
    with store.models.staging() as mine:
        assert not (tmp / dead).exists()
        assert other_host.is_dir() and mine.is_dir()
        # a second store in this (live) process leaves our own scratch alone
        with Store(store.home).models.staging():
            assert mine.is_dir()
    assert sorted(os.listdir(tmp)) == [other_host.name]
