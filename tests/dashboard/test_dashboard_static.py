"""The version page of a bento with static web content: where the proxy serves it, and
its files (names escaped); a bento without any shows no such section."""

from __future__ import annotations

import io
from pathlib import Path

from playwright.sync_api import expect

from jubako.archive import export
from jubako.build import build
from jubako.store import Store

from .conftest import Server, login, push_archive, real_errors, shot, unique

SERVICE = '''
import jubako

@jubako.service(name="NAME", STATIC)
class Page:
    @jubako.api
    def echo(self, text: str) -> str:
        return text
'''
ODD = "x<img src=y onerror=\"window.__xss = 1\">.html"


def archive(tmp: Path, name: str, static: bool) -> bytes:
    root = tmp / name
    (root / "web" / "js").mkdir(parents=True)
    (root / "service.py").write_text(SERVICE.replace("NAME", name).replace("STATIC", "static='web'" if static else ""))
    (root / "jubako.yaml").write_text("service: service:Page\ninclude: ['*.py']\n")
    (root / "web" / "index.html").write_text("<!doctype html><p>hello")
    (root / "web" / "js" / "app.js").write_text("console.log(1)")
    (root / "web" / ODD).write_text("odd")
    store = Store(tmp / f"store-{name}")
    bundle = build(root, store=store, version="v1")
    buf = io.BytesIO()
    export(bundle, buf, store=store)
    return buf.getvalue()


def test_the_version_page_lists_static_content(page, server: Server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with_ui, without = unique("web"), unique("noweb")
    push_archive(server, archive(tmp_path, with_ui, static=True))
    push_archive(server, archive(tmp_path, without, static=False))
    login(page, server.admin)
    page.goto(f"/ui/bentos/{with_ui}/v1")
    section = page.locator("#static-content")
    expect(section).to_contain_text("3 files")
    expect(page.locator("#static-route")).to_have_text("/ui/")
    expect(section).to_contain_text('static="web"')
    urls = page.locator("#static-files tbody td[data-th='URL path']").all_text_contents()
    assert urls == ["/ui/index.html", "/ui/js/app.js", f"/ui/{ODD}"]
    assert page.evaluate("window.__xss") is None and page.locator("img[src=y]").count() == 0
    shot(page, "20-static-content")
    page.goto(f"/ui/bentos/{without}/v1")
    expect(page.locator("#apis")).to_be_visible()
    assert page.locator("#static-content").count() == 0
    assert real_errors(page) == []
