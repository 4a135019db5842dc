"""Input that the database would refuse, sent to every kind of route (issue 13, item 7):
NUL bytes (PostgreSQL refuses them in text), values longer than their columns, integers past
64 bits (SQLite's OverflowError). Each must be a 4xx with a message, never a 500."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from jubako.manifest import FileEntry, ModelManifest, utcnow

from .conftest import Served
from .test_registry_abuse import ANSWER_S, AUTH, dashboard_login


def _cursor(values: list[object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def _manifest(version: str, labels: dict[str, str] | None = None, path: str = "w.bin") -> str:
    m = ModelManifest(name="m", version=version, created_at=utcnow(), framework="torch",
                      format="torch.state_dict", labels=labels or {},
                      files=[FileEntry(path=path, size=3, sha256="0" * 64)])
    return m.dump().decode()


@pytest.mark.parametrize("backend", ["sqlite-local", "postgres-local"])
def test_input_the_database_refuses_is_a_4xx(registry: Served) -> None:
    nul = "a\x00b"
    big = 2**63
    bad: list[tuple[str, str, dict]] = [
        ("GET", "/api/v1/bentos", {"params": {"prefix": nul}}),
        ("GET", "/api/v1/bentos", {"params": {"selector": f"team={nul}"}}),
        ("GET", "/api/v1/bentos", {"params": {"selector": nul}}),
        ("GET", "/api/v1/bentos/x/versions", {"params": {"selector": f"a!={nul}"}}),
        ("GET", "/api/v1/bentos", {"params": {"sort": "name", "cursor": _cursor([nul, 1])}}),
        ("GET", "/api/v1/bentos", {"params": {"sort": "name", "cursor": _cursor(["x", big])}}),
        ("GET", "/api/v1/bentos", {"params": {"cursor": _cursor([utcnow().isoformat(), big])}}),
        ("GET", "/api/v1/bentos", {"params": {"cursor": _cursor([utcnow().isoformat(), -big])}}),
        ("GET", "/api/v1/bentos", {"params": {"sort": "name", "cursor": _cursor(["x" * 999, 1])}}),
        ("GET", "/api/v1/audit", {"params": {"action": nul}}),
        ("GET", "/api/v1/audit", {"params": {"cursor": str(big)}}),
        ("DELETE", f"/api/v1/tokens/{big}", {}),
        ("DELETE", f"/api/v1/tokens/{-big - 1}", {}),
        ("POST", "/api/v1/tokens", {"json": {"scope": "read", "user": nul}}),
        ("POST", "/api/v1/tokens", {"json": {"scope": "read", "name": nul}}),
        ("PUT", "/api/v1/deployments/ns/d", {"json": {"bento": "x:v1", "cluster": nul}}),
        # Each push its own version: a refused push must not leave one behind (no 409).
        ("PUT", "/api/v1/models/m/versions/b1",
         {"json": {"manifest": _manifest("b1"), "labels": {"team": nul}}}),
        ("PUT", "/api/v1/models/m/versions/b2", {"json": {"manifest": _manifest("b2", {"t": nul})}}),
        ("PUT", "/api/v1/models/m/versions/b3",
         {"json": {"manifest": _manifest("b3", {"team": "x" * 300})}}),
        ("PUT", "/api/v1/models/m/versions/b4",
         {"json": {"manifest": _manifest("b4", {"-not a key-": "x"})}}),
        ("PUT", "/api/v1/models/m/versions/b5",
         {"json": {"manifest": _manifest("b5", path="d/" * 600 + "f")}}),
    ]
    with httpx.Client(base_url=registry.url, headers=AUTH, timeout=ANSWER_S) as c:
        failures = []
        for method, url, kw in bad:
            try:
                r = c.request(method, url, **kw)
            except httpx.HTTPError as e:  # the old server reset the connection on some
                failures.append(f"{method} {url} {kw}: {e!r}")
                continue
            detail = r.json().get("detail") if r.headers.get("content-type", "").startswith(
                "application/json") else None
            if not 400 <= r.status_code < 500 or not detail:
                failures.append(f"{method} {url} {kw}: {r.status_code} {r.text[:200]}")
        assert not failures, "\n".join(failures)
        # A ready version: its labels are changed through PATCH with the same checks.
        r = c.get("/api/v1/models")
        assert r.status_code == 200 and r.json()["items"] == []
        assert c.put("/api/v1/models/m/versions/v1",
                     json={"manifest": _manifest("v1")}).status_code == 201
        for labels in ({"team": nul}, {"team": "x" * 256}, {"a\x00": "x"}):
            r = c.patch("/api/v1/models/m/versions/v1", json={"labels": labels})
            assert r.status_code == 400, r.text
        r = c.get("/api/v1/models/m/versions/v1")
        assert r.status_code == 200 and r.json()["labels"] == {}


@pytest.mark.parametrize("backend", ["sqlite-local", "postgres-local"])
def test_dashboard_refuses_nul_bytes_with_4xx(registry: Served) -> None:
    with httpx.Client(base_url=registry.url, timeout=ANSWER_S) as c:
        csrf = dashboard_login(c)
        for url, params in [("/ui/bentos", {"q": "a\x00"}), ("/ui/bentos", {"after": "a\x00"}),
                            ("/ui/bentos", {"selector": "a=\x00"}),
                            ("/ui/audit", {"action": "\x00"})]:
            r = c.get(url, params=params)
            assert 400 <= r.status_code < 500, (url, params, r.status_code, r.text[:200])
        r = c.post("/ui/tokens", data={"csrf": csrf, "scope": "read", "user": "a\x00",
                                       "name": "n"})
        assert r.status_code < 500, r.text[:200]
        r = c.post("/ui/users/password", data={"csrf": csrf, "user": "a\x00",
                                               "password": "password-1", "scope": "read"})
        assert r.status_code < 500, r.text[:200]
