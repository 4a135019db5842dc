"""Archives: round trips, and hostile archives refused without leaving anything behind."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from jubako import archive
from jubako.build import build as build_bento
from jubako.errors import AlreadyExists, InvalidBundle
from jubako.store import Store
from tests.core.archives import Member, read_members, write_members
from tests.core.test_build import project
from tests.core.test_store import add_model


@pytest.fixture
def source(tmp_path: Path) -> Store:
    """A store with one bento that uses one model."""
    store = Store(tmp_path / "source")
    add_model(store, "v1", b"model-weights" * 100)
    build_bento(project(tmp_path / "p", "service: service:Demo\n", models='["m"]'), store=store, version="1")
    return store


@pytest.fixture
def valid(source: Store) -> bytes:
    buf = io.BytesIO()
    archive.export(source.bentos.get("demo:1"), buf, store=source)
    return buf.getvalue()


def store_is_empty(store: Store) -> bool:
    tmp = store.home / ".tmp"
    return (
        store.bentos.list() == []
        and store.models.list() == []
        and (not tmp.exists() or list(tmp.iterdir()) == [])
    )


@pytest.mark.parametrize("compression", archive.COMPRESSIONS)
def test_round_trip_keeps_every_digest(source: Store, store: Store, compression: str) -> None:
    bento = source.bentos.get("demo:1")
    buf = io.BytesIO()
    archive.export(bento, buf, compression, store=source)
    first = buf.getvalue()
    buf2 = io.BytesIO()
    archive.export(bento, buf2, compression, store=source)
    assert buf2.getvalue() == first, "exports of one bento are byte for byte the same"
    result = archive.import_archive(io.BytesIO(first), store)
    assert not result.existed and result.added_models == ["m:v1"]
    imported = store.bentos.get("demo:1")
    assert imported.manifest.digest() == bento.manifest.digest()
    assert imported.manifest.files == bento.manifest.files
    assert store.models.get("m:v1").manifest.digest() == source.models.get("m:v1").manifest.digest()
    again = archive.import_archive(io.BytesIO(first), store)
    assert again.existed and again.existing_models == ["m:v1"]


def test_members_are_manifest_first_then_models(valid: bytes) -> None:
    names = [m.name for m in read_members(valid)]
    assert names[0] == "bento.yaml"
    assert names[-2:] == ["models/m/v1/model.yaml", "models/m/v1/w.bin"]


def test_a_model_archive_round_trips(source: Store, store: Store) -> None:
    buf = io.BytesIO()
    archive.export(source.models.get("m:v1"), buf, "gzip")
    result = archive.import_archive(io.BytesIO(buf.getvalue()), store)
    assert str(result.bundle.tag) == "m:v1" and store.bentos.list() == []


def test_a_different_bundle_under_an_existing_tag_is_refused(valid: bytes, store: Store) -> None:
    add_model(store, "v1", b"something else")
    with pytest.raises(AlreadyExists, match="m:v1 already exists in the store with different content"):
        archive.import_archive(io.BytesIO(valid), store)
    assert store.bentos.list() == []


def mutate_member(members: list[Member], name: str, **changes: object) -> list[Member]:
    for m in members:
        if m.name == name:
            for k, v in changes.items():
                setattr(m, k, v)
    return members


def tampered_manifest(members: list[Member], name: str, edit) -> list[Member]:  # type: ignore[no-untyped-def]
    for m in members:
        if m.name == name:
            data = yaml.safe_load(m.data)
            edit(data)
            m.data = yaml.safe_dump(data, sort_keys=False).encode()
    return members


# name, how to turn the valid archive's members into a hostile one, what the error says
CORPUS = [
    ("absolute path", lambda ms: ms + [Member("/etc/cron.d/evil", b"x")], "'/etc/cron.d/evil': absolute path"),
    ("dot-dot", lambda ms: ms + [Member("src/../../evil.py", b"x")], r"'src/../../evil.py': path leaves the bundle \('..'\)"),
    ("windows drive", lambda ms: ms + [Member("C:/evil", b"x")], "absolute path"),
    ("symlink out", lambda ms: ms + [Member("src/link", type=tarfile.SYMTYPE, linkname="../../../etc/passwd")], "'src/link': link to '../../../etc/passwd' leaves the bundle"),
    ("absolute symlink", lambda ms: ms + [Member("src/link", type=tarfile.SYMTYPE, linkname="/etc/passwd")], "leaves the bundle"),
    ("hardlink out", lambda ms: ms + [Member("src/hard", type=tarfile.LNKTYPE, linkname="../etc/shadow")], "'src/hard': link to '../etc/shadow' leaves the bundle"),
    ("symlink inside", lambda ms: ms + [Member("src/alias.py", type=tarfile.SYMTYPE, linkname="service.py")], "links are not allowed"),
    ("char device", lambda ms: ms + [Member("src/tty", type=tarfile.CHRTYPE)], "'src/tty': device"),
    ("block device", lambda ms: ms + [Member("src/sda", type=tarfile.BLKTYPE)], "device"),
    ("fifo", lambda ms: ms + [Member("src/pipe", type=tarfile.FIFOTYPE)], "fifo"),
    ("duplicate", lambda ms: ms + [Member("src/service.py", b"import os; os.system('x')")], "'src/service.py': appears twice"),
    ("size lies", lambda ms: mutate_member(ms, "src/service.py", data=b"evil" * 10), "'src/service.py': size 40 disagrees with the manifest"),
    ("content swapped", lambda ms: mutate_member(ms, "src/pkg/util.py", data=b"Y = 2\n"), "'src/pkg/util.py': sha256"),
    ("missing file", lambda ms: [m for m in ms if m.name != "src/pkg/util.py"], "lacks 'src/pkg/util.py'"),
    ("extra file", lambda ms: ms + [Member("src/extra.py", b"x")], "'src/extra.py': not listed"),
    ("unlisted top file", lambda ms: ms + [Member("README", b"x")], "'README': not listed"),
    ("missing model", lambda ms: [m for m in ms if not m.name.startswith("models/")], "lacks model m:v1"),
    ("model swapped", lambda ms: mutate_member(ms, "models/m/v1/w.bin", data=b"x" * 1300), "'models/m/v1/w.bin': sha256"),
    ("model manifest edited", lambda ms: tampered_manifest(ms, "models/m/v1/model.yaml", lambda d: d["labels"].update(evil="1")), "differs from the one bento demo:1 pinned"),
    ("model in the wrong place", lambda ms: ms + [Member(m.name.replace("m/v1", "other/v9"), m.data) for m in ms if m.name.startswith("models/")], "model m:v1 is stored under 'models/other/v9/'"),
    ("no manifest", lambda ms: [m for m in ms if m.name != "bento.yaml"], "no bento.yaml or model.yaml"),
    ("newer schema", lambda ms: tampered_manifest(ms, "bento.yaml", lambda d: d.update(schema_version=99)), "upgrade jubako"),
    ("huge manifest", lambda ms: mutate_member(ms, "bento.yaml", data=b"#" * (archive.MANIFEST_LIMIT + 1)), "manifest of"),
    ("file where a folder goes", lambda ms: [Member("src", b"x")] + ms, "clashes"),
]


@pytest.mark.parametrize("name, mutate, error", CORPUS, ids=[c[0] for c in CORPUS])
@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_malicious_corpus_is_refused_and_leaves_nothing(
    valid: bytes, store: Store, tmp_path: Path, name: str, mutate, error: str, compression: str  # type: ignore[no-untyped-def]
) -> None:
    data = write_members(mutate(read_members(valid)))
    if compression == "zstd":
        import zstandard

        data = zstandard.ZstdCompressor().compress(data)
    with pytest.raises(InvalidBundle, match=error):
        archive.import_archive(io.BytesIO(data), store)
    assert store_is_empty(store)
    assert not (tmp_path.parent / "evil").exists() and not Path("/etc/cron.d/evil").exists()


@pytest.mark.parametrize("cut", [100, 600, 2048, "last member"])
def test_truncated_archives_are_refused(valid: bytes, store: Store, cut: int | str) -> None:
    if cut == "last member":
        with tarfile.open(fileobj=io.BytesIO(valid)) as tar:
            cut = tar.getmembers()[-1].offset_data + 10
    with pytest.raises(InvalidBundle):
        archive.import_archive(io.BytesIO(valid[: int(cut)]), store)
    assert store_is_empty(store)


def test_garbage_is_not_an_archive(store: Store) -> None:
    with pytest.raises(InvalidBundle, match="not a tar archive"):
        archive.import_archive(io.BytesIO(b"\x00garbage" * 100), store)
    with pytest.raises(InvalidBundle):
        archive.import_archive(io.BytesIO(b"\x1f\x8bnot really gzip"), store)


# --- Property-based tests of the member rules ---------------------------------------

segment = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="/\\\x00"), min_size=1, max_size=8)
relative = st.lists(segment, min_size=1, max_size=5).map("/".join)


@given(relative)
def test_safe_relative_names_stay_inside(name: str) -> None:
    problem = archive.check_member(name, "file")
    if problem is None:
        root = Path("/bundle")
        resolved = (root / archive.normalize(name)).resolve()
        assert resolved.is_relative_to(root)
    else:
        # refused: a parent segment, a drive letter, or a name that is the bundle itself (".")
        assert ".." in name.split("/") or (len(name) > 1 and name[1] == ":") or name == "."


@given(st.lists(segment, max_size=3), st.lists(segment, max_size=3))
def test_any_dot_dot_component_is_refused(before: list[str], after: list[str]) -> None:
    assert archive.check_member("/".join([*before, "..", *after]), "file") is not None


@given(relative)
def test_absolute_names_are_refused(name: str) -> None:
    assert archive.check_member("/" + name, "file") == "absolute path"


@given(relative, st.sampled_from(["symlink", "hardlink"]), relative)
def test_links_are_always_refused(name: str, kind: str, target: str) -> None:
    assume(archive.check_member(name, "file") is None)  # the name itself is fine
    problem = archive.check_member(name, kind, target)
    assert problem is not None and "link" in problem
    escapes = archive.check_member(name, kind, "/" + target)
    assert escapes is not None and "leaves the bundle" in escapes


@given(relative, st.sampled_from(["other"]))
def test_special_files_are_refused(name: str, kind: str) -> None:
    problem = archive.check_member(name, kind)
    assert problem is not None


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.from_regex(r"[a-z]{1,6}(/[a-z]{1,6}){0,2}\.py", fullmatch=True), st.binary(max_size=300), min_size=1, max_size=6))
def test_any_source_tree_round_trips(tmp_path_factory: pytest.TempPathFactory, files: dict[str, bytes]) -> None:
    root = tmp_path_factory.mktemp("tree")
    paths = sorted(files)
    for p in paths:
        if any(other.startswith(p[:-3] + "/") for other in paths):
            return  # a file and a folder of the same name cannot coexist
    for p, data in files.items():
        (root / p).parent.mkdir(parents=True, exist_ok=True)
        (root / p).write_bytes(data)
    (root / "service.py").write_text(
        "import jubako\n@jubako.service(name='t')\nclass T:\n    @jubako.api\n    def f(self, x: str) -> str:\n        return x\n"
    )
    (root / "jubako.yaml").write_text("service: service:T\ninclude: ['**/*.py']\n")
    src, dst = Store(root / "h1"), Store(root / "h2")
    bento = build_bento(root, store=src)
    buf = io.BytesIO()
    archive.export(bento, buf, "gzip", store=src)
    imported = archive.import_archive(io.BytesIO(buf.getvalue()), dst).bundle
    assert imported.manifest.digest() == bento.manifest.digest()
    for f in bento.manifest.files:
        assert (imported.path / f.path).read_bytes() == (bento.path / f.path).read_bytes()
