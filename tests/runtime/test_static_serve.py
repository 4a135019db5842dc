"""The web UI example (examples/mlp_web) served by a real ``jubako serve``: its page under
/ui/ with the right types and caching headers, hostile paths refused over the wire, and the
API the page calls answering next to it."""

from __future__ import annotations

import http.client
import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from jubako.build import build
from jubako.store import Store

from .conftest import serve, wait_for

WEB = Path(__file__).resolve().parents[2] / "examples" / "mlp_web"

CHROMIUM = os.environ.get("JUBAKO_TEST_CHROMIUM", "/usr/bin/chromium")

# a proxy and a worker with onnxruntime (several seconds), and the page in a real Chromium
pytestmark = [pytest.mark.slow, pytest.mark.browser]


def raw(url: str, method: str, path: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    """One request with ``path`` sent exactly as written (no client normalises its dots)."""
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    conn.request(method, path, headers=headers or {})
    resp = conn.getresponse()
    resp.body = resp.read()  # type: ignore[attr-defined]
    conn.close()
    return resp


def click_predict(url: str) -> None:
    """What a person does: open the page, fill it at random, press Predict, read 4 rows."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"], headless=True)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url)  # the redirect to /ui/, then the page, its script and style
            page.click("#random")
            page.click("#run")
            page.wait_for_selector("#probabilities li", timeout=15_000)
            rows = page.locator("#probabilities li").all_text_contents()
            assert [r.split(":")[0] for r in rows] == ["class 0", "class 1", "class 2", "class 3"]
            assert page.locator("#error").text_content() == "" and errors == []
        finally:
            browser.close()


def test_the_example_page_is_served_next_to_its_api(runtime_store: Store, tmp_path: Path) -> None:
    bundle = build(WEB, store=runtime_store)
    assert bundle.manifest.static is not None
    assert {f.path for f in bundle.manifest.files} >= {"static/index.html", "static/app.js", "static/style.css"}
    page = (WEB / "web" / "index.html").read_bytes()
    script = (WEB / "web" / "app.js").read_bytes()
    log = tmp_path / "serve.log"
    with open(log, "wb") as out, serve(runtime_store, str(bundle.tag), stderr=out.fileno()) as server:
        wait_for(lambda: b"ready at" in log.read_bytes(), 30, "the ready line")
        assert f"web UI at {server.url}/ui/".encode() in log.read_bytes()
        r = raw(server.url, "GET", "/ui/")
        assert r.status == 200 and r.body == page  # type: ignore[attr-defined]
        assert r.getheader("content-type") == "text/html; charset=utf-8"
        assert r.getheader("cache-control") == "no-cache"
        assert r.getheader("x-content-type-options") == "nosniff"
        etag = r.getheader("etag")
        sha = next(f.sha256 for f in bundle.manifest.files if f.path == "static/index.html")
        assert etag == f'"{sha}"' and r.getheader("last-modified", "").endswith(" GMT")

        r = raw(server.url, "GET", "/ui/index.html", {"if-none-match": etag})
        assert r.status == 304 and r.body == b"" and r.getheader("etag") == etag  # type: ignore[attr-defined]

        r = raw(server.url, "GET", "/ui/app.js")
        assert r.status == 200 and r.getheader("content-type") == "text/javascript; charset=utf-8"
        r = raw(server.url, "HEAD", "/ui/app.js")
        assert r.status == 200 and r.body == b""  # type: ignore[attr-defined]
        assert r.getheader("content-length") == str(len(script))  # what a GET would send
        assert raw(server.url, "GET", "/ui/style.css").getheader("content-type") == "text/css; charset=utf-8"

        r = raw(server.url, "GET", "/ui")
        assert r.status == 307 and r.getheader("location") == "/ui/"

        for path in ("/ui/../bento.yaml", "/ui/%2e%2e/bento.yaml", "/ui/%2E%2E%2Fbento.yaml",
                     "/ui/..%2fsrc/service.py", "/ui/%252e%252e/bento.yaml", "/ui//etc/passwd",
                     "/ui/index.html%00", "/ui/..\\bento.yaml", "/ui/missing.html"):
            r = raw(server.url, "GET", path)
            assert r.status == 404, path
            assert b"service:" not in r.body and b"import" not in r.body  # type: ignore[attr-defined]

        # what the page does: POST ../predict
        conn = http.client.HTTPConnection(urlsplit(server.url).hostname, urlsplit(server.url).port, timeout=30)
        conn.request("POST", "/predict", body="[[" + ",".join(["0.5"] * 16) + "]]",
                     headers={"content-type": "application/json"})
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        assert resp.status == 200 and body.count(b",") == 3
        assert raw(server.url, "GET", "/docs").status == 200
        assert raw(server.url, "GET", "/livez").status == 200
        click_predict(server.url + "/ui")
