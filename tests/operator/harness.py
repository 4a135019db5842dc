"""Real things on 127.0.0.1 for the end-to-end tests: the KMock emulator (with kmock_ext),
the real registry on its embedded default, and the real kopf operator in a thread.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import kmock
import kopf
import yaml
from jubako.operator.config import OperatorSettings
from jubako.operator.kube import Kube, make_api_client
from jubako.operator.reconcile import Context
from jubako.operator.run import run
from kmock_ext import Emulator

from jubako.build import build
from jubako.client.push import push
from jubako.client.registry import RegistryClient
from jubako.store import Store

WRITES = {"POST", "PUT", "PATCH", "DELETE"}


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Poll until `check()` is truthy. The timeout only bounds a hang; nothing is timed."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def mark_ready(kube: Kube, namespace: str, name: str) -> None:
    """Write a Deployment's status as its controller would once every pod is ready (the
    emulator runs no controllers)."""
    dep = kube.get("apps/v1", "Deployment", namespace, name)
    assert dep is not None, name
    replicas = dep["spec"].get("replicas", 1)
    kube.patch("apps/v1", "Deployment", namespace, name, {"status": {
        "observedGeneration": dep["metadata"]["generation"], "replicas": replicas,
        "readyReplicas": replicas, "updatedReplicas": replicas, "availableReplicas": replicas,
    }}, subresource="status")


class Cluster:
    """The emulator served over HTTP from its own thread and event loop."""

    def __init__(self, tmp: Path, trim_log: bool = False) -> None:
        self.emulator = Emulator(trim_log=trim_log)
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)
        self._thread.start()
        self._ready.wait(10)
        self.kubeconfig = tmp / "kubeconfig"
        self.kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "kmock",
            "clusters": [{"name": "kmock", "cluster": {"server": self.url}}],
            "users": [{"name": "kmock", "user": {"token": "test"}}],
            "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "kmock",
                                                      "namespace": "default"}}],
        }))
        self.kube = Kube(make_api_client(str(self.kubeconfig)))
        # A real cluster always has these; kopf looks namespaces up before watching them.
        for namespace in ("default", "kube-system"):
            self.kube._call("POST", "/api/v1/namespaces", {
                "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with self.emulator, kmock.Server(self.emulator) as server:
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()

    def close(self) -> None:
        if self._loop and self._stop:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def requests(self) -> list[Any]:
        return list(self.emulator._requests)

    def objects(self, plural: str) -> list[dict[str, Any]]:
        """Live objects of a resource, read from the emulator's memory (no API request, so
        nothing a test reads shows up in the request counters)."""
        async def read() -> list[dict[str, Any]]:
            return [dict(obj.raw) for key, obj in self.emulator._objects.items()
                    if key[0].plural == plural and not obj.deleted]
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(read(), self._loop).result(10)

    def writes(self, since: int = 0, path: str = "") -> list[str]:
        """Write requests (method and path) received from request number `since` on."""
        return [
            f"{r.method.value} {r.url.path}" for r in self.requests()[since:]
            if r.method.value in WRITES and path in r.url.path
        ]

    def install_crd(self, crd: dict[str, Any]) -> None:
        self.kube._call("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)


class RealCluster(Cluster):
    """A real cluster for `make e2e-cluster`. Counting requests needs the emulator, so the
    two tests that count writes are deselected there (e2e_cluster.sh)."""

    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig
        self.kube = Kube(make_api_client(str(kubeconfig)))
        with open(kubeconfig) as f:
            config = yaml.safe_load(f)
        self.url = config["clusters"][0]["cluster"]["server"]

    def close(self) -> None:
        for item in self.kube.list("serving.jubako.dev/v1alpha1", "BentoDeployment", "default", {}):
            self.kube.delete("serving.jubako.dev/v1alpha1", "BentoDeployment", "default",
                             item["metadata"]["name"])

    def requests(self) -> list[Any]:
        raise NotImplementedError("request counting needs the emulator")


class RealRegistry:
    """The real registry (`jubako registry serve`, embedded default) in a subprocess, with an
    admin token; it can go down and come back. Bentos are published by pushing small real
    bentos from a local store, as CI would."""

    SERVICE = (
        "import jubako\n\n@jubako.service(name='svc')\nclass Svc:\n"
        "    @jubako.api\n    def echo(self, text: str) -> str:\n        return text\n"
    )

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = _free_port()
        self.token = "jbk_" + secrets.token_urlsafe(24)
        self.store = Store(tmp / "client-home")
        self._proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, "JUBAKO_HOME": str(self.tmp / "registry-home"),
               "JUBAKO_REGISTRY_BOOTSTRAP_TOKEN": self.token}
        jubako = str(Path(sys.executable).with_name("jubako"))
        self._proc = subprocess.Popen(
            [jubako, "registry", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for("the registry to start", self._ready)

    def _ready(self) -> bool:
        assert self._proc is not None and self._proc.poll() is None, "the registry exited"
        try:
            return httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(30)
            self._proc = None

    def publish(self, name: str, version: str) -> None:
        """Build a bento ``name:version`` and push it (it becomes the newest ``ready``)."""
        project = self.tmp / f"project-{name}-{version}"
        project.mkdir()
        (project / "service.py").write_text(self.SERVICE)
        (project / "jubako.yaml").write_text("service: service:Svc\n")
        build(project, name=name, version=version, store=self.store)
        with RegistryClient(self.url, self.token) as client:
            push(client, f"{name}:{version}", store=self.store)

    def digest(self, name: str, version: str) -> str:
        with RegistryClient(self.url, self.token) as client:
            return str(client.get_version("bento", name, version)["digest"])

    @property
    def deployments(self) -> dict[str, dict[str, Any]]:
        """What the operator reported, keyed ``namespace/name``."""
        resp = httpx.get(f"{self.url}/api/v1/deployments", timeout=5,
                         headers={"Authorization": f"Bearer {self.token}"})
        resp.raise_for_status()
        return {f"{d['namespace']}/{d['name']}": d for d in resp.json()}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Operator:
    """The real kopf operator (our handlers) in a thread, stoppable and restartable."""

    def __init__(self, cluster: Cluster, settings: OperatorSettings) -> None:
        self.cluster = cluster
        self.settings = settings
        self._stop = threading.Event()
        ready = threading.Event()
        ctx = Context(settings=settings, kube=Kube(make_api_client(str(cluster.kubeconfig))))
        self.errors: list[BaseException] = []

        def login(**_: Any) -> kopf.ConnectionInfo:
            return kopf.ConnectionInfo(server=cluster.url, token="test", insecure=True)

        def target() -> None:
            try:
                real = isinstance(cluster, RealCluster)  # real: kopf logs in from KUBECONFIG
                run(settings, ctx=ctx, stop_flag=self._stop, ready_flag=ready,
                    login=None if real else login)
            except BaseException as exc:  # surfaced by stop()
                self.errors.append(exc)

        self._thread = threading.Thread(target=target, daemon=True)
        self._thread.start()
        wait_for("the operator to start", lambda: ready.is_set() or self.errors)

    def stop(self, timeout: float = 30) -> None:
        self._stop.set()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the operator did not stop"
        assert not self.errors, self.errors
