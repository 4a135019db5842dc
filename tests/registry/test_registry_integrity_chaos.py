"""Issue 13, "done when": 16 clients push 16 bentos sharing models at once while the
registry (a real `jubako registry serve` process) is SIGKILLed at random moments and
restarted. Every push succeeds with the client's own retries, every pull is
byte-identical, and every stored blob re-hashes to its digest."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from jubako.bundle import verify_bundle
from jubako.client import RegistryClient
from jubako.client.pull import pull
from jubako.client.push import push
from jubako.store import Store

from .conftest import ADMIN, free_port
from .factories import make_bento, make_model
from .test_registry_process import Proc, _env

CLIENTS = 16
KILLS = 3


def _backend_env(backend: str, request: pytest.FixtureRequest) -> dict[str, str]:
    if backend == "sqlite-local":
        return {}
    return dict(
        JUBAKO_REGISTRY_DATABASE_URL=request.getfixturevalue("pg_url"),
        JUBAKO_REGISTRY_MIGRATE="true",
        JUBAKO_REGISTRY_STORAGE="s3",
        JUBAKO_REGISTRY_S3_BUCKET=f"chaos-{os.getpid()}-{time.monotonic_ns()}",
        JUBAKO_REGISTRY_S3_ENDPOINT_URL=request.getfixturevalue("moto_endpoint"),
        JUBAKO_REGISTRY_S3_CREATE_BUCKET="true",
        JUBAKO_REGISTRY_PRESIGN="false",  # the bytes go through the registry we kill
    )


def _stored_blobs(tmp: Path, env: dict[str, str]) -> list[tuple[str, int, str]]:
    url = env.get("JUBAKO_REGISTRY_DATABASE_URL") or f"sqlite:///{tmp / 'registry/registry.db'}"
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT digest, size, key FROM blobs")).all()
    engine.dispose()
    return [(d, s, k) for d, s, k in rows]


def _rehash(tmp: Path, env: dict[str, str], key: str) -> tuple[int, str]:
    h, n = hashlib.sha256(), 0
    if "JUBAKO_REGISTRY_S3_BUCKET" in env:
        import boto3

        s3 = boto3.client("s3", endpoint_url=env["JUBAKO_REGISTRY_S3_ENDPOINT_URL"])
        body = s3.get_object(Bucket=env["JUBAKO_REGISTRY_S3_BUCKET"], Key=key)["Body"]
        chunks = body.iter_chunks(1 << 20)
    else:
        chunks = iter(lambda f=open(tmp / "registry/blobs" / key, "rb"): f.read(1 << 20), b"")  # noqa: SIM115
    for chunk in chunks:
        h.update(chunk)
        n += len(chunk)
    return n, h.hexdigest()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite-local", "postgres-s3"])
def test_pushes_survive_random_sigkills(backend, tmp_path: Path, request) -> None:  # type: ignore[no-untyped-def]
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    env = _env(tmp_path, **_backend_env(backend, request))
    port = free_port()
    base = Store(tmp_path / "base")
    models = [
        make_model(base, "m0", "v1", {"w.bin": 6 << 20}),  # 2 parts
        make_model(base, "m1", "v1", {"w.bin": 300_000, "cfg.json": b"{}"}),
        make_model(base, "m2", "v1", {"w.bin": 20_000}),
    ]
    stores = []
    for i in range(CLIENTS):
        shutil.copytree(base.home, tmp_path / f"job{i}")
        store = Store(tmp_path / f"job{i}")
        uses = [store.models.get(str(models[j].tag)) for j in (i % 3, (i + 1) % 3)]
        make_bento(store, f"svc{i}", "v1", uses, files={"src/service.py": os.urandom(5000)})
        stores.append(store)

    procs = [Proc(env, port).start()]
    url = procs[0].url
    stop = threading.Event()

    def killer() -> None:
        for _ in range(KILLS):
            if stop.wait(rng.uniform(0.5, 2.5)):
                return
            procs[-1].kill()
            procs.append(Proc(env, port).start())

    def job(i: int) -> list[str]:
        time.sleep(rng.uniform(0, 0.5))
        with RegistryClient(url, ADMIN, timeout=60) as c:
            return [p.state for p in push(c, f"svc{i}:v1", store=stores[i], parallel=2)]

    k = threading.Thread(target=killer, daemon=True)
    k.start()
    try:
        with ThreadPoolExecutor(CLIENTS) as pool:
            futures = [pool.submit(job, i) for i in range(CLIENTS)]
            results = [f.result(timeout=240) for f in futures]
    finally:
        stop.set()
        k.join(60)
    try:
        assert results == [["ready", "ready", "ready"]] * CLIENTS, f"seed {seed}"
        with RegistryClient(url, ADMIN) as c:
            for i in range(CLIENTS):
                dst = Store(tmp_path / f"pulled{i}")
                pull(c, f"svc{i}:v1", store=dst)
                got = dst.bentos.get(f"svc{i}:v1")
                assert got.manifest.digest() == stores[i].bentos.get(f"svc{i}:v1").manifest.digest()
                assert verify_bundle(got.path, got.manifest) == []
                for ref in got.manifest.models:
                    m = dst.models.get(ref.parsed)
                    assert verify_bundle(m.path, m.manifest) == []
        blobs = _stored_blobs(tmp_path, env)
        assert len(blobs) >= 3
        for digest, size, key in blobs:
            assert _rehash(tmp_path, env, key) == (size, digest), f"seed {seed}: {key}"
    finally:
        for p in procs:
            p.stop()
