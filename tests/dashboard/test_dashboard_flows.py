"""Push an example archive from the browser, browse it, download it, edit labels, delete."""

from __future__ import annotations

import hashlib
from pathlib import Path

from playwright.sync_api import expect

from jubako.archive import extract

from .conftest import Example, Server, login, push_archive, real_errors, shot, synthetic_bento


def _sha256(path: Path | str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_push_browse_download_label_delete(page, server: Server, example: Example, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    login(page, server.admin)

    # --- push from the browser, with the progress bar ---------------------------------
    page.goto("/ui/push")
    page.set_input_files("#archive", str(example.path))
    page.fill("#push-labels", "stage=dev")
    page.click("#push-submit")
    expect(page.locator("#push-done")).to_be_visible()
    expect(page.locator("#push-progress")).to_have_attribute("data-state", "done")
    assert page.locator("#push-bar").evaluate("b => b.value") == 100
    done = page.locator("#push-done")
    expect(done).to_contain_text(f"bento {example.tag} pushed")
    for model in example.models:
        expect(done).to_contain_text(f"model {model} pushed")
    shot(page, "03-push")

    # --- browse: list, search, label filter, versions -------------------------------------
    page.goto("/ui/bentos")
    rows = page.locator("#repositories tbody tr")
    expect(rows.filter(has_text=example.name)).to_have_count(1)
    shot(page, "02-bentos")
    page.fill("input[name=q]", "torch")
    page.click("form.filters button[type=submit]")
    expect(rows.filter(has_text=example.name)).to_have_count(1)
    page.goto("/ui/bentos?q=no-such-name-at-all")
    expect(page.locator(".empty")).to_contain_text("matches these filters")
    page.goto("/ui/bentos?selector=stage%3Dprod")
    expect(page.locator("#repositories tbody tr").filter(has_text=example.name)).to_have_count(0)
    page.goto("/ui/bentos?selector=stage%3Ddev")
    row = page.locator("#repositories tbody tr").filter(has_text=example.name)
    expect(row).to_have_count(1)
    expect(row).to_contain_text(example.version)
    row.get_by_role("link", name=example.name, exact=True).click()
    expect(page.locator("h1")).to_have_text(example.name)
    expect(page.locator("#versions tbody tr")).to_have_count(1)
    shot(page, "02b-versions")
    page.get_by_role("link", name=example.version, exact=True).click()

    # --- the version page -----------------------------------------------------------
    expect(page.locator("h1")).to_contain_text(f"{example.name}:{example.version}")
    expect(page.locator("h1 .badge")).to_have_text("ready")
    expect(page.locator("#digest")).to_have_text(example.digest)
    expect(page.locator("#pushed-by")).to_have_text("admin")
    expect(page.locator("#apis")).to_contain_text("predict")
    expect(page.locator("#apis")).to_contain_text("POST /predict")
    expect(page.locator("#apis")).to_contain_text("tensor float32 (n, 16)")
    expect(page.locator("#apis")).to_contain_text("up to 64, 50.0 ms")
    expect(page.locator("#apis")).to_contain_text("classify")
    for model in example.models:
        expect(page.locator("#models-used")).to_contain_text(model)
    files = page.locator("#files tbody tr")
    expect(files.filter(has_text="src/service.py")).to_have_count(1)
    expect(page.locator("#pull-command")).to_have_text(
        f"jubako pull {example.tag} --registry {server.url}"
    )
    expect(page.locator("#deployment-yaml")).to_contain_text("kind: BentoDeployment")
    expect(page.locator("#deployment-yaml")).to_contain_text(f"bento: {example.tag}")
    expect(page.locator("#manifest")).to_contain_text("service: service:")
    shot(page, "04-version")
    version_url = page.url

    # --- pull: the archive download matches what was pushed --------------------------
    with page.expect_download() as dl:
        page.click("#download-archive")
    downloaded = dl.value.path()
    assert dl.value.suggested_filename == f"{example.name}-{example.version}.tar"
    ex = extract(open(downloaded, "rb"), tmp_path / "pulled")
    assert ex.manifest.digest() == example.digest
    assert sorted(str(m.tag) for m in ex.models) == sorted(example.models)
    for f in ex.manifest.files:  # extract verified them; check against the page as well
        assert _sha256(tmp_path / "pulled" / f.path) == f.sha256
    assert _sha256(downloaded) == _sha256(example.path)  # same bytes as `jubako export`

    # --- labels ---------------------------------------------------------------------
    form = page.locator("#labels-form")
    expect(form.locator("input[name=key][value=stage]")).to_have_count(1)
    page.click("[data-add-label]")  # a second empty row
    new_rows = form.locator(".label-row:not(:has(input[readonly]))")
    expect(new_rows).to_have_count(2)
    new_rows.nth(1).locator("input[name=key]").fill("owner")
    new_rows.nth(1).locator("input[name=value]").fill("ml-team")
    form.locator("input[name=remove][value=stage]").check()
    form.locator("button[type=submit]").click()
    expect(page.locator(".flash-success")).to_contain_text("Labels of bento")
    with server.api() as c:
        labels = c.get(f"/api/v1/bentos/{example.name}/versions/{example.version}").json()["labels"]
    assert labels["owner"] == "ml-team" and "stage" not in labels

    # --- the model page knows which bento uses it ---------------------------------------
    model_name, model_version = example.models[0].split(":")
    page.click(f"#models-used a:has-text('{example.models[0]}')")
    expect(page.locator("h1")).to_contain_text(f"{model_name}:{model_version}")
    expect(page.locator("#used-by")).to_contain_text(example.tag)
    with page.expect_download() as dl:
        page.click("#download-archive")
    assert dl.value.suggested_filename == f"{model_name}-{model_version}.tar"

    # --- delete: refused while deployed, then forced by an admin ------------------------
    server.report_deployment("prod", "mlp-torch-live", example.tag, {"ready": "1/1", "available": True})
    page.goto(version_url)
    expect(page.locator("#version-deployments")).to_contain_text("prod/mlp-torch-live")
    page.click("#delete")
    expect(page.locator("#in-use")).to_contain_text("deployment prod/mlp-torch-live")
    page.fill("#delete-form input[name=confirm]", "wrong")
    page.click("#delete-form button[type=submit]")
    expect(page.locator("#delete-error")).to_contain_text(f"Type {example.tag} to confirm")
    page.fill("#delete-form input[name=confirm]", example.tag)
    page.click("#delete-form button[type=submit]")
    expect(page.locator("#delete-error")).to_contain_text("is used by deployment prod/mlp-torch-live")
    shot(page, "05-delete-refused")
    page.fill("#delete-form input[name=confirm]", example.tag)
    page.check("#delete-form input[name=force]")
    page.click("#delete-form button[type=submit]")
    expect(page.locator(".flash-success")).to_contain_text(f"Deleted bento {example.tag}")
    with server.api() as c:
        assert c.get(f"/api/v1/bentos/{example.name}/versions/{example.version}").status_code == 404
        c.delete("/api/v1/deployments/prod/mlp-torch-live")
    assert real_errors(page) == []


def test_write_scope_cannot_force_a_delete(page, server: Server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    push_archive(server, synthetic_bento(tmp_path, "guarded"))
    server.report_deployment("team", "guarded", "guarded:v1", {})
    login(page, server.token("write", "writer"))
    expect(page.locator(".mainnav")).not_to_contain_text("Tokens")
    page.goto("/ui/bentos/guarded/v1/delete")
    expect(page.locator("#in-use")).to_contain_text("Only an admin can force")
    expect(page.locator("#delete-form input[name=force]")).to_have_count(0)
    page.fill("#delete-form input[name=confirm]", "guarded:v1")
    page.click("#delete-form button[type=submit]")
    expect(page.locator("#delete-error")).to_contain_text("is used by deployment team/guarded")
    # Forging the force field does not help.
    r = page.context.request.post(
        "/ui/bentos/guarded/v1/delete",
        form={"csrf": page.locator("input[name=csrf]").first.get_attribute("value"),
              "confirm": "guarded:v1", "force": "true"},
    )
    assert r.status == 409 and "needs the admin scope" in r.text()
    # Not deployed any more: a write token may delete it.
    with server.api() as c:
        c.delete("/api/v1/deployments/team/guarded")
    page.goto("/ui/bentos/guarded/v1/delete")
    page.fill("#delete-form input[name=confirm]", "guarded:v1")
    page.click("#delete-form button[type=submit]")
    expect(page.locator(".flash-success")).to_contain_text("Deleted bento guarded:v1")
    assert page.url.endswith("/ui/bentos")
