"""Static web content: path resolution (hostile paths), content types, conditional
requests, and the proxy's routing (its own routes win over static files)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jubako.runtime.proxy import Proxy
from jubako.runtime.static import StaticSite, content_type, not_modified, resolve

from jubako.bundle import file_entries, walk_files
from jubako.manifest import ApiSpec, BentoManifest, StaticSpec, TextSpec
from jubako.runtime_settings import ProxySettings

FILES = {"index.html": 1, "app.js": 1, "css/site.css": 1, "sub/index.html": 1, "a b.txt": 1}


@pytest.mark.parametrize("rel, key", [
    ("", "index.html"), ("index.html", "index.html"), ("css/site.css", "css/site.css"),
    ("sub/", "sub/index.html"), ("a b.txt", "a b.txt"),
])
def test_listed_files_resolve(rel: str, key: str) -> None:
    target = resolve(FILES, rel)
    assert target is not None and target.key == key and not target.redirect


def test_a_folder_without_its_slash_redirects() -> None:
    assert resolve(FILES, "sub") == ("sub", True)
    assert resolve(FILES, "css") is None  # no index.html there: nothing to show


@pytest.mark.parametrize("rel", [
    "..", "../bento.yaml", "../src/service.py", "css/../index.html", "./index.html", "sub/./index.html",
    "/etc/passwd", "//index.html", "css//site.css", "index.html\0", "index.html\0.png", "..\\bento.yaml",
    "css\\site.css", "%2e%2e/bento.yaml", "%2E%2E%2Fbento.yaml", "..%2fbento.yaml", "index.html/",
    "nothing.html", "INDEX.HTML", "css/", "sub/../../bento.yaml",
])
def test_hostile_and_unknown_paths_resolve_to_nothing(rel: str) -> None:
    assert resolve(FILES, rel) is None


SEGMENTS = ["", ".", "..", "index.html", "sub", "css", "site.css", "app.js", "a b.txt", "%2e%2e", "\0", "\\", "..\\"]


@given(st.one_of(
    st.lists(st.sampled_from(SEGMENTS), max_size=6).map("/".join),  # near-misses of real paths
    st.text(max_size=40),
))
def test_resolution_only_ever_names_a_listed_file_or_folder(rel: str) -> None:
    target = resolve(FILES, rel)
    segments = rel.split("/")
    if ".." in segments or "." in segments or "\0" in rel or "\\" in rel:
        assert target is None
    if target is None:
        return
    assert target.key == rel or target.key == rel + "index.html"
    assert (target.key in FILES) != target.redirect
    if target.redirect:
        assert f"{target.key}/index.html" in FILES


@pytest.mark.parametrize("name, ctype", [
    ("index.html", "text/html; charset=utf-8"), ("app.js", "text/javascript; charset=utf-8"),
    ("m.mjs", "text/javascript; charset=utf-8"), ("site.css", "text/css; charset=utf-8"),
    ("data.json", "application/json; charset=utf-8"), ("logo.svg", "image/svg+xml; charset=utf-8"),
    ("logo.png", "image/png"), ("model.wasm", "application/wasm"), ("font.woff2", "font/woff2"),
    ("README", "application/octet-stream"), ("site.css.gz", "application/octet-stream"),
])
def test_content_types(name: str, ctype: str) -> None:
    assert content_type(name) == ctype.encode()


def test_conditional_requests() -> None:
    built = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)
    etag = b'"abc"'
    assert not_modified([(b"if-none-match", b'"abc"')], etag, built)
    assert not_modified([(b"if-none-match", b'"x", W/"abc"')], etag, built)
    assert not_modified([(b"if-none-match", b"*")], etag, built)
    assert not not_modified([(b"if-none-match", b'"other"')], etag, built)
    assert not not_modified([], etag, built)
    same = format_datetime(built, usegmt=True).encode()
    earlier = b"Sat, 31 Oct 2026 12:00:00 GMT"
    assert not_modified([(b"if-modified-since", same)], etag, built)
    assert not not_modified([(b"if-modified-since", earlier)], etag, built)
    assert not not_modified([(b"if-modified-since", b"yesterday")], etag, built)
    # If-None-Match decides when both are present
    assert not not_modified([(b"if-none-match", b'"other"'), (b"if-modified-since", same)], etag, built)


# --- a bento on disk ----------------------------------------------------------------


def bento(tmp_path: Path, apis: list[str] = ()) -> tuple[Path, BentoManifest]:  # type: ignore[assignment]
    files = {"static/index.html": b"<!doctype html><p>hi", "static/app.js": b"1", "static/sub/index.html": b"sub",
             "src/service.py": b"x = 1\n", "secret.txt": b"not static"}
    for rel, data in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
    manifest = BentoManifest(
        name="demo", version="v1", created_at=datetime(2026, 11, 1, 12, 0, 0, 123, tzinfo=UTC),
        service="service:Demo", static=StaticSpec(source="web"),
        apis=[ApiSpec(name=a, route=f"/{a}", input=TextSpec(), output=TextSpec()) for a in apis],
        files=file_entries(tmp_path, walk_files(tmp_path)),
    )
    return tmp_path, manifest


def respond(site: StaticSite, method: str, path: str, headers: list[tuple[bytes, bytes]] = (),  # type: ignore[assignment]
            root: str = "") -> Any:
    return asyncio.run(site.respond(method, path, headers, root))


def test_a_file_is_served_with_its_type_and_caching_headers(tmp_path: Path) -> None:
    root, manifest = bento(tmp_path)
    site = StaticSite(root, manifest)
    sha = next(f.sha256 for f in manifest.files if f.path == "static/index.html")
    r = respond(site, "GET", "/ui/")
    assert r.status == 200 and r.body == b"<!doctype html><p>hi"
    assert r.content_type == b"text/html; charset=utf-8"
    h = dict(r.headers)
    assert h[b"etag"] == f'"{sha}"'.encode()
    assert h[b"cache-control"] == b"no-cache"
    assert h[b"last-modified"] == b"Sun, 01 Nov 2026 12:00:00 GMT"
    assert h[b"x-content-type-options"] == b"nosniff"
    again = respond(site, "GET", "/ui/index.html", [(b"if-none-match", h[b"etag"])])
    assert again.status == 304 and again.body == b"" and dict(again.headers)[b"etag"] == h[b"etag"]
    assert respond(site, "GET", "/ui/index.html", [(b"if-modified-since", h[b"last-modified"])]).status == 304
    assert respond(site, "HEAD", "/ui/app.js").content_type == b"text/javascript; charset=utf-8"


def test_outside_the_folder_is_404_and_other_methods_405(tmp_path: Path) -> None:
    root, manifest = bento(tmp_path)
    site = StaticSite(root, manifest)
    for path in ("/ui/../secret.txt", "/ui/../src/service.py", "/ui/../bento.yaml", "/ui//secret.txt",
                 "/ui/secret.txt", "/ui/index.html\0", "/ui/%2e%2e/secret.txt"):
        r = respond(site, "GET", path)
        assert r.status == 404, path
        assert b"not static" not in r.body and b"x = 1" not in r.body
    r = respond(site, "POST", "/ui/index.html")
    assert r.status == 405 and dict(r.headers)[b"allow"] == b"GET, HEAD"


def test_folders_redirect_to_their_slash_under_the_root_path(tmp_path: Path) -> None:
    site = StaticSite(*bento(tmp_path))
    r = respond(site, "GET", "/ui", root="/v1")
    assert r.status == 307 and dict(r.headers)[b"location"] == b"/v1/ui/"
    r = respond(site, "GET", "/ui/sub")
    assert r.status == 307 and dict(r.headers)[b"location"] == b"/ui/sub/"
    assert respond(site, "GET", "/ui/sub/").body == b"sub"


def test_a_file_swapped_for_a_link_after_start_is_not_followed(tmp_path: Path) -> None:
    root, manifest = bento(tmp_path)
    site = StaticSite(root, manifest)
    (root / "static" / "app.js").unlink()
    (root / "static" / "app.js").symlink_to(root / "secret.txt")
    r = respond(site, "GET", "/ui/app.js")
    assert r.status == 500 and b"not static" not in r.body


def test_no_static_content_no_site(tmp_path: Path) -> None:
    _, manifest = bento(tmp_path)
    assert StaticSite.of(tmp_path, manifest.model_copy(update={"static": None})) is None


# --- the proxy's routing --------------------------------------------------------------


def call(proxy: Proxy, method: str, path: str) -> tuple[int, dict[bytes, bytes], bytes]:
    a = asyncio.run(proxy.respond(method, path, []))
    head = {b"content-type": a.content_type, b"content-length": b"%d" % len(a.body), **dict(a.headers)}
    return a.status, head, a.body


def test_the_proxy_serves_static_files_and_keeps_its_own_routes_first(tmp_path: Path) -> None:
    root, manifest = bento(tmp_path, apis=["ui"])
    proxy = Proxy(manifest, [], {}, ProxySettings(), static=StaticSite.of(root, manifest))
    proxy.routes = {"/ui": object()}  # type: ignore[dict-item]  # an API named "ui", as startup() would route it
    status, headers, body = call(proxy, "GET", "/ui/")
    assert (status, body) == (200, b"<!doctype html><p>hi")
    assert headers[b"content-type"] == b"text/html; charset=utf-8" and headers[b"cache-control"] == b"no-cache"
    status, headers, body = call(proxy, "HEAD", "/ui/app.js")
    assert status == 200 and headers[b"content-length"] == b"1" and headers[b"etag"].startswith(b'"')
    assert call(proxy, "GET", "/ui")[0] == 405  # the API route wins over the folder's redirect
    assert call(proxy, "GET", "/livez")[0] == 200
    status, headers, _ = call(proxy, "GET", "/docs")
    assert status == 200 and headers[b"content-type"].startswith(b"text/html")
    status, _, body = call(proxy, "GET", "/ui/../secret.txt")
    assert status == 404 and b"not static" not in body
    assert orjson.loads(call(Proxy(manifest, [], {}, ProxySettings()), "GET", "/ui/")[2])["error"]


class _Transport:
    """What the lean server writes, without a socket."""

    def __init__(self) -> None:
        self.out = b""

    def write(self, data: bytes) -> None:
        self.out += data

    def get_extra_info(self, name: str) -> None:
        return None

    def close(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False


def test_the_lean_server_answers_head_with_the_length_of_a_get(tmp_path: Path) -> None:
    from jubako.runtime.http import Connection, HttpServer

    root, manifest = bento(tmp_path)
    proxy = Proxy(manifest, [], {}, ProxySettings(), static=StaticSite.of(root, manifest))

    async def exchange(request: bytes) -> bytes:
        conn = Connection(HttpServer(proxy, 1 << 20))
        transport = _Transport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        conn.data_received(request)
        await asyncio.wait_for(asyncio.gather(*conn.server.tasks), 10)
        return transport.out

    get = asyncio.run(exchange(b"GET /ui/ HTTP/1.1\r\nhost: x\r\n\r\n"))
    head = asyncio.run(exchange(b"HEAD /ui/ HTTP/1.1\r\nhost: x\r\n\r\n"))
    assert get.startswith(b"HTTP/1.1 200 ") and get.endswith(b"\r\n\r\n<!doctype html><p>hi")
    assert b"content-length: 20\r\n" in head and head.endswith(b"\r\n\r\n")  # headers only, GET's length
    docs = asyncio.run(exchange(b"GET /docs HTTP/1.1\r\nhost: x\r\n\r\n"))
    docs_head = asyncio.run(exchange(b"HEAD /docs HTTP/1.1\r\nhost: x\r\n\r\n"))  # the same fix, nearby
    length = next(ln for ln in docs.split(b"\r\n") if ln.startswith(b"content-length: "))
    assert length != b"content-length: 0" and length + b"\r\n" in docs_head and docs_head.endswith(b"\r\n\r\n")


def test_a_file_over_the_cap_is_not_served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import jubako.manifest

    root, manifest = bento(tmp_path)
    monkeypatch.setattr(jubako.manifest, "MAX_STATIC_FILE_BYTES", 5)  # index.html has 20 bytes
    site = StaticSite(root, manifest)  # as a bento built by another tool could list one
    assert respond(site, "GET", "/ui/app.js").status == 200
    assert respond(site, "GET", "/ui/index.html").status == 404
