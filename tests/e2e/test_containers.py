"""The platform in containers only: the images built for real, run as a cluster runs them.

PostgreSQL on the host and moto's S3 server stand for the cloud services. The registry image
migrates its database (the chart's migration Job: `registry migrate`) and serves; a bento is
pushed from the host with `jubako push`. Then the runtime image runs the pods the operator
renders for a BentoDeployment: every init container and main container with exactly the
command, args, env, volume mounts and security context of the rendered objects (the pod
runner below maps each field onto `docker run`, and refuses fields it does not know), as
non-root with a read-only root filesystem. The proxy answers requests, checked against the
model run on the host. Last, `jubako containerize` bakes a bento that needs a package the
runtime image lacks into its own image, which serves it.

Containers share the host's network (the engine has no bridge on these machines), so a pod's
Service names resolve to 127.0.0.1 and the rendered ports (3000, 7000, 7001) must be free.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg2
import pytest
from jubako.operator.config import OperatorSettings
from jubako.operator.render import Owner, render
from jubako.operator.spec import parse_spec

from jubako.store import Store
from jubako.tags import Tag
from jubako.workers.spawn import free_port
from tests.images.containers import CHART_SECURITY, Docker

ROOT = Path(__file__).resolve().parents[2]
JUBAKO = str(Path(sys.executable).with_name("jubako"))
PG_DSN = os.environ.get("JUBAKO_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
TOKEN = "jbk_e2e-containers-admin-token-0123"

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(3000)]


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
            return True
        except OSError:
            return False


def wait_for(what: str, check: Callable[[], bool], timeout: float, alive: Callable[[], str | None]) -> None:
    """Poll `check` until true; fail with the container's logs when `alive` says it died."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except httpx.TransportError:
            pass
        dead = alive()
        assert dead is None, f"{what}: {dead}"
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.5)


