"""Operator settings, from environment variables (the table lives in docs/operator.md)."""

from __future__ import annotations

import random

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="JUBAKO_OPERATOR_", extra="ignore")

    # The one image every pod runs; its entrypoint is `jubako` (docs/contracts.md).
    runtime_image: str = "ghcr.io/jubako/runtime:0.1.0"
    image_pull_policy: str = "IfNotPresent"
    # Default registry for tag resolution and for the pods' init container.
    registry_url: str = "http://jubako-registry.jubako-system.svc:8000"
    # The operator's own token for tag resolution and usage reports (never copied into pods).
    registry_token: str = ""
    # Default Secret (in the BentoDeployment's namespace) holding the pods' pull token.
    token_secret_name: str = "jubako-registry-token"
    token_secret_key: str = "token"
    registry_timeout_s: float = 3.0
    # Node label that carries the GPU model; `gpuType` becomes a node selector on it.
    gpu_label: str = "nvidia.com/gpu.product"
    # Taint key GPU nodes carry; GPU pods get a toleration for it.
    gpu_taint_key: str = "nvidia.com/gpu"
    # Name reported to the registry with every deployment.
    cluster_name: str = "default"
    # Namespaces to watch; empty means all namespaces.
    namespaces: list[str] = Field(default_factory=list)
    # Seconds between level-based resyncs of every BentoDeployment.
    resync_interval_s: float = 60.0
    # kopf peering: replicas sharing a peering name run one at a time (highest priority wins).
    peering_name: str = "jubako-operator"
    standalone: bool = False
    # Distinct per replica so that two replicas never tie (a tie freezes both in kopf).
    priority: int = Field(default_factory=lambda: random.randint(1, 1_000_000))
    # kopf's liveness endpoint, e.g. http://0.0.0.0:8080/healthz (the chart's probe); off when empty.
    liveness_endpoint: str = ""
    # Port of the proxy Service (the URL in status points at it).
    service_port: int = 80
    # Prometheus metrics (reconciles, durations, API calls, child writes); 0 turns them off.
    metrics_port: int = Field(default=0, ge=0, le=65535)


def load() -> OperatorSettings:
    return OperatorSettings()
