"""Dashboard fixtures: the registry as a real ``jubako registry serve`` process on the
embedded default (SQLite + local blobs in a temp JUBAKO_HOME), and a real headless
Chromium (Debian's ``chromium`` package) driven by Playwright.

Screenshots go to ``test-artifacts/dashboard/`` for a person to look at.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from jubako.archive import export
from jubako.store import Store

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
CHROMIUM = os.environ.get("JUBAKO_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
TOKEN_LINE = re.compile(r"initial admin token \(shown once, keep it\): (\S+)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    admin: str  # the initial admin token the embedded registry printed
    home: Path
    proc: subprocess.Popen[str]
    log: list[str] = field(default_factory=list)

    def api(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token or self.admin}"},
            timeout=60,
        )

    def token(self, scope: str, user: str = "") -> str:
        with self.api() as c:
            r = c.post("/api/v1/tokens", json={"scope": scope, "user": user or f"{scope}-user"})
            r.raise_for_status()
            return r.json()["token"]

    def report_deployment(self, namespace: str, name: str, bento: str, status: dict) -> None:
        """What the operator sends for a BentoDeployment it reconciles."""
        with self.api() as c:
            r = c.put(
                f"/api/v1/deployments/{namespace}/{name}",
                json={"bento": bento, "cluster": "test-cluster", "status": status},
            )
            r.raise_for_status()


@pytest.fixture(scope="package")  # torn down before later packages: Playwright sync keeps a loop running
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("dashboard-home")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUBAKO_")}
    env.update(
        JUBAKO_HOME=str(home),
        JUBAKO_REGISTRY_DATA_DIR=str(home / "registry"),
        JUBAKO_REGISTRY_SWEEP_INTERVAL_S="0",
    )
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "jubako"), "registry", "serve", "--port", str(port),
         "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    log: list[str] = []
    token: list[str] = []
    got_token = threading.Event()

    def drain() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            log.append(line)
            m = TOKEN_LINE.search(line)
            if m:
                token.append(m.group(1))
                got_token.set()

    threading.Thread(target=drain, daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError("registry exited:\n" + "".join(log))
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("registry did not start:\n" + "".join(log))
        time.sleep(0.1)
    assert got_token.wait(10), "the embedded registry printed no initial admin token"
    srv = Server(url, token[0], home, proc, log)
    yield srv
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="package")  # torn down before later packages: Playwright sync keeps a loop running
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise RuntimeError(
            f"{CHROMIUM} not found: install Debian's chromium package (apt-get install chromium)"
        )
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def context(browser, server: Server) -> Iterator[object]:  # type: ignore[no-untyped-def]
    ctx = browser.new_context(
        base_url=server.url, accept_downloads=True, viewport={"width": 1280, "height": 900}
    )
    ctx.set_default_timeout(20_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context):  # type: ignore[no-untyped-def]
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    p.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    p.js_errors = errors  # type: ignore[attr-defined]
    yield p


def login(page, token: str) -> None:  # type: ignore[no-untyped-def]
    page.goto("/ui/login")
    page.fill("#login-token input[name=token]", token)
    page.click("#login-token button[type=submit]")
    page.wait_for_url("**/ui/bentos")


def shot(page, name: str, full_page: bool = True) -> Path:  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


@dataclass
class Example:
    path: Path  # the archive
    name: str
    version: str
    digest: str
    models: list[str]  # name:version of the models it carries

    @property
    def tag(self) -> str:
        return f"{self.name}:{self.version}"


@pytest.fixture(scope="package")  # torn down before later packages: Playwright sync keeps a loop running
def example(tmp_path_factory: pytest.TempPathFactory) -> Example:
    """The torch example bento with its model, as ``jubako export`` writes it (only this
    example is built: the ONNX one would add a slow torch.onnx export)."""
    from jubako.build import build

    home = tmp_path_factory.mktemp("dashboard-examples")
    env = {**os.environ, "JUBAKO_HOME": str(home)}
    subprocess.run(
        [sys.executable, str(EXAMPLES / "mlp_torch" / "save_model.py")],
        env=env,
        check=True,
        capture_output=True,
    )
    store = Store(home)
    bundle = build(EXAMPLES / "mlp_torch", store=store)
    path = tmp_path_factory.mktemp("archives") / "mlp-torch.tar"
    with open(path, "wb") as f:
        export(bundle, f, store=store)
    m = bundle.manifest
    return Example(path, m.name, m.version, m.digest(), [r.tag for r in m.models])


def push_archive(server: Server, body: bytes, token: str | None = None, **params: object) -> list[dict]:
    with server.api(token) as c:
        r = c.post("/api/v1/archives", content=body, params=params)  # type: ignore[arg-type]
        assert r.status_code == 200, r.text
        return r.json()["pushed"]


def synthetic_bento(tmp: Path, name: str, version: str = "v1", labels: dict | None = None) -> bytes:
    """A small bento with one model, as an archive."""
    import io

    from tests.registry.factories import make_bento, make_model

    store = Store(tmp / f"store-{name}-{version}")
    model = make_model(store, f"{name}-model", version)
    bento = make_bento(store, name, version, [model], labels=labels)
    buf = io.BytesIO()
    export(bento, buf, store=store)
    return buf.getvalue()


def push_empty_model(server: Server, name: str, version: str, created_at: str) -> None:
    """A model version without files: one PUT and one complete, no blob to send."""
    manifest = (
        f"name: {name}\nversion: {version}\ncreated_at: '{created_at}'\n"
        "framework: torch\nformat: torch.state_dict\nfiles: []\n"
    )
    with server.api() as c:
        r = c.put(f"/api/v1/models/{name}/versions/{version}", json={"manifest": manifest})
        assert r.status_code == 201, r.text
        up, digest = r.json()["upload"], r.json()["version"]["digest"]
        r = c.post(f"/api/v1/uploads/{up['id']}/complete", json={"digest": digest})
        assert r.status_code == 200, r.text


def csrf_of(page) -> str:  # type: ignore[no-untyped-def]
    return page.locator("input[name=csrf]").first.get_attribute("value")


def real_errors(page) -> list[str]:  # type: ignore[no-untyped-def]
    """Script errors and CSP violations (not the 4xx of pages a test asked for)."""
    return [e for e in page.js_errors if "Failed to load resource" not in e]
