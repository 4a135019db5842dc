"""A thin, synchronous Kubernetes adapter for the kinds the operator manages.

Built on the official client's ApiClient (kubeconfig, in-cluster config, auth plugins) but
speaking plain dicts, because the operator renders plain dicts. kopf runs our sync handlers
in worker threads, so blocking calls are fine here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from .spec import GROUP, KIND, PLURAL, VERSION

# (apiVersion, kind) -> plural; everything the operator reads or writes.
PLURALS: dict[tuple[str, str], str] = {
    ("apps/v1", "Deployment"): "deployments",
    ("v1", "Service"): "services",
    ("v1", "ConfigMap"): "configmaps",
    ("v1", "Pod"): "pods",
    ("v1", "Event"): "events",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "horizontalpodautoscalers",
    ("policy/v1", "PodDisruptionBudget"): "poddisruptionbudgets",
    ("networking.k8s.io/v1", "Ingress"): "ingresses",
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): "httproutes",  # only where the cluster serves it
    (f"{GROUP}/{VERSION}", KIND): PLURAL,
}
CHILD_KINDS = [
    ("apps/v1", "Deployment"),
    ("v1", "Service"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("policy/v1", "PodDisruptionBudget"),
    ("networking.k8s.io/v1", "Ingress"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
    ("v1", "ConfigMap"),  # the runtime config file (spec.config)
]
# Child kinds a cluster may not serve (CRDs): listed and watched only where it does.
OPTIONAL_APIS = {"gateway.networking.k8s.io/v1"}
MERGE_PATCH = "application/merge-patch+json"


class KubeError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


def _path(api_version: str, kind: str, namespace: str | None, name: str | None = None) -> str:
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    scope = f"{prefix}/namespaces/{namespace}" if namespace is not None else prefix
    path = f"{scope}/{PLURALS[(api_version, kind)]}"
    return f"{path}/{name}" if name else path


def make_api_client(config_file: str | None = None, context: str | None = None) -> client.ApiClient:
    """In-cluster config when running in a pod, else the given (or default) kubeconfig."""
    configuration = client.Configuration()
    if config_file is None:
        try:
            config.load_incluster_config(client_configuration=configuration)
            return client.ApiClient(configuration)
        except config.ConfigException:
            pass
    config.load_kube_config(
        config_file=config_file, context=context, client_configuration=configuration
    )
    return client.ApiClient(configuration)


class Kube:
    def __init__(self, api_client: client.ApiClient, timeout_s: float = 10.0) -> None:
        self._api = api_client
        self._timeout = timeout_s
        # Told the verb of every request (metrics); set by whoever owns the counters.
        self.on_request: Callable[[str], None] | None = None
        self._served: set[str] = set()  # API group versions found served (never un-installed)

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        if self.on_request is not None:
            self.on_request(method)
        try:
            response = self._api.call_api(
                path, method, query_params=query or [], body=body,
                header_params={"Content-Type": content_type, "Accept": "application/json"},
                auth_settings=["BearerToken"], _preload_content=False,
                _return_http_data_only=True, _request_timeout=self._timeout,
            )
        except ApiException as exc:
            try:
                message = json.loads(exc.body or "{}").get("message") or exc.reason
            except ValueError:
                message = exc.reason
            raise KubeError(exc.status, str(message)) from None
        return json.loads(response.data or b"{}")

    def served(self, api_version: str) -> bool:
        """Whether the server serves an API group version (discovery; a yes is remembered)."""
        if api_version not in self._served:
            try:
                self._call("GET", f"/apis/{api_version}")
            except KubeError as exc:
                if exc.status == 404:
                    return False
                raise
            self._served.add(api_version)
        return True

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._call("GET", _path(api_version, kind, namespace, name))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def list(
        self, api_version: str, kind: str, namespace: str, labels: dict[str, str]
    ) -> list[dict[str, Any]]:
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        body = self._call(
            "GET", _path(api_version, kind, namespace), query=[("labelSelector", selector)]
        )
        # Filter again on our side: cheap, and correct whatever the server did with the selector.
        return [
            item for item in body.get("items", [])
            if all(item.get("metadata", {}).get("labels", {}).get(k) == v for k, v in labels.items())
        ]

    def list_selected(
        self, api_version: str, kind: str, namespace: str | None, selector: str
    ) -> list[dict[str, Any]]:
        """Every object matching a label selector (e.g. `key` for "has the label"), in one
        namespace or, with None, in all of them."""
        body = self._call("GET", _path(api_version, kind, namespace), query=[("labelSelector", selector)])
        return list(body.get("items", []))

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        meta = manifest["metadata"]
        return self._call(
            "POST", _path(manifest["apiVersion"], manifest["kind"], meta["namespace"]), manifest
        )

    def patch(
        self, api_version: str, kind: str, namespace: str, name: str, patch: dict[str, Any],
        subresource: str | None = None,
    ) -> dict[str, Any]:
        path = _path(api_version, kind, namespace, name)
        if subresource:
            path = f"{path}/{subresource}"
        return self._call("PATCH", path, patch, content_type=MERGE_PATCH)

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        try:
            self._call(
                "DELETE", _path(api_version, kind, namespace, name),
                {"propagationPolicy": "Background"},
            )
        except KubeError as exc:
            if exc.status != 404:
                raise
