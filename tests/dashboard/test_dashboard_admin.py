"""Tokens (create shown once, list, revoke), the audit log, the deployments page."""

from __future__ import annotations

from pathlib import Path

import httpx
from playwright.sync_api import expect

from .conftest import Server, login, push_archive, real_errors, shot, synthetic_bento


def test_create_and_revoke_a_token(page, server: Server) -> None:  # type: ignore[no-untyped-def]
    login(page, server.admin)
    page.click(".mainnav >> text=Tokens")
    form = page.locator("#token-form")
    form.locator("input[name=user]").fill("ci")
    form.locator("input[name=name]").fill("pipeline")
    form.locator("select[name=scope]").select_option("write")
    form.locator("input[name=expires_in_days]").fill("30")
    form.locator("button[type=submit]").click()
    created = page.locator("#new-token")
    expect(created).to_be_visible()
    secret = created.inner_text().strip()
    assert secret.startswith("jbk_")
    expect(page.locator("#created-token")).to_contain_text("shown this once")
    shot(page, "06-tokens")

    with server.api(secret) as c:
        me = c.get("/api/v1/tokens/self").json()
    assert (me["user"], me["scope"], me["name"]) == ("ci", "write", "pipeline")
    row = page.locator(f"#token-{me['id']}")
    expect(row).to_contain_text("active")
    expect(row).to_contain_text(secret[:12])
    expect(page.locator("#tokens")).not_to_contain_text(secret)  # only the prefix is listed

    page.goto("/ui/tokens")  # shown once: never again
    expect(page.locator("#new-token")).to_have_count(0)
    assert secret not in page.content()

    page.once("dialog", lambda d: d.accept())
    page.locator(f"#token-{me['id']} button:has-text('Revoke')").click()
    expect(page.locator(".flash-success")).to_contain_text(f"Token {me['id']} revoked")
    expect(page.locator(f"#token-{me['id']}")).to_contain_text("revoked")
    assert httpx.get(f"{server.url}/api/v1/tokens/self",
                     headers={"Authorization": f"Bearer {secret}"}).status_code == 401

    # A dismissed confirmation revokes nothing.
    other = server.token("read", "kept")
    with server.api(other) as c:
        other_id = c.get("/api/v1/tokens/self").json()["id"]
    page.goto("/ui/tokens")
    page.once("dialog", lambda d: d.dismiss())
    page.locator(f"#token-{other_id} button:has-text('Revoke')").click()
    expect(page.locator(f"#token-{other_id}")).to_contain_text("active")
    assert real_errors(page) == []


def test_audit_log_is_admin_only(page, browser, server: Server) -> None:  # type: ignore[no-untyped-def]
    writer = server.token("write", "auditor-test")
    login(page, server.admin)
    page.click(".mainnav >> text=Audit log")
    table = page.locator("#audit")
    expect(table).to_contain_text("token.create")
    expect(table).to_contain_text("dashboard.login")
    shot(page, "07-audit")
    page.select_option("select[name=action]", "dashboard.login")
    page.click("form.filters button[type=submit]")
    actions = page.locator("#audit tbody tr td[data-th=Action]").all_inner_texts()
    assert actions and set(actions) == {"dashboard.login"}

    ctx = browser.new_context(base_url=server.url)
    p = ctx.new_page()
    login(p, writer)
    expect(p.locator(".mainnav")).not_to_contain_text("Audit log")
    r = p.goto("/ui/audit")
    assert r is not None and r.status == 403
    expect(p.locator("h1")).to_have_text("Not allowed")
    ctx.close()


def test_reported_deployments_are_listed(page, server: Server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    push_archive(server, synthetic_bento(tmp_path, "served"))
    # What the operator reports for an object created with kubectl (not by the dashboard).
    server.report_deployment(
        "ml-prod",
        "served-api",
        "served:v1",
        {
            "available": True,
            "ready": "3/3",
            "url": "http://served-api.ml-prod.svc:3000",
            "proxy": {"ready": 2, "desired": 2},
            "workers": {"gpu": {"ready": 1, "desired": 1}},
            "conditions": [
                {"type": "Available", "status": "True", "reason": "PodsReady",
                 "message": "3/3 pods ready"},
                {"type": "Degraded", "status": "False", "reason": "AsExpected",
                 "message": "no problem seen"},
            ],
        },
    )
    server.report_deployment("ml-dev", "served-canary", "served:v1", {"available": False})
    login(page, server.admin)
    page.click(".mainnav >> text=Deployments")
    row = page.locator("#deployments tbody tr").filter(has_text="served-api")
    expect(row).to_contain_text("ml-prod")
    expect(row).to_contain_text("test-cluster")
    expect(row).to_contain_text("served:v1")
    expect(row).to_contain_text("available")
    expect(row).to_contain_text("3/3")
    expect(row).to_contain_text("proxy 2/2")
    expect(row).to_contain_text("worker gpu 1/1")
    expect(row).to_contain_text("Available True · PodsReady")
    expect(row).to_contain_text("3/3 pods ready")
    canary = page.locator("#deployments tbody tr").filter(has_text="served-canary")
    expect(canary).to_contain_text("unavailable")
    expect(canary).to_contain_text("not reported")
    shot(page, "08-deployments")

    page.fill("input[name=q]", "canary")
    page.click("form.filters button[type=submit]")
    expect(page.locator("#deployments tbody tr")).to_have_count(1)
    page.locator("#deployments a:has-text('served:v1')").click()
    expect(page.locator("#version-deployments")).to_contain_text("ml-prod/served-api")
    expect(page.locator("#version-deployments")).to_contain_text("ml-dev/served-canary")
    with server.api() as c:
        c.delete("/api/v1/deployments/ml-prod/served-api")
        c.delete("/api/v1/deployments/ml-dev/served-canary")
    assert real_errors(page) == []
