"""Static web content declared by a service: the declaration, the build, the manifest."""

import textwrap
from pathlib import Path

import pytest

import jubako
from jubako.build import build as build_bento
from jubako.bundle import check_bundle
from jubako.digest import sha256_bytes
from jubako.errors import ConfigError, InvalidBundle, ServiceDefinitionError
from jubako.manifest import BentoManifest, FileEntry, StaticSpec, parse_manifest, utcnow
from jubako.store import Store

SERVICE = '''
import jubako

@jubako.service(name="demo", STATIC)
class Demo:
    @jubako.api
    def echo(self, text: str) -> str:
        return text
'''

# A bento manifest as jubako wrote it before static content existed: it must still read,
# and keep its bytes (and so its digest) when dumped again.
OLD_MANIFEST = textwrap.dedent("""\
    schema_version: 1
    name: demo
    version: v1
    created_at: '2026-11-01T00:00:00Z'
    labels: {}
    description: ''
    jubako_version: 0.1.0
    files:
    - path: src/service.py
      size: 3
      sha256: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
    kind: bento
    service: service:Demo
    service_name: demo
    apis: []
    models: []
    python:
      version: '3.11'
      requirements: []
      inferred: []
      wheels: []
    """).encode()


def project(root: Path, static: str, files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True)
    (root / "service.py").write_text(SERVICE.replace("STATIC", static))
    (root / "jubako.yaml").write_text("service: service:Demo\ninclude: ['*.py']\n")
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def test_an_old_manifest_reads_and_keeps_its_digest() -> None:
    m = parse_manifest(OLD_MANIFEST, "bento.yaml", BentoManifest)
    assert m.static is None
    assert m.dump() == OLD_MANIFEST
    assert m.digest() == "sha256:" + sha256_bytes(OLD_MANIFEST)


def test_static_content_needs_schema_version_2() -> None:
    base = dict(name="demo", version="v1", created_at=utcnow(), service="service:Demo")
    m = BentoManifest(**base, static=StaticSpec(source="web"))
    assert m.schema_version == 2  # an older jubako says "upgrade" rather than "unknown field"
    again = parse_manifest(m.dump(), "bento.yaml", BentoManifest)
    assert again == m and again.digest() == m.digest()
    assert BentoManifest(**base).schema_version == 1  # nothing new: still readable by old readers
    with pytest.raises(InvalidBundle, match="static: .*schema_version 2"):
        parse_manifest(m.dump().replace(b"schema_version: 2", b"schema_version: 1"), "bento.yaml", BentoManifest)
    with pytest.raises(InvalidBundle, match=r"static\.path"):  # the folder is fixed: never src/
        parse_manifest(m.dump().replace(b"path: static", b"path: src"), "bento.yaml", BentoManifest)


def test_the_declaration_is_resolved_against_the_services_module() -> None:
    @jubako.service(name="demo", static="web/")
    class Demo:
        @jubako.api
        def echo(self, text: str) -> str:
            return text

    assert Demo.static == "web/"
    assert Demo.static_dir == Path(__file__).parent / "web"


@pytest.mark.parametrize("static, words", [
    ("''", "empty"), ("'/srv/web'", "relative"), ("3", "a folder"), ("'a\\0b'", "NUL"),
])
def test_bad_declarations_are_refused(static: str, words: str) -> None:
    with pytest.raises(ServiceDefinitionError, match=words):
        exec(SERVICE.replace("STATIC", f"static={static}"), {})


def test_build_bundles_the_folder_with_sizes_and_digests(tmp_path: Path, store: Store) -> None:
    page = b"<!doctype html><title>demo</title>"
    root = project(tmp_path / "p", "static='web'", {
        "web/index.html": page, "web/js/app.js": b"console.log(1)", "web/.DS_Store": b"junk",
    })
    (root / "outside.txt").write_text("secret")
    (root / "web" / "link.txt").symlink_to(root / "outside.txt")  # built as a plain copy
    bundle = build_bento(root, store=store)
    m = bundle.manifest
    assert m.static == StaticSpec(path="static", source="web") and m.schema_version == 2
    files = {f.path: f for f in m.files}
    assert sorted(p for p in files if p.startswith("static/")) == [
        "static/index.html", "static/js/app.js", "static/link.txt"]
    assert files["static/index.html"] == FileEntry(path="static/index.html", size=len(page), sha256=sha256_bytes(page))
    assert not (bundle.path / "static" / "link.txt").is_symlink()
    assert (bundle.path / "static" / "link.txt").read_text() == "secret"
    check_bundle(bundle.path, m)


def test_build_without_static_content_records_none(tmp_path: Path, store: Store) -> None:
    m = build_bento(project(tmp_path / "p", "", {}), store=store).manifest
    assert m.static is None and m.schema_version == 1
    assert not any(f.path.startswith("static/") for f in m.files)
    assert b"static" not in m.dump()


@pytest.mark.parametrize("files, words", [
    ({}, "not a folder"), ({"web/.DS_Store": b""}, "no file"), ({"web": b"a file"}, "not a folder"),
])
def test_build_refuses_a_missing_or_empty_folder(tmp_path: Path, store: Store, files: dict[str, bytes],
                                                 words: str) -> None:
    root = project(tmp_path / "p", "static='web'", files)
    with pytest.raises(ConfigError, match=f"static folder .*web.*{words}"):
        build_bento(root, store=store)
    assert store.bentos.list() == []


def test_build_refuses_a_static_file_the_proxy_would_not_hold(tmp_path: Path, store: Store,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import jubako.manifest

    monkeypatch.setattr(jubako.manifest, "MAX_STATIC_FILE_BYTES", 100)  # the real cap is 32 MiB
    root = project(tmp_path / "p", "static='web'", {"web/index.html": b"x" * 100, "web/big.wasm": b"x" * 101})
    with pytest.raises(ConfigError, match=r"static file .*big\.wasm.*101 bytes.*100"):
        build_bento(root, store=store)
    assert store.bentos.list() == []


def test_static_content_travels_in_an_archive(tmp_path: Path, store: Store) -> None:
    import io

    from jubako.archive import export, import_archive
    from jubako.loader import open_bento

    root = project(tmp_path / "p", "static='web'", {"web/index.html": b"<p>hi", "web/img/logo.svg": b"<svg/>"})
    bundle = build_bento(root, store=store)
    buf = io.BytesIO()
    export(bundle, buf, store=store, compression="zstd")
    other = Store(tmp_path / "other")
    import_archive(io.BytesIO(buf.getvalue()), store=other)
    again = open_bento(str(bundle.tag), store=other)  # verified against the manifest
    assert again.manifest.digest() == bundle.manifest.digest() and again.manifest.static is not None
    assert (again.path / "static" / "img" / "logo.svg").read_bytes() == b"<svg/>"
