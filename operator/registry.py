"""The registry as the operator sees it: tag resolution and usage reports (docs/contracts.md).

Both calls have short timeouts. Resolution failures are classified so status can say what to
do (bento not found vs registry unreachable); usage reports are best effort and never raise.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx

from jubako.tags import Tag

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resolved:
    tag: Tag  # always a concrete version
    digest: str


class ResolveError(Exception):
    """Carries the status reason: BentoNotFound, BentoNotReady or RegistryUnreachable."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class RegistryClient:
    def __init__(self, url: str, token: str = "", timeout_s: float = 3.0) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=f"{self.url}/api/v1", headers=headers, timeout=timeout_s
        )

    def close(self) -> None:
        self._http.close()

    def resolve(self, tag: Tag) -> Resolved:
        try:
            response = self._http.get(f"/bentos/{tag.name}/versions/{tag.version}")
        except httpx.HTTPError as exc:
            raise ResolveError("RegistryUnreachable", f"registry {self.url} unreachable: {exc}") from None
        if response.status_code == 404:
            raise ResolveError("BentoNotFound", f"bento {tag} not found in registry {self.url}")
        if response.status_code in (401, 403):
            raise ResolveError(
                "RegistryUnauthorized",
                f"registry {self.url} refused the operator's token ({response.status_code});"
                " check JUBAKO_OPERATOR_REGISTRY_TOKEN",
            )
        if response.status_code >= 400:
            raise ResolveError(
                "RegistryUnreachable", f"registry {self.url} answered {response.status_code}"
            )
        body: dict[str, Any] = response.json()
        if body.get("state", "ready") != "ready":
            raise ResolveError(
                "BentoNotReady", f"bento {tag} is {body.get('state')!r} in the registry, not ready"
            )
        return Resolved(Tag(body["name"], body["version"]), str(body.get("digest", "")))

    def report(self, namespace: str, name: str, payload: dict[str, Any]) -> bool:
        """PUT the deployment's usage; False (logged) when the registry did not take it."""
        return self._send("PUT", f"/deployments/{namespace}/{name}", payload)

    def clear(self, namespace: str, name: str) -> bool:
        return self._send("DELETE", f"/deployments/{namespace}/{name}", None)

    def _send(self, method: str, path: str, payload: dict[str, Any] | None) -> bool:
        try:
            response = self._http.request(method, path, json=payload)
        except httpx.HTTPError as exc:
            log.warning("usage report %s %s failed: %s", method, path, exc)
            return False
        if response.status_code >= 400 and not (method == "DELETE" and response.status_code == 404):
            log.warning("usage report %s %s answered %s", method, path, response.status_code)
            return False
        return True
