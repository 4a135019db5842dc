"""The scope matrix: every route x (no token, a bad token, read, write, admin)."""

from __future__ import annotations

import httpx

from .conftest import ADMIN
from .test_registry_api import new_token

PUBLIC = {"/livez", "/readyz", "/metrics"}
NEEDS = {  # (method, path template) -> scope
    ("GET", "/api/v1/bentos"): "read",
    ("GET", "/api/v1/models"): "read",
    ("GET", "/api/v1/bentos/{name}/versions"): "read",
    ("GET", "/api/v1/models/{name}/versions"): "read",
    ("GET", "/api/v1/bentos/{name}/versions/{version}"): "read",
    ("GET", "/api/v1/models/{name}/versions/{version}"): "read",
    ("GET", "/api/v1/bentos/{name}/versions/{version}/manifest"): "read",
    ("GET", "/api/v1/models/{name}/versions/{version}/manifest"): "read",
    ("GET", "/api/v1/bentos/{name}/versions/{version}/download"): "read",
    ("GET", "/api/v1/models/{name}/versions/{version}/download"): "read",
    ("GET", "/api/v1/bentos/{name}/versions/{version}/archive"): "read",
    ("GET", "/api/v1/models/{name}/versions/{version}/archive"): "read",
    ("POST", "/api/v1/archives"): "write",
    ("GET", "/api/v1/blobs/{digest}"): "read",
    ("GET", "/api/v1/deployments"): "read",
    ("GET", "/api/v1/tokens/self"): "read",
    ("PUT", "/api/v1/bentos/{name}/versions/{version}"): "write",
    ("PUT", "/api/v1/models/{name}/versions/{version}"): "write",
    ("PATCH", "/api/v1/bentos/{name}/versions/{version}"): "write",
    ("PATCH", "/api/v1/models/{name}/versions/{version}"): "write",
    ("DELETE", "/api/v1/bentos/{name}/versions/{version}"): "write",
    ("DELETE", "/api/v1/models/{name}/versions/{version}"): "write",
    ("GET", "/api/v1/uploads/{upload_id}"): "write",
    ("PUT", "/api/v1/uploads/{upload_id}/blobs/{digest}/parts/{number}"): "write",
    ("POST", "/api/v1/uploads/{upload_id}/blobs/{digest}/complete"): "write",
    ("POST", "/api/v1/uploads/{upload_id}/complete"): "write",
    ("DELETE", "/api/v1/uploads/{upload_id}"): "write",
    ("PUT", "/api/v1/deployments/{namespace}/{name}"): "write",
    ("DELETE", "/api/v1/deployments/{namespace}/{name}"): "write",
    ("GET", "/api/v1/tokens"): "admin",
    ("POST", "/api/v1/tokens"): "admin",
    ("DELETE", "/api/v1/tokens/{token_id}"): "admin",
    ("GET", "/api/v1/audit"): "admin",
    ("POST", "/api/v1/admin/sweep"): "admin",
    ("GET", "/livez"): "public",
    ("GET", "/readyz"): "public",
    ("GET", "/metrics"): "public",
}
PARAMS = {
    "name": "x",
    "version": "v1",
    "upload_id": "0" * 32,
    "digest": "0" * 64,
    "number": "1",
    "namespace": "ns",
    "token_id": "999999",
}
BODIES = {
    ("PUT", "versions/{version}"): {"manifest": "name: x"},
    ("PATCH", "versions/{version}"): {"labels": {}},
    ("POST", "/api/v1/tokens"): {"scope": "read"},
    ("POST", "/complete"): {"digest": "sha256:" + "0" * 64},
    ("PUT", "{namespace}/{name}"): {"bento": "x:v1"},
}
ORDER = ["public", "read", "write", "admin"]


def _body(method: str, path: str) -> dict | None:
    for (m, suffix), body in BODIES.items():
        if m == method and path.endswith(suffix):
            return body
    return None


def test_every_route_checks_its_scope(local_registry) -> None:  # type: ignore[no-untyped-def]
    app = local_registry.app
    routes = {
        (method.upper(), path) for path, ops in app.openapi()["paths"].items() for method in ops
    }
    assert routes == set(NEEDS), "add new routes to the scope matrix"
    tokens = {
        None: None,
        "bad": "jbk_not-a-real-token-0000000000",
        "read": new_token(local_registry, "read"),
        "write": new_token(local_registry, "write"),
        "admin": ADMIN,
    }
    failures = []
    with httpx.Client(base_url=local_registry.url, timeout=30) as c:
        for (method, template), needed in sorted(NEEDS.items()):
            path = template.format(**PARAMS)
            for who, tok in tokens.items():
                headers = {"Authorization": f"Bearer {tok}"} if tok else {}
                kw = {}
                body = _body(method, template)
                if template.endswith("/parts/{number}"):
                    kw["content"] = b"x"
                elif body is not None:
                    kw["json"] = body
                r = c.request(method, path, headers=headers, **kw)
                if needed == "public":
                    ok = r.status_code < 400
                elif who in (None, "bad"):
                    ok = r.status_code == 401 and "Bearer" in r.headers.get("www-authenticate", "")
                elif ORDER.index(who) < ORDER.index(needed):
                    ok = r.status_code == 403
                else:
                    ok = r.status_code not in (401, 403) and r.status_code < 500
                if not ok:
                    failures.append(f"{method} {template} as {who}: {r.status_code} {r.text[:100]}")
    assert not failures, "\n".join(failures)
