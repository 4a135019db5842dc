"""Login with a token or a password, the session cookie, logout, CSRF on every form."""

from __future__ import annotations

from playwright.sync_api import expect

from .conftest import Server, csrf_of, login, real_errors, shot


def test_token_login_cookie_and_logout(page, server: Server) -> None:  # type: ignore[no-untyped-def]
    page.goto("/ui/deployments")
    assert "/ui/login?next=%2Fui%2Fdeployments" in page.url
    expect(page.locator(".mainnav")).to_have_count(0)
    shot(page, "01-login")
    page.fill("#login-token input[name=token]", "jbk_not-a-real-token-000000000000")
    page.click("#login-token button[type=submit]")
    expect(page.locator(".flash-error")).to_contain_text("unknown, expired or revoked")
    page.fill("#login-token input[name=token]", server.admin)
    page.click("#login-token button[type=submit]")
    page.wait_for_url("**/ui/deployments")  # back where the login was asked for
    expect(page.locator(".who")).to_contain_text("admin")

    cookie = next(c for c in page.context.cookies() if c["name"] == "jubako_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["path"] == "/ui"
    assert server.admin not in cookie["value"]
    assert page.evaluate("document.cookie") == ""  # HttpOnly: scripts cannot read it

    page.click("#logout")
    page.wait_for_url("**/ui/login")
    expect(page.locator(".flash-info")).to_contain_text("Logged out")
    page.goto("/ui/tokens")
    assert "/ui/login" in page.url
    assert real_errors(page) == []


def test_revoking_the_token_ends_its_session(page, server: Server) -> None:  # type: ignore[no-untyped-def]
    token = server.token("read", "short-lived")
    login(page, token)
    with server.api(token) as c:
        token_id = c.get("/api/v1/tokens/self").json()["id"]
    with server.api() as c:
        assert c.delete(f"/api/v1/tokens/{token_id}").status_code == 204
    page.goto("/ui/bentos")
    assert "/ui/login" in page.url


def test_password_login_and_scopes(browser, page, server: Server) -> None:  # type: ignore[no-untyped-def]
    login(page, server.admin)
    page.goto("/ui/tokens")
    form = page.locator("#password-form")
    form.locator("input[name=user]").fill("alice")
    form.locator("input[name=password]").fill("short")
    # The browser checks the length itself; the server must too.
    form.locator("input[name=password]").evaluate("e => e.removeAttribute('minlength')")
    form.locator("button[type=submit]").click()
    expect(page.locator(".flash-error")).to_contain_text("at least 8 characters")
    form.locator("input[name=user]").fill("alice")
    form.locator("input[name=password]").fill("correct horse battery")
    form.locator("select[name=scope]").select_option("read")
    form.locator("button[type=submit]").click()
    expect(page.locator(".flash-success")).to_contain_text("Password login set for alice")

    alice = browser.new_context(base_url=server.url)
    p = alice.new_page()
    p.goto("/ui/login")
    p.click("label[for=tab-password]")
    p.fill("#login-password input[name=user]", "alice")
    p.fill("#login-password input[name=password]", "wrong password")
    p.click("#login-password button[type=submit]")
    expect(p.locator(".flash-error")).to_contain_text("wrong password")
    expect(p.locator("#login-password")).to_be_visible()  # the password tab stays open
    p.fill("#login-password input[name=password]", "correct horse battery")
    p.click("#login-password button[type=submit]")
    p.wait_for_url("**/ui/bentos")
    expect(p.locator(".who")).to_contain_text("alice")
    nav = p.locator(".mainnav")
    expect(nav).to_contain_text("Deployments")
    for hidden in ("Push", "Tokens", "Audit log"):
        expect(nav).not_to_contain_text(hidden)
    for path in ("/ui/tokens", "/ui/audit", "/ui/push"):
        r = p.goto(path)
        assert r is not None and r.status == 403, path
        expect(p.locator(".error-message")).to_contain_text("needs the")

    # Changing (here: removing) the password ends the session.
    form.locator("input[name=user]").fill("alice")
    form.locator("input[name=disable]").check()
    form.locator("button[type=submit]").click()
    expect(page.locator(".flash-success")).to_contain_text("disabled for alice")
    p.goto("/ui/bentos")
    assert "/ui/login" in p.url
    alice.close()


def test_forms_without_csrf_token_are_refused(browser, page, server: Server) -> None:  # type: ignore[no-untyped-def]
    login(page, server.admin)
    page.goto("/ui/tokens")
    good = csrf_of(page)
    req = page.context.request
    posts = {
        "/ui/tokens": {"scope": "admin", "user": "csrf-victim"},
        "/ui/tokens/1/revoke": {},
        "/ui/users/password": {"user": "csrf-victim", "password": "aaaaaaaaaa", "scope": "admin"},
        "/ui/logout": {},
        "/ui/bentos/any/v1/labels": {"key": "k", "value": "v"},
        "/ui/bentos/any/v1/delete": {"confirm": "any:v1", "force": "true"},
    }
    for path, form in posts.items():
        for csrf in (None, "", "forged-" + good[7:], good + "x"):
            data = dict(form) if csrf is None else {**form, "csrf": csrf}
            r = req.post(path, form=data, max_redirects=0)
            assert r.status == 403, (path, csrf, r.status)
            assert "CSRF" in r.text(), path
    # The upload answers JSON and wants the token in a header.
    r = req.post("/ui/push", data=b"x", headers={"Content-Type": "application/octet-stream"})
    assert r.status == 403 and "CSRF" in r.json()["detail"]
    r = req.post("/ui/push", data=b"x", headers={"X-CSRF-Token": "nope"})
    assert r.status == 403
    # Another session's token is no good either.
    other = browser.new_context(base_url=server.url)
    other_page = other.new_page()
    other_page.goto("/ui/login")
    r = other.request.post("/ui/login", form={"csrf": good, "method": "token", "token": server.admin},
                           max_redirects=0)
    assert r.status == 403
    r = other.request.post("/ui/login", form={"method": "token", "token": server.admin},
                           max_redirects=0)
    assert r.status == 403
    other.close()
    # Nothing happened; still logged in; the real token works.
    with server.api() as c:
        users = {t["user"] for t in c.get("/api/v1/tokens").json()}
    assert "csrf-victim" not in users
    page.goto("/ui/tokens")
    expect(page.locator(".who")).to_contain_text("admin")
    r = req.post("/ui/users/password", form={"csrf": good, "user": "csrf-ok",
                                             "password": "long enough!", "scope": "read"},
                 max_redirects=0)
    assert r.status == 303


def test_cli_sets_a_password_for_the_dashboard(page, server: Server) -> None:  # type: ignore[no-untyped-def]
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if not k.startswith("JUBAKO_")}
    env.update(JUBAKO_HOME=str(server.home), JUBAKO_REGISTRY_DATA_DIR=str(server.home / "registry"),
               JUBAKO_PASSWORD="carol's password")
    jubako = str(Path(sys.executable).parent / "jubako")
    r = subprocess.run([jubako, "registry", "set-password", "carol", "--scope", "write"],
                       env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "password login set (write scope) for carol" in r.stdout
    page.goto("/ui/login")
    page.click("label[for=tab-password]")
    page.fill("#login-password input[name=user]", "carol")
    page.fill("#login-password input[name=password]", "carol's password")
    page.click("#login-password button[type=submit]")
    page.wait_for_url("**/ui/bentos")
    expect(page.locator(".who")).to_contain_text("carol")
    expect(page.locator(".mainnav")).to_contain_text("Push")
