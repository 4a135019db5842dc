"""Registry fixtures: real PostgreSQL and SQLite, moto's S3 server over HTTP, the local
backend, and registries served by uvicorn on 127.0.0.1."""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest
import uvicorn
from jubako.registry.app import create_app
from jubako.registry.config import Settings

from jubako.client import RegistryClient
from jubako.workers.spawn import free_port

PG_DSN = os.environ.get("JUBAKO_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
ADMIN = "jbk_test-admin-token-0123456789"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A DSN prefix to the PostgreSQL server (databases are made per test)."""
    yield PG_DSN.rsplit("/", 1)[0]


def _admin_conn():  # type: ignore[no-untyped-def]
    conn = psycopg2.connect(PG_DSN)
    conn.autocommit = True
    return conn


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped afterwards."""
    name = f"jubako_test_{secrets.token_hex(6)}"
    conn = _admin_conn()
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    yield f"postgresql+psycopg2://{pg_server.split('://', 1)[1]}/{name}"
    conn = _admin_conn()
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for k in list(os.environ):
        if k.startswith("JUBAKO_REGISTRY_") or k == "JUBAKO_TOKEN":
            monkeypatch.delenv(k)


def make_settings(
    tmp: Path, db: str, storage: str, moto: str | None = None, **kw: object
) -> Settings:
    opts: dict[str, object] = {
        "data_dir": tmp / "registry-data",
        "bootstrap_token": ADMIN,
        "sweep_interval_s": 0,
        "part_size": 5 << 20,
    }
    if db != "sqlite":
        opts["database_url"] = db
        opts["migrate"] = True
    if storage == "s3":
        assert moto
        opts.update(
            storage="s3",
            s3_bucket=f"b-{secrets.token_hex(6)}",
            s3_endpoint_url=moto,
            s3_create_bucket=True,
            s3_access_key_id="testing",
            s3_secret_access_key="testing",
        )
    opts.update(kw)
    return Settings(**opts)  # type: ignore[arg-type]


@dataclass
class Served:
    url: str
    settings: Settings
    app: object
    server: uvicorn.Server
    thread: threading.Thread

    def client(self, token: str = ADMIN) -> RegistryClient:
        return RegistryClient(self.url, token)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def serve(settings: Settings) -> Served:
    app = create_app(settings, sweeper=False)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("registry did not start")
        time.sleep(0.02)
    return Served(f"http://127.0.0.1:{port}", settings, app, server, thread)


BACKENDS = ["sqlite-local", "sqlite-s3", "postgres-local", "postgres-s3"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def registry(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Served]:
    """A registry served over HTTP on one of the four backend combinations."""
    db, storage = backend.split("-")
    db_url = request.getfixturevalue("pg_url") if db == "postgres" else "sqlite"
    moto = request.getfixturevalue("moto_endpoint") if storage == "s3" else None
    served = serve(make_settings(tmp_path, db_url, storage, moto))
    yield served
    served.stop()


@pytest.fixture
def local_registry(tmp_path: Path) -> Iterator[Served]:
    """SQLite + local folder: the embedded default."""
    served = serve(make_settings(tmp_path, "sqlite", "local"))
    yield served
    served.stop()


@pytest.fixture
def pg_s3_registry(tmp_path: Path, pg_url: str, moto_endpoint: str) -> Iterator[Served]:
    served = serve(make_settings(tmp_path, pg_url, "s3", moto_endpoint))
    yield served
    served.stop()
