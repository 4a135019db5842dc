"""The whole platform on one machine, as a cluster would run it.

A bento is built and pushed to a real registry; the operator renders the example
BentoDeployment; then the containers it renders run here, with the exact args and env
the operator wrote (only /bento, ports and Service host names are mapped onto this
machine): the init container pulls the bento, a worker loads it, the proxy serves it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from jubako.operator.config import OperatorSettings
from jubako.operator.render import Owner, render
from jubako.operator.spec import parse_spec

from jubako.client.push import push
from jubako.client.registry import RegistryClient
from jubako.store import Store
from jubako.tags import Tag

ROOT = Path(__file__).resolve().parents[2]
JUBAKO = str(Path(sys.executable).with_name("jubako"))
sys.path.insert(0, str(ROOT / "tests" / "operator"))
from harness import RealRegistry, _free_port, wait_for  # noqa: E402


@pytest.fixture
def registry(tmp_path: Path, example_store: Store) -> Iterator[RealRegistry]:
    real = RealRegistry(tmp_path / "registry")
    with RegistryClient(real.url, real.token) as client:
        push(client, "mlp-onnx", store=example_store)  # as CI does
    yield real
    real.stop()


def container_command(container: dict, bento: Path, replace: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """The container's `jubako` invocation (or its command) and env, mapped onto this machine."""
    def mapped(value: str) -> str:
        value = value.replace("/bento", str(bento)).replace("/deps", str(bento.parent / "deps"))
        for old, new in replace.items():
            value = value.replace(old, new)
        return value

    env = {**os.environ, "HOME": str(bento.parent / "home"), "JUBAKO_HOME": str(bento.parent / "home")}
    for item in container.get("env", []):
        env[item["name"]] = mapped(item["value"]) if "value" in item else env.get(item["name"], "")
    command = [mapped(c) for c in container["command"]] if "command" in container else [JUBAKO]
    return [*command, *(mapped(a) for a in container["args"])], env


def pod(children: list[dict], name: str) -> dict:
    (deployment,) = [c for c in children if c["kind"] == "Deployment" and c["metadata"]["name"] == name]
    return deployment["spec"]["template"]["spec"]


def test_rendered_pods_pull_and_serve_the_pushed_bento(tmp_path: Path, registry: RealRegistry, example_store: Store) -> None:
    cr = yaml.safe_load((ROOT / "examples" / "deployments" / "mlp-onnx.yaml").read_text())
    spec = parse_spec(cr["metadata"]["name"], cr["spec"])
    resolved = RegistryClient(registry.url, registry.token).get_version("bento", "mlp-onnx", "latest")
    tag = Tag("mlp-onnx", resolved["version"])
    settings = OperatorSettings(registry_url=registry.url, standalone=True, priority=1)
    children = render(Owner("mlp-onnx", "default", "uid-1"), spec, tag, settings)

    worker_port, worker_http, proxy_port = _free_port(), _free_port(), _free_port()
    replace = {"mlp-onnx-worker-cpu:7000": f"127.0.0.1:{worker_port}"}
    procs: list[subprocess.Popen] = []
    try:
        for name in ("mlp-onnx-worker-cpu", "mlp-onnx-proxy"):
            spec_ = pod(children, name)
            bento = tmp_path / name / "bento"
            bento.parent.mkdir()
            for init in spec_["initContainers"]:  # pull-bento, then (workers) install-requirements
                args, env = container_command(init, bento, replace)
                env["JUBAKO_TOKEN"] = registry.token  # the Secret the pods read
                subprocess.run(args, env=env, check=True, capture_output=True)
            assert (bento / "bento.yaml").is_file() and (bento / "models").is_dir()
            (main,) = spec_["containers"]
            args, env = container_command(main, bento, replace)
            ports = {"7000": str(worker_port), "7001": str(worker_http), "3000": str(proxy_port)}
            args = [ports.get(a, a) for a in args]
            env.update({k: ports.get(v, v) for k, v in env.items() if k.startswith("JUBAKO_") and v in ports})
            procs.append(subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

        def ready() -> bool:
            assert all(p.poll() is None for p in procs), "a container exited"
            try:
                return httpx.get(f"http://127.0.0.1:{proxy_port}/readyz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_for("the proxy to be ready", ready, timeout=60)
        x = np.random.default_rng(1).standard_normal((3, 16)).astype(np.float32)
        resp = httpx.post(f"http://127.0.0.1:{proxy_port}/predict", json=x.tolist(), timeout=10)
        assert resp.status_code == 200, resp.text
        import onnxruntime as ort

        model = example_store.models.get(resolved["manifest"]["models"][0]["tag"])
        expected = ort.InferenceSession(str(model.path / "model.onnx")).run(None, {"x": x})[0]
        np.testing.assert_allclose(np.asarray(resp.json(), np.float32), expected, rtol=1e-5, atol=1e-6)
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            p.wait(30)
