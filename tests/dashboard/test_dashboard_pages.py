"""Escaping of untrusted text, pagination, a narrow window, Swagger UI without a CDN."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import expect

from .conftest import (
    Server,
    login,
    push_archive,
    push_empty_model,
    real_errors,
    shot,
    synthetic_bento,
    unique,
)

SCRIPT = "<script>window.__xss = 1</script>"
IMG = '<img src=x onerror="window.__xss = 2">'


def _not_executed(page) -> None:  # type: ignore[no-untyped-def]
    assert page.evaluate("window.__xss") is None
    assert page.locator("img[src=x]").count() == 0
    assert page.locator("body script").count() == 0  # the only script is app.js in <head>


def test_html_in_names_and_labels_is_shown_escaped(page, server: Server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # Names are restricted by the tag grammar; labels, user names, cluster names and the
    # statuses reported for deployments are free text.
    push_archive(
        server,
        synthetic_bento(tmp_path, "xss-bento", labels={"note": SCRIPT}),
        label=[f"img={IMG}"],
    )
    server.report_deployment(
        "xss", "xss-deploy", "xss-bento:v1",
        {"ready": IMG, "conditions": [{"type": SCRIPT, "status": "True", "message": IMG}]},
    )
    with server.api() as c:
        r = c.post("/api/v1/tokens", json={"scope": "read", "user": f"<b>{SCRIPT}</b>",
                                           "name": IMG})
        assert r.status_code == 201
    login(page, server.admin)
    for path, texts in {
        "/ui/bentos?q=xss": [SCRIPT, IMG],
        "/ui/bentos/xss-bento": [SCRIPT, IMG],
        "/ui/bentos/xss-bento/v1": [],  # labels are in inputs there: checked below
        "/ui/deployments?q=xss": [SCRIPT, IMG],
        "/ui/tokens": [f"<b>{SCRIPT}</b>", IMG],
        "/ui/audit": [f"<b>{SCRIPT}</b>"],
    }.items():
        page.goto(path)
        for text in texts:
            expect(page.get_by_text(text, exact=False).first).to_be_visible()
        _not_executed(page)
    # Label inputs hold the raw value, not markup.
    page.goto("/ui/bentos/xss-bento/v1")
    values = page.locator("#labels-form input[name=value]")
    assert [values.nth(i).input_value() for i in range(2)] == [IMG, SCRIPT]
    assert SCRIPT in (page.locator("#manifest").text_content() or "")
    shot(page, "09-escaped")
    # A filter or search term is echoed escaped as well.
    page.goto("/ui/bentos?q=" + SCRIPT.replace("<", "%3C").replace(">", "%3E"))
    expect(page.locator("input[name=q]")).to_have_value(SCRIPT)
    _not_executed(page)
    with server.api() as c:
        c.delete("/api/v1/deployments/xss/xss-deploy")
    assert real_errors(page) == []


def test_pagination_of_repositories_and_versions(page, server: Server) -> None:  # type: ignore[no-untyped-def]
    tag = unique("pg")
    for i in range(30):  # 30 names with one version each
        push_empty_model(server, f"{tag}-{i:02d}", "v1", f"2025-01-01T00:00:{i:02d}Z")
    for i in range(30):  # one name with 30 versions
        push_empty_model(server, f"{tag}-many", f"v{i:02d}", f"2025-02-01T00:00:{i:02d}Z")
    login(page, server.admin)

    page.goto(f"/ui/models?q={tag}")
    rows = page.locator("#repositories tbody tr td[data-th=Name]")
    expect(rows).to_have_count(25)
    expect(page.locator(".pager")).to_contain_text("31 repositories")
    first_page = rows.all_inner_texts()
    assert first_page == sorted(first_page) and first_page[0] == f"{tag}-00"
    expect(page.locator(".pager span.disabled:has-text('Previous')")).to_have_count(1)
    page.click(".pager a[rel=next]")
    expect(rows).to_have_count(6)
    assert rows.all_inner_texts() == [f"{tag}-{i:02d}" for i in range(25, 30)] + [f"{tag}-many"]
    expect(page.locator(".pager span.disabled:has-text('Next')")).to_have_count(1)
    page.click(".pager a[rel=prev]")
    expect(rows).to_have_count(25)
    assert rows.all_inner_texts() == first_page

    page.goto(f"/ui/models/{tag}-many")
    versions = page.locator("#versions tbody tr td[data-th=Version]")
    expect(versions).to_have_count(25)
    expect(page.locator(".pager")).to_contain_text("30 versions")
    assert versions.all_inner_texts() == [f"v{i:02d}" for i in range(29, 4, -1)]  # newest first
    page.click(".pager a[rel=next]")
    assert versions.all_inner_texts() == [f"v{i:02d}" for i in range(4, -1, -1)]
    page.click(".pager a[rel=prev]")
    assert versions.all_inner_texts() == [f"v{i:02d}" for i in range(29, 4, -1)]
    page.goto(f"/ui/models/{tag}-many?state=failed")
    expect(page.locator(".empty")).to_contain_text("No version matches")
    page.goto(f"/ui/models/{tag}-many?selector=bad%20selector%21%21")
    expect(page.locator(".flash-error")).to_contain_text("invalid label selector")
    assert real_errors(page) == []


def test_narrow_window(browser, server: Server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    push_archive(server, synthetic_bento(tmp_path, "narrow", labels={"team": "mobile"}))
    ctx = browser.new_context(base_url=server.url, viewport={"width": 380, "height": 800},
                              is_mobile=True)
    page = ctx.new_page()
    login(page, server.admin)
    for path, name in [("/ui/bentos", "10-narrow-bentos"), ("/ui/bentos/narrow/v1", "11-narrow-version"),
                       ("/ui/tokens", "12-narrow-tokens")]:
        page.goto(path)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, (path, overflow)
        shot(page, name)
    expect(page.locator(".mainnav")).to_be_visible()
    ctx.close()


def test_swagger_ui_needs_no_cdn(page, server: Server) -> None:  # type: ignore[no-untyped-def]
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    page.goto("/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("jubako registry")
    assert requested and all(u.startswith(server.url) for u in requested), requested
    assert any(u.endswith("/docs/static/swagger-ui-bundle.js") for u in requested)
