"""Fixtures for the operator's end-to-end tests (see docs/operator.md, "Tests")."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Cluster, Operator, RealCluster, StubRegistry
from jubako.operator.config import OperatorSettings
from operator_manifests import load_crd


@pytest.fixture
def registry() -> Iterator[StubRegistry]:
    stub = StubRegistry()
    stub.bentos["mlp-torch"] = ["v1"]
    stub.bentos["mlp-onnx"] = ["v1"]
    yield stub
    stub.stop()


@pytest.fixture
def registry_url(registry: StubRegistry) -> str:
    """The registry the operator talks to. Switch this (and `registry`) to the real
    `jubako registry serve` once it exists; the tests only use the contract endpoints."""
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
def settings(registry_url: str) -> OperatorSettings:
    return OperatorSettings(
        registry_url=registry_url,
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
