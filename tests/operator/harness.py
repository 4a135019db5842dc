"""Real things on 127.0.0.1 for the end-to-end tests: the KMock emulator (with kmock_ext),
a stub registry speaking the two contract endpoints, and the real kopf operator in a thread.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import kmock
import kopf
import yaml
from jubako.operator.config import OperatorSettings
from jubako.operator.kube import Kube, make_api_client
from jubako.operator.reconcile import Context
from jubako.operator.run import run
from kmock_ext import Emulator

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


class Cluster:
    """The emulator served over HTTP from its own thread and event loop."""

    def __init__(self, tmp: Path) -> None:
        self.emulator = Emulator()
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


class StubRegistry:
    """The registry API the operator uses (docs/contracts.md), in memory. Can go down."""

    def __init__(self) -> None:
        self.bentos: dict[str, list[str]] = {}  # name -> ready versions, oldest first
        self.deployments: dict[str, dict[str, Any]] = {}
        self.port = _free_port()
        self._server: ThreadingHTTPServer | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _handler(registry: StubRegistry) -> type[BaseHTTPRequestHandler]:
    bento = re.compile(r"^/api/v1/bentos/([^/]+)/versions/([^/]+)$")
    deployment = re.compile(r"^/api/v1/deployments/([^/]+)/([^/]+)$")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _reply(self, code: int, body: Any = None) -> None:
            data = json.dumps(body or {}).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            match = bento.match(self.path)
            versions = registry.bentos.get(match.group(1), []) if match else []
            if not match or not versions:
                return self._reply(404, {"detail": "not found"})
            version = versions[-1] if match.group(2) == "latest" else match.group(2)
            if version not in versions:
                return self._reply(404, {"detail": "not found"})
            self._reply(200, {"name": match.group(1), "version": version, "state": "ready",
                              "digest": f"sha256:{version}", "manifest": {}})

        def do_PUT(self) -> None:
            match = deployment.match(self.path)
            length = int(self.headers.get("Content-Length", 0))
            if not match:
                return self._reply(404)
            registry.deployments["/".join(match.groups())] = json.loads(self.rfile.read(length))
            self._reply(200)

        def do_DELETE(self) -> None:
            match = deployment.match(self.path)
            if not match or registry.deployments.pop("/".join(match.groups()), None) is None:
                return self._reply(404)
            self._reply(204)

    return Handler


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

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        assert not self._thread.is_alive(), "the operator did not stop"
        assert not self.errors, self.errors
