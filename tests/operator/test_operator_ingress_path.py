"""An Ingress with a path: the proxy must serve the APIs under that prefix, since the
Ingress forwards `/v1/predict` as is. The rendered proxy container (its exact arguments and
environment) is run as a real process, with a bento but no worker: an API under the prefix
is routed (503 "no worker"), the bare API path is not (404), and the rendered probes answer.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from harness import RealRegistry, _free_port
from jubako.operator.config import OperatorSettings
from jubako.operator.render import Owner, render, service_url
from jubako.operator.spec import parse_spec

from jubako.build import build
from jubako.store import Store
from jubako.tags import Tag

SETTINGS = OperatorSettings(priority=1)
OWNER = Owner("demo", "ml", "u")


def _proxy(spec: dict) -> dict:
    children = render(OWNER, parse_spec("demo", spec), Tag("svc", "v1"), SETTINGS)
    (proxy,) = [c for c in children if c["metadata"]["name"] == "demo-proxy"]
    return proxy["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize(("path", "root"), [("/v1", "/v1"), ("/team/a/", "/team/a"), ("/", None)])
def test_the_ingress_path_becomes_the_proxys_root_path(path, root):
    spec = {"bento": "svc", "ingress": {"host": "demo.example.com", "path": path}}
    env = {e["name"]: e.get("value") for e in _proxy(spec)["env"]}
    assert env.get("JUBAKO_ROOT_PATH") == root
    assert service_url(OWNER, parse_spec("demo", spec), SETTINGS) == f"http://demo.example.com{root or ''}"
    assert "JUBAKO_ROOT_PATH" not in {e["name"] for e in _proxy({"bento": "svc"})["env"]}


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_rendered_proxy_answers_under_the_ingress_path(tmp_path: Path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "service.py").write_text(RealRegistry.SERVICE)
    (project / "jubako.yaml").write_text("service: service:Svc\n")
    store = Store(tmp_path / "home")
    build(project, name="svc", version="v1", store=store)
    container = _proxy({"bento": "svc", "ingress": {"host": "demo.example.com", "path": "/v1"}})
    port = _free_port()
    args = list(container["args"])
    args[args.index("--bento") + 1] = "svc:v1"  # the pod's /bento, here from a local store
    args[args.index("--port") + 1] = str(port)
    args[args.index("--workers") + 1] = f"127.0.0.1:{_free_port()}"  # nobody listening
    env = {**os.environ, "JUBAKO_HOME": str(store.home)}
    env.update({e["name"]: e["value"] for e in container["env"] if "value" in e})
    env.update({"JUBAKO_PORT": str(port), "JUBAKO_BENTO": "svc:v1", "JUBAKO_WORKERS": args[args.index("--workers") + 1]})
    jubako = str(Path(sys.executable).with_name("jubako"))  # the image's entrypoint
    proc = subprocess.Popen([jubako, *args, "--host", "127.0.0.1"], env=env, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, "the proxy exited"
            try:
                if httpx.get(url + container["livenessProbe"]["httpGet"]["path"], timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the proxy did not start"
            time.sleep(0.1)
        routed = httpx.post(url + "/v1/echo", content=b"hi", headers={"content-type": "text/plain"}, timeout=5)
        assert routed.status_code == 503 and "no worker" in routed.text, routed.text
        assert httpx.post(url + "/echo", content=b"hi", timeout=5).status_code == 404
    finally:
        proc.terminate()
        proc.wait(30)
