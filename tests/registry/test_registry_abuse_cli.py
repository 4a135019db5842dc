"""The CLI's destructive commands without a terminal, local model deletion while bentos use
the model, and `jubako registry token list|revoke` (issue 13, items 13 and 10 local part)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from jubako.client.push import push
from jubako.store import Store
from jubako.tags import Tag

from .conftest import ADMIN, Served
from .factories import make_bento, make_model
from .test_registry_api import new_token

JUBAKO = [sys.executable, "-c", "from jubako.cli import main; main()"]


def jubako(home: Path, *args: str, url: str = "", token: str = ADMIN) -> subprocess.CompletedProcess:
    env = {**os.environ, "JUBAKO_HOME": str(home), "JUBAKO_REGISTRY_URL": url,
           "JUBAKO_TOKEN": token}
    # stdin is /dev/null: what a CI job or a script without a terminal gives.
    return subprocess.run([*JUBAKO, *args], env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120)


def test_local_deletes_need_yes_without_a_terminal_and_models_in_use_need_force(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    store = Store(home)
    model = make_model(store, "m", "v1")
    make_bento(store, "demo", "1", [model])

    for args in (["delete", "demo:1"], ["models", "delete", "m:v1", "--force"]):
        r = jubako(home, *args)
        assert r.returncode == 1 and "-y" in r.stderr and r.stderr.startswith("error: "), r
    assert store.bentos.exists(Tag("demo", "1")) and store.models.exists(model.tag)

    r = jubako(home, "models", "delete", "m:v1", "-y")
    assert r.returncode == 1 and "demo:1" in r.stderr and "--force" in r.stderr, r
    assert store.models.exists(model.tag)

    r = jubako(home, "models", "delete", "m:v1", "-y", "--force")
    assert r.returncode == 0, r.stderr
    assert not store.models.exists(model.tag)
    r = jubako(home, "delete", "demo:1", "-y")
    assert r.returncode == 0, r.stderr


def test_registry_delete_needs_yes_and_tokens_can_be_listed_and_revoked(
    local_registry: Served, tmp_path: Path
) -> None:
    src = Store(tmp_path / "src")
    make_bento(src, "svc", "v1", [])
    with local_registry.client() as c:
        push(c, "svc:v1", store=src)
    home, url = tmp_path / "home", local_registry.url

    r = jubako(home, "registry", "delete", "svc:v1", url=url)
    assert r.returncode == 1 and "-y" in r.stderr, r
    with local_registry.client() as c:
        assert c.get_version("bento", "svc", "v1")["state"] == "ready"

    ci = new_token(local_registry, "write")
    r = jubako(home, "registry", "token", "list", "--json", url=url)
    assert r.returncode == 0, r.stderr
    tokens = json.loads(r.stdout)
    mine = [t for t in tokens if t["user"] == "u-write"]
    assert len(mine) == 1 and ci.startswith(mine[0]["prefix"])
    assert all("token" not in t and "token_hash" not in t for t in tokens)  # no secrets
    table = jubako(home, "registry", "token", "list", url=url)
    assert table.returncode == 0 and "u-write" in table.stdout

    tid = str(mine[0]["id"])
    r = jubako(home, "registry", "token", "revoke", tid, url=url)
    assert r.returncode == 1 and "-y" in r.stderr, r
    assert httpx.get(f"{url}/api/v1/tokens/self",
                     headers={"Authorization": f"Bearer {ci}"}).status_code == 200
    r = jubako(home, "registry", "token", "revoke", tid, "-y", url=url)
    assert r.returncode == 0 and f"revoked token {tid}" in r.stdout, r.stderr
    assert httpx.get(f"{url}/api/v1/tokens/self",
                     headers={"Authorization": f"Bearer {ci}"}).status_code == 401
    listed = json.loads(jubako(home, "registry", "token", "list", "--json", url=url).stdout)
    assert tid not in {str(t["id"]) for t in listed}
    listed = json.loads(jubako(home, "registry", "token", "list", "--all", "--json",
                               url=url).stdout)
    assert any(str(t["id"]) == tid and t["revoked_at"] for t in listed)

    r = jubako(home, "registry", "delete", "svc:v1", "-y", url=url)
    assert r.returncode == 0, r.stderr
