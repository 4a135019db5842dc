"""Start the operator programmatically (`jubako operator run`, tests, embedding)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import kopf

from jubako import logs

from .config import OperatorSettings
from .handlers import build_registry
from .kube import Kube, make_api_client
from .reconcile import Context


def make_context(settings: OperatorSettings, config_file: str | None = None) -> Context:
    return Context(settings=settings, kube=Kube(make_api_client(config_file)))


def run(
    settings: OperatorSettings,
    *,
    ctx: Context | None = None,
    registry: kopf.OperatorRegistry | None = None,
    stop_flag: threading.Event | None = None,
    ready_flag: threading.Event | None = None,
    login: Any = None,
) -> None:
    """Run until stopped (stop_flag or a signal). Blocks; runs its own event loop."""
    ctx = ctx or make_context(settings)
    stop_metrics = ctx.metrics.serve(settings.metrics_port) if settings.metrics_port else None
    registry = registry or build_registry(ctx)
    # Our own registry does not carry kopf's default login handlers: add one explicitly.
    kopf.on.login(registry=registry)(login or kopf.login_via_client)
    namespaces = list(settings.namespaces)
    try:
        asyncio.run(kopf.operator(
            registry=registry,
            clusterwide=not namespaces,
            namespaces=namespaces,
            standalone=settings.standalone,
            priority=settings.priority,
            # Naming a peering makes it mandatory: with replicas, running unpeered would let
            # them fight, so kopf waits for the KopfPeering CRD (crds/kopf-peering.yaml).
            peering_name=None if settings.standalone else settings.peering_name,
            stop_flag=stop_flag,
            ready_flag=ready_flag,
            liveness_endpoint=settings.liveness_endpoint or None,
        ))
    finally:
        if stop_metrics is not None:
            stop_metrics()
        ctx.close()


def configure_logging(verbose: bool) -> None:
    logs.configure("DEBUG" if verbose else None)