def running(docker: Docker, name: str) -> Callable[[], str | None]:
    def check() -> str | None:
        state = docker("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name, check=False).stdout.strip()
        return None if state.startswith("running") else f"container {name} is {state}:\n{docker.logs(name)}"
    return check


# --- services on the host -------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    name = f"jubako_e2e_{secrets.token_hex(5)}"
    conn = psycopg2.connect(PG_DSN)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    yield f"postgresql+psycopg2://{PG_DSN.split('://', 1)[1].rsplit('/', 1)[0]}/{name}"
    conn = psycopg2.connect(PG_DSN)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@dataclass
class Registry:
    url: str
    token: str


@pytest.fixture(scope="module")
def registry(dockerd: Docker, built_images: dict[str, str], pg_database: str, s3_endpoint: str) -> Iterator[Registry]:
    """The registry image on PostgreSQL + S3, migrated by its own entrypoint, as the chart runs it."""
    port = free_port()
    name = f"e2e-registry-{port}"
    env = {
        "HOME": "/tmp",
        "JUBAKO_REGISTRY_DATABASE_URL": pg_database,
        "JUBAKO_REGISTRY_STORAGE": "s3",
        "JUBAKO_REGISTRY_S3_BUCKET": f"e2e-{secrets.token_hex(4)}",
        "JUBAKO_REGISTRY_S3_ENDPOINT_URL": s3_endpoint,
        "JUBAKO_REGISTRY_S3_CREATE_BUCKET": "true",
        "JUBAKO_REGISTRY_S3_ACCESS_KEY_ID": "testing",
        "JUBAKO_REGISTRY_S3_SECRET_ACCESS_KEY": "testing",
        "JUBAKO_REGISTRY_BOOTSTRAP_TOKEN": TOKEN,
        "JUBAKO_REGISTRY_SWEEP_INTERVAL_S": "0",
    }
    common = ["--network", "host", *CHART_SECURITY, "--tmpfs", "/tmp", "--tmpfs", "/data",
              *(a for k, v in env.items() for a in ("-e", f"{k}={v}"))]
    # The chart's migration Job runs these args on the registry image's entrypoint.
    migrate = dockerd("run", "--rm", *common, built_images["registry"], "registry", "migrate", check=False, timeout=300)
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    dockerd("run", "-d", "--name", name, *common, built_images["registry"],
            "registry", "serve", "--host", "127.0.0.1", "--port", str(port))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for("the registry image to serve", lambda: httpx.get(f"{url}/readyz", timeout=2).status_code == 200,
                 120, running(dockerd, name))
        yield Registry(url, TOKEN)
    finally:
        dockerd.remove(name)


def push(store_home: Path, registry: Registry, tag: str) -> None:
    """`jubako push` from the host, as CI does."""
    env = {**os.environ, "JUBAKO_HOME": str(store_home), "JUBAKO_REGISTRY_URL": registry.url,
           "JUBAKO_TOKEN": registry.token}
    out = subprocess.run([JUBAKO, "push", tag], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


# --- the pod runner: a rendered pod spec onto `docker run` ------------------------------------

# What the runner maps; anything else in a rendered container or pod fails the test, so that a
# field added to the operator's rendering is either honoured here or seen to be ignored.
CONTAINER_FIELDS = {"name", "image", "imagePullPolicy", "command", "args", "env", "volumeMounts",
                    "securityContext", "resources", "ports", "livenessProbe", "readinessProbe",
                    "startupProbe", "terminationMessagePolicy"}
IGNORED = {"imagePullPolicy", "resources", "livenessProbe", "startupProbe", "terminationMessagePolicy"}


@dataclass
class Pod:
    name: str
    spec: dict[str, Any]
    volumes: dict[str, Path]


def docker_run_args(container: dict[str, Any], pod: Pod, secret_values: dict[tuple[str, str], str],
                    hosts: list[str]) -> list[str]:
    """`docker run` options and image/args that do what the kubelet does with `container`."""
    unknown = set(container) - CONTAINER_FIELDS
    assert not unknown, f"the pod runner does not map {sorted(unknown)} of container {container['name']}"
    psc = pod.spec.get("securityContext", {})
    csc = container.get("securityContext", {})
    uid = csc.get("runAsUser", psc.get("runAsUser"))
    gid = csc.get("runAsGroup", psc.get("runAsGroup", 0))
    assert psc.get("runAsNonRoot") or csc.get("runAsNonRoot"), "pods must refuse root"
    assert uid not in (None, 0), "runAsNonRoot needs a non-zero runAsUser (the image's is not numeric-checked here)"
    args = ["--network", "host", "--user", f"{uid}:{gid}"]
    if "fsGroup" in psc:
        args += ["--group-add", str(psc["fsGroup"])]
    if csc.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    for cap in csc.get("capabilities", {}).get("drop", []):
        args += ["--cap-drop", cap]
    if csc.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    for host in hosts:  # the Services the pod dials, on this machine's one network
        args += ["--add-host", f"{host}:127.0.0.1"]
    for mount in container.get("volumeMounts", []):
        ro = ":ro" if mount.get("readOnly") else ""
        args += ["-v", f"{pod.volumes[mount['name']]}:{mount['mountPath']}{ro}"]
    for item in container.get("env", []):
        if "value" in item:
            args += ["-e", f"{item['name']}={item['value']}"]
            continue
        ref = item["valueFrom"]["secretKeyRef"]
        value = secret_values.get((ref["name"], ref["key"]))
        assert value is not None or ref.get("optional"), f"secret {ref} is missing"
        if value is not None:
            args += ["-e", f"{item['name']}={value}"]
    # The kubelet mounts a file at terminationMessagePath; its content is the failure's reason.
    log = pod.volumes["__termination__"] / container["name"]
    log.touch()
    log.chmod(0o666)
    args += ["-v", f"{log}:{container.get('terminationMessagePath', '/dev/termination-log')}"]
    command = container.get("command", [])
    if command:
        args += ["--entrypoint", command[0]]
    return [*args, container["image"], *command[1:], *container.get("args", [])]


def make_pod(name: str, spec: dict[str, Any], tmp: Path) -> Pod:
    volumes = {}
    for volume in spec["volumes"]:
        assert set(volume) == {"name", "emptyDir"}, f"the pod runner maps emptyDir volumes only: {volume}"
        path = tmp / name / volume["name"]
        path.mkdir(parents=True)
        # An emptyDir with fsGroup: group-owned by it, group-writable, setgid.
        gid = spec.get("securityContext", {}).get("fsGroup", 0)
        os.chown(path, 0, gid)
        path.chmod(0o2775)
        volumes[volume["name"]] = path
    volumes["__termination__"] = tmp / name / "termination"
    volumes["__termination__"].mkdir()
    return Pod(name, spec, volumes)


def http_port(container: dict[str, Any], probe: dict[str, Any]) -> int:
    port = probe["httpGet"]["port"]
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    return int(number)


@dataclass
class PodRunner:
    docker: Docker
    secret_values: dict[tuple[str, str], str]
    hosts: list[str]
    started: list[str]

    def run(self, pod: Pod) -> str:
        """Init containers in order (each must exit 0), then the main container; its name."""
        unknown = set(pod.spec) - {"initContainers", "containers", "volumes", "securityContext", "enableServiceLinks"}
        assert not unknown, f"the pod runner does not map {sorted(unknown)} of pod {pod.name}"
        for init in pod.spec.get("initContainers", []):
            out = self.docker("run", "--rm", *docker_run_args(init, pod, self.secret_values, self.hosts),
                              check=False, timeout=600)
            message = (pod.volumes["__termination__"] / init["name"]).read_text()
            assert out.returncode == 0, (f"{pod.name}/{init['name']} exited {out.returncode}: {message}\n"
                                         f"{out.stdout[-3000:]}{out.stderr[-3000:]}")
        (main,) = pod.spec["containers"]
        name = f"e2e-{pod.name}-{secrets.token_hex(3)}"
        self.docker("run", "-d", "--name", name, *docker_run_args(main, pod, self.secret_values, self.hosts))
        self.started.append(name)
        probe = main["readinessProbe"]
        url = f"http://127.0.0.1:{http_port(main, probe)}{probe['httpGet']['path']}"
        wait_for(f"{pod.name} to be ready", lambda: httpx.get(url, timeout=2).status_code == 200, 300,
                 running(self.docker, name))
        return name


@pytest.fixture
def pod_runner(dockerd: Docker) -> Iterator[Callable[[dict[str, str], list[str]], PodRunner]]:
    runners: list[PodRunner] = []

    def make(secret_values: dict[str, str], hosts: list[str]) -> PodRunner:
        runner = PodRunner(dockerd, {tuple(k.split("/", 1)): v for k, v in secret_values.items()}, hosts, [])  # type: ignore[misc]
        runners.append(runner)
        return runner

    yield make
    for runner in runners:
        dockerd.remove(*runner.started)


def rendered_pods(tag: str, registry: Registry | None, runtime_image: str, tmp: Path,
                  image: str | None = None) -> tuple[list[Pod], list[str], str]:
    """The operator's pods for a one-worker BentoDeployment of `tag` (worker first), the Service
    hosts the proxy dials, and the Secret the pods read the registry token from."""
    settings = OperatorSettings(registry_url=registry.url if registry else "http://127.0.0.1:1",
                                runtime_image=runtime_image, standalone=True, priority=1)
    spec = parse_spec("e2e", {"bento": tag, "workers": [{"name": "cpu"}], **({"image": image} if image else {})})
    children = render(Owner("e2e", "default", "uid-e2e"), spec, Tag.parse(tag), settings)
    deployments = [c for c in children if c["kind"] == "Deployment"]
    pods = sorted((make_pod(d["metadata"]["name"], d["spec"]["template"]["spec"], tmp) for d in deployments),
                  key=lambda p: p.spec["containers"][0]["name"] != "worker")
    (proxy,) = [p.spec["containers"][0] for p in pods if p.spec["containers"][0]["name"] == "proxy"]
    workers = dict((e["name"], e["value"]) for e in proxy["env"])["JUBAKO_WORKERS"]
    hosts = [w.rsplit(":", 1)[0] for w in workers.split(",")]
    secret = f"{settings.token_secret_name}/{settings.token_secret_key}"
    return pods, hosts, secret


@pytest.fixture
def pod_ports() -> None:
    from jubako.operator.render import PROXY_PORT, WORKER_HTTP_PORT, WORKER_PORT

    busy = [p for p in (PROXY_PORT, WORKER_PORT, WORKER_HTTP_PORT) if not port_free(p)]
    assert not busy, f"ports {busy} are in use on this machine: the rendered pods listen on them (host network)"


# --- the tests --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slugger(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The slugger example (python-slugify, which the runtime image lacks) built with its wheels:
    no container reaches a package index. (home, tag)"""
    home = tmp_path_factory.mktemp("slugger-home")
    built = subprocess.run([JUBAKO, "build", str(ROOT / "examples" / "slugger"), "--wheels", "--json"],
                           env={**os.environ, "JUBAKO_HOME": str(home)}, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    return home, json.loads(built.stdout)["tag"]


def check_mlp_onnx(store: Store, tag: str) -> None:
    x = np.random.default_rng(7).standard_normal((5, 16)).astype(np.float32)
    resp = httpx.post("http://127.0.0.1:3000/predict", json=x.tolist(), timeout=30)
    assert resp.status_code == 200, resp.text
    import onnxruntime as ort

    model = store.models.get(store.bentos.get(tag).manifest.models[0].tag)
    expected = ort.InferenceSession(str(model.path / "model.onnx")).run(None, {"x": x})[0]
    np.testing.assert_allclose(np.asarray(resp.json(), np.float32), expected, rtol=1e-5, atol=1e-6)
    bad = httpx.post("http://127.0.0.1:3000/predict", json=[[1.0, 2.0]], timeout=30)
    assert bad.status_code == 422, bad.text  # validated by the proxy, nothing reaches the worker


def check_slugger(port: int = 3000) -> None:
    resp = httpx.post(f"http://127.0.0.1:{port}/slug", json=["Héllo, Wörld!", "Jubako 0.1"], timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.json() == ["hello-world", "jubako-0-1"]


@pytest.mark.parametrize("bento", ["mlp-onnx", "slugger"])
def test_rendered_pods_serve_a_pushed_bento_from_the_runtime_image(
    bento: str, dockerd: Docker, built_images: dict[str, str], registry: Registry, example_store: Store,
    slugger: tuple[Path, str], tmp_path: Path, pod_runner: Callable[[dict[str, str], list[str]], PodRunner],
    pod_ports: None,
) -> None:
    """mlp-onnx: a model run by onnxruntime; slugger: a package the image lacks, installed by
    the worker pod's init container from the bento's wheels."""
    home, tag = (example_store.home, str(example_store.bentos.get("mlp-onnx").tag)) if bento == "mlp-onnx" else slugger
    push(home, registry, tag)
    pods, hosts, secret = rendered_pods(tag, registry, built_images["runtime"], tmp_path)
    runner = pod_runner({secret: registry.token}, hosts)
    for pod in pods:
        runner.run(pod)
    if bento == "mlp-onnx":
        check_mlp_onnx(example_store, tag)
    else:
        check_slugger()


def test_containerized_bento_serves_with_its_requirements(
    dockerd: Docker, built_images: dict[str, str], slugger: tuple[Path, str], tmp_path: Path,
    pod_runner: Callable[[dict[str, str], list[str]], PodRunner], pod_ports: None,
) -> None:
    """`docker run` of the image serves; so do the pods the operator renders with spec.image
    (no pull, no install: no registry and no index needed)."""
    home, tag = slugger
    env = {**dockerd.env, "JUBAKO_HOME": str(home)}
    name, version = tag.split(":")
    out = subprocess.run([JUBAKO, "containerize", tag, "--base-image", built_images["runtime"], "--network", "host", "--json"],
                         env=env, capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, out.stderr
    image = json.loads(out.stdout)["image"]
    assert image == f"{name}:{version}"  # tagged by the bento's version
    info = dockerd.inspect(image)
    assert info["Config"]["Labels"]["dev.jubako.bento"] == tag
    assert info["Config"]["User"] == "10001:10001"

    container = f"e2e-containerized-{secrets.token_hex(3)}"
    runner: PodRunner | None = None
    try:
        # Its default command: `jubako serve /bento` on port 3000 (proxy and a worker in one container).
        dockerd("run", "-d", "--name", container, "--network", "host", *CHART_SECURITY, "--tmpfs", "/tmp", image)
        wait_for("the containerized bento", lambda: httpx.get("http://127.0.0.1:3000/readyz", timeout=2).status_code == 200,
                 300, running(dockerd, container))
        check_slugger()
        dockerd.remove(container)

        pods, hosts, _ = rendered_pods(tag, None, built_images["runtime"], tmp_path, image=image)
        assert not any(p.spec.get("initContainers") for p in pods)
        runner = pod_runner({}, hosts)
        for pod in pods:
            runner.run(pod)
        check_slugger()
    finally:
        dockerd.remove(container)
        if runner is not None:  # before the image goes
            dockerd.remove(*runner.started)
        dockerd("image", "rm", "--force", image, check=False)
