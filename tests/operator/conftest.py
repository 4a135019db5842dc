"""Fixtures for the operator's end-to-end tests (see docs/operator.md, "Tests")."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Cluster, Operator, RealCluster, RealRegistry
from jubako.operator.config import OperatorSettings
from operator_manifests import load_crd


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RealRegistry]:
    """The real registry on its embedded default, holding mlp-torch:v1 and mlp-onnx:v1."""
    real = RealRegistry(tmp_path / "registry")
    real.publish("mlp-torch", "v1")
    real.publish("mlp-onnx", "v1")
    yield real
    real.stop()


@pytest.fixture
def registry_url(registry: RealRegistry) -> str:
    return registry.url


@pytest.fixture
def cluster(tmp_path) -> Iterator[Cluster]:
    real = os.environ.get("JUBAKO_E2E_KUBECONFIG")
    if real:  # `make e2e-cluster`: a real cluster with the CRD installed (e2e_cluster.sh)
        c = RealCluster(Path(real))
        yield c
        c.close()
        return
    c = Cluster(tmp_path)
    c.install_crd(load_crd())
    yield c
    c.close()


@pytest.fixture
def settings(registry: RealRegistry) -> OperatorSettings:
    return OperatorSettings(
        registry_url=registry.url,
        registry_token=registry.token,
        registry_timeout_s=1.0,
        namespaces=["default"],
        resync_interval_s=0.5,
        standalone=True,
        priority=1,
    )


@pytest.fixture
def operator(cluster: Cluster, settings: OperatorSettings) -> Iterator[Operator]:
    op = Operator(cluster, settings)
    yield op
    op.stop()
