"""A thin client for the registry's REST API (``/api/v1``).

Where it connects: ``url``/``token`` arguments, else ``JUBAKO_REGISTRY_URL`` /
``JUBAKO_TOKEN``, else what ``jubako registry login`` saved in ``$JUBAKO_HOME/registry.json``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx

from jubako import config
from jubako.errors import AlreadyExists, ConfigError, InvalidBundle, JubakoError, NotFound


class RegistryError(JubakoError):
    def __init__(self, message: str, status: int = 0, body: dict[str, Any] | None = None):
        super().__init__(message)
        self.status = status
        self.body = body or {}


class AuthError(RegistryError):
    pass


class ConflictError(RegistryError, AlreadyExists):
    pass


class RegistryNotFound(RegistryError, NotFound):
    pass


class RegistryInvalid(RegistryError, InvalidBundle):
    pass


def login_file() -> Path:
    return config.home() / "registry.json"


def save_login(url: str, token: str) -> Path:
    path = login_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"url": url.rstrip("/"), "token": token}, f)
    os.replace(tmp, path)
    return path


def saved_login() -> dict[str, str]:
    try:
        return json.loads(login_file().read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def raise_for(resp: httpx.Response) -> None:
    """Raise the RegistryError subclass for an unsuccessful response."""
    if resp.is_success:
        return
    try:
        body = resp.json()
        detail = body.get("detail") if isinstance(body, dict) else body
    except ValueError:
        body, detail = {}, resp.text[:200]
    if isinstance(detail, list):  # FastAPI validation errors
        detail = "; ".join(
            f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg')}" for d in detail
        )
    msg = f"registry: {detail or resp.reason_phrase} (HTTP {resp.status_code})"
    body = body if isinstance(body, dict) else {}
    cls: type[RegistryError] = RegistryError
    if resp.status_code in (401, 403):
        cls = AuthError
    elif resp.status_code == 404:
        cls = RegistryNotFound
    elif resp.status_code == 409:
        cls = ConflictError
    elif resp.status_code == 422:
        cls = RegistryInvalid
    raise cls(msg, resp.status_code, body)


class RegistryClient:
    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 300.0,
        transport: httpx.BaseTransport | None = None,
    ):
        saved = saved_login()
        self.url = (url or os.environ.get("JUBAKO_REGISTRY_URL") or saved.get("url") or "").rstrip(
            "/"
        )
        self.token = token or os.environ.get("JUBAKO_TOKEN") or saved.get("token") or ""
        if not self.url:
            raise ConfigError(
                "no registry configured: run `jubako registry login URL` or set JUBAKO_REGISTRY_URL"
            )
        headers = {"User-Agent": "jubako-client"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self.read_timeout = timeout
        self.custom_transport = transport is not None  # downloads then stay on httpx
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=16)
        t = httpx.Timeout(timeout, connect=15.0)
        self.http = httpx.Client(
            base_url=self.url, headers=headers, timeout=t, limits=limits, transport=transport
        )
        # Presigned URLs carry their own credentials: never send the token to S3.
        self.raw = httpx.Client(timeout=t, limits=limits, transport=transport)

    def close(self) -> None:
        self.http.close()
        self.raw.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            resp = self.http.request(method, path, **kw)
        except httpx.TransportError as e:
            raise RegistryError(f"registry {self.url} unreachable: {e}") from None
        raise_for(resp)
        return resp

    # --- versions -------------------------------------------------------------------

    def get_version(self, kind: str, name: str, version: str = "latest") -> dict[str, Any]:
        return self.request("GET", f"/api/v1/{kind}s/{name}/versions/{version}").json()

    def list_versions(
        self, kind: str, name: str | None = None, *, limit: int | None = None, **filters: Any
    ) -> Iterator[dict[str, Any]]:
        path = f"/api/v1/{kind}s/{name}/versions" if name else f"/api/v1/{kind}s"
        params = {k: v for k, v in filters.items() if v not in (None, "")}
        seen = 0
        while True:
            page = self.request("GET", path, params={**params, "limit": 200}).json()
            for item in page["items"]:
                if limit is not None and seen >= limit:
                    return
                seen += 1
                yield item
            if not page.get("next_cursor"):
                return
            params["cursor"] = page["next_cursor"]

    def push_version(
        self,
        kind: str,
        name: str,
        version: str,
        manifest: str,
        *,
        labels: dict[str, str] | None = None,
        force: bool = False,
    ) -> dict[str, Any]:
        body = {"manifest": manifest, "labels": labels or {}, "force": force}
        return self.request("PUT", f"/api/v1/{kind}s/{name}/versions/{version}", json=body).json()

    def download_info(self, kind: str, name: str, version: str) -> dict[str, Any]:
        return self.request("GET", f"/api/v1/{kind}s/{name}/versions/{version}/download").json()

    def delete_version(self, kind: str, name: str, version: str, *, force: bool = False) -> None:
        self.request(
            "DELETE", f"/api/v1/{kind}s/{name}/versions/{version}", params={"force": force}
        )

    def update_labels(
        self, kind: str, name: str, version: str, labels: dict[str, str | None]
    ) -> dict[str, Any]:
        return self.request(
            "PATCH", f"/api/v1/{kind}s/{name}/versions/{version}", json={"labels": labels}
        ).json()

    # --- uploads --------------------------------------------------------------------

    def get_upload(self, upload_id: str) -> dict[str, Any]:
        return self.request("GET", f"/api/v1/uploads/{upload_id}").json()

    def put_part(
        self, upload_id: str, digest: str, number: int, body: Iterable[bytes], size: int
    ) -> None:
        self.request(
            "PUT",
            f"/api/v1/uploads/{upload_id}/blobs/{digest}/parts/{number}",
            content=body,
            headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"},
        )

    def put_presigned(self, url: str, body: Iterable[bytes], size: int) -> None:
        try:
            resp = self.raw.put(url, content=body, headers={"Content-Length": str(size)})
        except httpx.TransportError as e:
            raise RegistryError(f"upload to storage failed: {e}") from None
        if not resp.is_success:
            raise RegistryError(
                f"storage refused a part: HTTP {resp.status_code} {resp.text[:200]}",
                resp.status_code,
            )

    def complete_blob(self, upload_id: str, digest: str) -> None:
        self.request("POST", f"/api/v1/uploads/{upload_id}/blobs/{digest}/complete")

    def complete(self, upload_id: str, digest: str) -> dict[str, Any]:
        return self.request(
            "POST", f"/api/v1/uploads/{upload_id}/complete", json={"digest": digest}
        ).json()

    def abort(self, upload_id: str) -> None:
        self.request("DELETE", f"/api/v1/uploads/{upload_id}")

    # --- downloads ------------------------------------------------------------------

    def stream(self, url: str, start: int = 0) -> httpx.Response:
        """An open streamed GET of a blob URL (absolute presigned, or a registry path)."""
        headers = {"Range": f"bytes={start}-"} if start else {}
        client = self.raw if url.startswith(("http://", "https://")) else self.http
        try:
            req = client.build_request("GET", url, headers=headers)
            resp = client.send(req, stream=True)
        except httpx.TransportError as e:
            raise RegistryError(f"download failed: {e}") from None
        if not resp.is_success:
            resp.read()
            resp.close()
            raise_for(resp)
        return resp

    # --- deployments (operator) and tokens ------------------------------------------

    def report_deployment(
        self, namespace: str, name: str, bento: str, cluster: str = "", status: dict | None = None
    ) -> dict[str, Any]:
        body = {"bento": bento, "cluster": cluster, "status": status or {}}
        return self.request("PUT", f"/api/v1/deployments/{namespace}/{name}", json=body).json()

    def clear_deployment(self, namespace: str, name: str) -> None:
        self.request("DELETE", f"/api/v1/deployments/{namespace}/{name}")

    def whoami(self) -> dict[str, Any]:
        return self.request("GET", "/api/v1/tokens/self").json()

    def list_tokens(self) -> list[dict[str, Any]]:
        return self.request("GET", "/api/v1/tokens").json()

    def revoke_token(self, token_id: int) -> None:
        self.request("DELETE", f"/api/v1/tokens/{token_id}")
