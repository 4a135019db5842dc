"""Server time of pushes with many files (issue 13 item 5): ``python bench/registry_files.py``.

The registry app runs in this process (FastAPI's TestClient: routing, validation and
serialization included, no sockets), on SQLite or a fresh PostgreSQL database
``jubako_bench_<hex>`` on 127.0.0.1:5432 (dropped at the end), with local storage (its data folder under /dev/shm by default). Steps,
each timed once per round, for a model manifest of ``--files`` files:

* ``new``: PUT a version whose files are all new blobs (the answer lists one blob upload
  with its parts per file);
* ``resume``: GET that upload session (a client resuming);
* ``join``: PUT the same version again (a second pusher joins the session);
* ``abort``: DELETE the session;
* ``ready``: PUT a version whose files all have one content (one blob), upload it, complete
  it and the version (the whole push flow; the per-file work is the files' rows).

Prints one line per database: median seconds of each step, and ``uptime``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import psycopg2

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from jubako.registry.app import create_app
from jubako.registry.config import Settings
from jubako.registry.domain.canonical import dump

from jubako.manifest import FileEntry, ModelManifest, utcnow

PG = os.environ.get("JUBAKO_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
TOKEN = "jbk_bench-admin-token-0123456789"


def manifest(name: str, version: str, n: int, same: bool = False) -> str:
    files = [
        FileEntry(
            path=f"d{i % 100}/f{i}.bin",
            size=1 if same else 8,
            sha256=hashlib.sha256(b"x" if same else b"%s:%d" % (name.encode(), i)).hexdigest(),
        )
        for i in range(n)
    ]
    m = ModelManifest(
        name=name, version=version, created_at=utcnow(), framework="torch", format="x", files=files
    )
    return dump(m).decode()  # Manifest.dump()'s bytes, in a fraction of the time


def run(db: str, n: int, rounds: int, data: str | None) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-files-", dir=data))
    opts: dict[str, object] = {"data_dir": tmp, "bootstrap_token": TOKEN, "sweep_interval_s": 0}
    dbname = ""
    if db == "postgres":
        dbname = f"jubako_bench_{secrets.token_hex(4)}"
        conn = psycopg2.connect(PG)
        conn.autocommit = True
        conn.cursor().execute(f'CREATE DATABASE "{dbname}"')
        conn.close()
        opts.update(database_url=f"postgresql+psycopg2://{PG.split('://')[1].rsplit('/', 1)[0]}/{dbname}", migrate=True)
    times: dict[str, list[float]] = {}
    try:
        with TestClient(create_app(Settings(**opts), sweeper=False)) as http:  # type: ignore[arg-type]
            http.headers["Authorization"] = f"Bearer {TOKEN}"

            def timed(step: str, method: str, url: str, ok: int, **kw: object) -> dict:
                t = time.perf_counter()
                r = http.request(method, url, **kw)  # type: ignore[arg-type]
                times.setdefault(step, []).append(time.perf_counter() - t)
                assert r.status_code == ok, (step, r.status_code, r.text[:300])
                return r.json() if r.content else {}

            for i in range(rounds):
                url = f"/api/v1/models/many{i}/versions/v1"
                body = {"manifest": manifest(f"many{i}", "v1", n)}
                up = timed("new", "PUT", url, 201, json=body)["upload"]
                assert len(up["blobs"]) == n
                timed("resume", "GET", f"/api/v1/uploads/{up['id']}", 200)
                timed("join", "PUT", url, 200, json=body)
                timed("abort", "DELETE", f"/api/v1/uploads/{up['id']}", 204)

                url = f"/api/v1/models/same{i}/versions/v1"
                body = {"manifest": manifest(f"same{i}", "v1", n, same=True)}
                t = time.perf_counter()
                r = http.put(url, json=body).json()
                for blob in r["upload"]["blobs"]:  # one blob, unless stored by a round before
                    base = f"/api/v1/uploads/{r['upload']['id']}/blobs/{blob['digest']}"
                    assert http.put(f"{base}/parts/1", content=b"x").status_code == 200
                    assert http.post(f"{base}/complete").status_code == 200
                done = http.post(
                    f"/api/v1/uploads/{r['upload']['id']}/complete",
                    json={"digest": r["version"]["digest"]},
                )
                assert done.status_code == 200 and done.json()["state"] == "ready", done.text
                times.setdefault("ready", []).append(time.perf_counter() - t)
    finally:
        if dbname:
            conn = psycopg2.connect(PG)
            conn.autocommit = True
            conn.cursor().execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
            conn.close()
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=30_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument(
        "--data-dir",
        default="/dev/shm" if os.path.isdir("/dev/shm") else None,
        help="parent of the registry's data folder; default /dev/shm (before 261b8c8 local"
        " storage made a folder per blob upload, which measured the disk, not the registry)",
    )
    a = ap.parse_args()
    for db in ["sqlite", "postgres"] if a.db == "both" else [a.db]:
        res = run(db, a.files, a.rounds, a.data_dir)
        steps = "  ".join(f"{k} {v:.2f}" for k, v in res.items())
        load = os.getloadavg()
        print(f"{db:8} {a.files} files, median of {a.rounds} (s): {steps}  load {load[0]:.2f}")


if __name__ == "__main__":
    main()
