"""Registry benchmark (issue 5): `make bench-registry`.

Everything runs on this machine, in one run:

* moto's S3 server (a separate process, objects in RAM) and a fresh PostgreSQL database
  ``jubako_bench_<hex>`` on 127.0.0.1:5432 (dropped at the end);
* ``jubako registry serve`` processes on PostgreSQL + that S3: one with presigned URLs (the
  default), one with ``PRESIGN=false`` (every byte streamed through the registry);
* the client in this process (``jubako.client.push``/``pull``, ``--parallel 4``).

Measured:

1. **Push/pull of a 1 GiB bento** (one model with one 1 GiB weights file, plus a small
   bento) through the registry vs **raw boto3** to the same S3: multipart ``upload_part``
   of 64 MiB on 4 threads with ``UNSIGNED-PAYLOAD`` (as over HTTPS), one streamed
   ``get_object``, no hashing -- the strongest raw baseline we could write for this S3
   (boto3's own ``upload_file``/``download_file`` were 1.3x/3.5x slower than the registry
   client here; ranged GETs are 2.5x slower on moto, which copies the object per GET).
   Alternating, ``--rounds`` times; the ratio of medians is the figure (target <= 1.1x).
2. **Peak registry RSS** (``VmHWM`` of the registry process) over the presigned rounds, and
   over one push + pull streamed through the registry (target <= 150 MB whatever the size).
3. **List latency** with ``--versions`` (100 000) versions in PostgreSQL, over HTTP, per
   query shape (first page, deep keyset pages, one name, prefix, label selector, state,
   sort by name): p50/p95/p99 (target p99 <= 50 ms).

Writes a Markdown table to stdout and ``bench/results/registry.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import boto3
import httpx
import psycopg2
from botocore.config import Config

from jubako.workers.spawn import free_port

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
PG_DSN = os.environ.get("JUBAKO_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
TOKEN = "jbk_bench-admin-" + secrets.token_hex(16)
MiB = 1 << 20
PART = 64 * MiB
PARALLEL = 4


def log(*a: object) -> None:
    print(*a, file=sys.stderr, flush=True)


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS/VmHWM in bytes (from /proc: no psutil needed)."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) * 1024
    return out


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def moto_server():
    port = free_port()
    proc = subprocess.Popen(
        [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/moto-api/", proc)
        yield f"http://127.0.0.1:{port}", proc
    finally:
        stop(proc)


@contextmanager
def pg_database():
    name = f"jubako_bench_{secrets.token_hex(6)}"
    conn = psycopg2.connect(PG_DSN)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    base = PG_DSN.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


@contextmanager
def registry(pg: str, s3: str, bucket: str, work: Path, presign: bool):
    port = free_port()
    env = {
        **os.environ,
        "JUBAKO_REGISTRY_DATABASE_URL": pg.replace("postgresql://", "postgresql+psycopg2://"),
        "JUBAKO_REGISTRY_MIGRATE": "true",
        "JUBAKO_REGISTRY_STORAGE": "s3",
        "JUBAKO_REGISTRY_S3_BUCKET": bucket,
        "JUBAKO_REGISTRY_S3_ENDPOINT_URL": s3,
        "JUBAKO_REGISTRY_S3_ACCESS_KEY_ID": "bench",
        "JUBAKO_REGISTRY_S3_SECRET_ACCESS_KEY": "bench",
        "JUBAKO_REGISTRY_PRESIGN": "true" if presign else "false",
        "JUBAKO_REGISTRY_BOOTSTRAP_TOKEN": TOKEN,
        "JUBAKO_REGISTRY_SWEEP_INTERVAL_S": "0",
        "JUBAKO_REGISTRY_DATA_DIR": str(work / f"registry-{'presign' if presign else 'stream'}"),
        "JUBAKO_REGISTRY_SECRET_KEY": secrets.token_hex(16),
        "JUBAKO_LOG_LEVEL": "warning",
    }
    proc = subprocess.Popen(
        [str(VENV_BIN / "jubako"), "registry", "serve", "--port", str(port)]
        + ["--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(work / f"registry-{port}.log", "wb"),  # noqa: SIM115
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/livez", proc)
        yield url, proc
    finally:
        stop(proc)


def s3_client(endpoint: str):  # type: ignore[no-untyped-def]
    cfg = Config(
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        max_pool_connections=32,
    )
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=cfg,
    )


def unsigned_payload() -> None:
    """Make this process's boto3 send ``UNSIGNED-PAYLOAD`` as it does over HTTPS: over
    plain HTTP (moto here) botocore hashes every part body before sending it, a cost the
    raw baseline would not pay against real S3."""
    from botocore.auth import S3SigV4Auth

    S3SigV4Auth._should_sha256_sign_payload = lambda self, request: False  # type: ignore[method-assign]


def raw_multipart_upload(s3, bucket: str, key: str, path: Path, size: int) -> None:  # type: ignore[no-untyped-def]
    """Raw boto3 multipart: create, ``upload_part`` x N on PARALLEL threads, complete."""
    from concurrent.futures import ThreadPoolExecutor

    upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]

    def part(n: int) -> dict[str, object]:
        with open(path, "rb") as f:
            f.seek((n - 1) * PART)
            body = f.read(PART)
        r = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=n, Body=body)
        return {"PartNumber": n, "ETag": r["ETag"]}

    with ThreadPoolExecutor(PARALLEL) as pool:
        parts = list(pool.map(part, range(1, -(-size // PART) + 1)))
    s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
    )


def raw_download(s3, bucket: str, key: str, dest: Path) -> None:  # type: ignore[no-untyped-def]
    """Raw boto3 download: one streamed ``get_object`` (no hashing). On moto this beats
    parallel ranged GETs 2.5x (moto copies the whole object for every ranged GET)."""
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    with open(dest, "wb") as f:
        for chunk in body.iter_chunks(MiB):
            f.write(chunk)


def make_bento(home: Path, size: int):  # type: ignore[no-untyped-def]
    """A bento whose one model holds a ``size``-byte weights file (random bytes)."""
    from jubako.bundle import file_entries
    from jubako.manifest import BentoManifest, ModelManifest, ModelRef, utcnow
    from jubako.store import Store

    store = Store(home)
    with store.models.staging() as staged:
        with open(staged / "weights.bin", "wb") as f:
            left = size
            while left:
                n = min(left, 16 * MiB)
                f.write(os.urandom(n))
                left -= n
        (staged / "config.json").write_text("{}")
        m = ModelManifest(
            name="bench-weights",
            version="v1",
            created_at=utcnow(),
            framework="torch",
            format="torch.state_dict",
            files=file_entries(staged, ["weights.bin", "config.json"]),
        )
        model = store.models.commit(staged, m)
    with store.bentos.staging() as staged:
        (staged / "src").mkdir()
        (staged / "src/service.py").write_text("print('hi')\n")
        b = BentoManifest(
            name="bench",
            version="v1",
            created_at=utcnow(),
            service="service:svc",
            models=[ModelRef(tag=str(model.tag), digest=model.manifest.digest())],
            files=file_entries(staged, ["src/service.py"]),
        )
        bento = store.bentos.commit(staged, b)
    return store, model, bento


CPU: dict[str, list[float]] = {}  # CPU seconds of this (client) process, per operation


def timed(fn, cpu: str | None = None) -> float:  # type: ignore[no-untyped-def]
    """Wall seconds of ``fn()``; with ``cpu``, also this process's CPU seconds into CPU[cpu]
    (all threads: a figure the machine's load barely moves, unlike the wall time)."""
    c, t = time.process_time(), time.perf_counter()
    fn()
    if cpu:
        CPU.setdefault(cpu, []).append(time.process_time() - c)
    return time.perf_counter() - t


def transfer_rounds(
    url: str, s3: str, bucket: str, store, model, work: Path, rounds: int, size: int
) -> dict[str, list[float]]:  # type: ignore[no-untyped-def]
    from jubako.client import RegistryClient
    from jubako.client.pull import pull
    from jubako.client.push import push
    from jubako.store import Store

    raw = s3_client(s3)
    weights = model.path / "weights.bin"
    out: dict[str, list[float]] = {"raw_push": [], "push": [], "raw_pull": [], "pull": []}
    with RegistryClient(url, TOKEN) as client:
        for r in range(rounds):
            key = f"raw/{secrets.token_hex(4)}"
            out["raw_push"].append(
                timed(partial(raw_multipart_upload, raw, bucket, key, weights, size), "raw_push")
            )
            out["push"].append(
                timed(partial(push, client, "bench:v1", store=store, parallel=PARALLEL), "push")
            )
            dest = work / "raw-download"
            out["raw_pull"].append(timed(partial(raw_download, raw, bucket, key, dest), "raw_pull"))
            dest.unlink()
            raw.delete_object(Bucket=bucket, Key=key)  # moto keeps objects in RAM
            home = work / f"pull-{r}"
            out["pull"].append(
                timed(
                    partial(pull, client, "bench:v1", store=Store(home), parallel=PARALLEL), "pull"
                )
            )
            shutil.rmtree(home)
            # Drop the versions (and so the blob) so the next round uploads everything again.
            client.delete_version("bento", "bench", "v1", force=True)
            client.delete_version("model", "bench-weights", "v1", force=True)
            log(f"  round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in out.items()))
    return out


def streamed_round(url: str, store, work: Path) -> dict[str, float]:  # type: ignore[no-untyped-def]
    from jubako.client import RegistryClient
    from jubako.client.pull import pull
    from jubako.client.push import push
    from jubako.store import Store

    with RegistryClient(url, TOKEN) as client:
        t_push = timed(partial(push, client, "bench:v1", store=store, parallel=PARALLEL))
        home = work / "pull-streamed"
        t_pull = timed(partial(pull, client, "bench:v1", store=Store(home), parallel=PARALLEL))
        shutil.rmtree(home)
        client.delete_version("bento", "bench", "v1", force=True)
        client.delete_version("model", "bench-weights", "v1", force=True)
    return {"push": t_push, "pull": t_pull}


# --- list latency --------------------------------------------------------------------


def seed_versions(pg: str, n: int, names: int) -> None:
    """``n`` bento versions over ``names`` names, each with two labels, straight into
    PostgreSQL (COPY), then ANALYZE (what autovacuum would do on a live database)."""
    import io

    conn = psycopg2.connect(pg)
    per = n // names
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    manifest = (
        "apiVersion: jubako/v1\nkind: bento\nname: {name}\nversion: {ver}\n"
        "service: service:svc\nfiles:\n"
        + "".join(
            f"- path: src/file{i}.py\n  size: 1234\n  sha256: {'ab' * 32}\n" for i in range(8)
        )
    )
    with conn, conn.cursor() as cur:
        repo_buf = io.StringIO()
        for i in range(names):
            repo_buf.write(f"bento\tsvc-{i:05d}\t{t0.isoformat()}\n")
        repo_buf.seek(0)
        cur.copy_expert("COPY repositories (kind, name, created_at) FROM STDIN", repo_buf)
        cur.execute("SELECT id, name FROM repositories WHERE kind = 'bento' AND name LIKE 'svc-%'")
        repo_ids = dict((name, rid) for rid, name in cur.fetchall())
        cur.execute("SELECT coalesce(max(id), 0) FROM versions")
        base_id = cur.fetchone()[0]
        vbuf, lbuf = io.StringIO(), io.StringIO()
        vid = base_id
        for j in range(per):
            for i in range(names):
                vid += 1
                name = f"svc-{i:05d}"
                ver = f"v{j:05d}"
                at = (t0 + timedelta(seconds=vid)).isoformat()
                state = "ready" if vid % 10 else "failed"
                text = manifest.format(name=name, ver=ver).replace("\n", "\\n")
                vbuf.write(
                    f"{vid}\t{repo_ids[name]}\tbento\t{name}\t{ver}\t{state}\tsha256:{vid:064x}"
                    f"\t{text}\t{10_000_000 + vid}\t8\t{at}\t{at}\t{at}\tci\n"
                )
                lbuf.write(f"{vid}\tteam\tteam-{i % 20}\n")
                lbuf.write(f"{vid}\tstage\t{'prod' if j % 5 == 0 else 'dev'}\n")
        vbuf.seek(0)
        lbuf.seek(0)
        cur.copy_expert(
            "COPY versions (id, repository_id, kind, name, version, state, digest, manifest,"
            " size, file_count, created_at, updated_at, ready_at, created_by) FROM STDIN",
            vbuf,
        )
        cur.copy_expert("COPY version_labels (version_id, key, value) FROM STDIN", lbuf)
        cur.execute("SELECT setval(pg_get_serial_sequence('versions', 'id'), %s)", (vid,))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("ANALYZE")
    conn.close()


def percentile(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def list_latency(url: str, requests: int, names: int) -> dict[str, dict[str, float]]:
    one_name = f"svc-{names // 2:05d}"
    http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    shapes: dict[str, tuple[str, dict[str, str]]] = {
        "all, first page (limit 50)": ("/api/v1/bentos", {"limit": "50"}),
        "all, limit 200": ("/api/v1/bentos", {"limit": "200"}),
        "one name": (f"/api/v1/bentos/{one_name}/versions", {"limit": "50"}),
        f"prefix {one_name[:-1]}": ("/api/v1/bentos", {"prefix": one_name[:-1], "limit": "50"}),
        "selector team=team-3,stage=prod": (
            "/api/v1/bentos",
            {"selector": "team=team-3,stage=prod", "limit": "50"},
        ),
        "state=failed": ("/api/v1/bentos", {"state": "failed", "limit": "50"}),
        "sort=name": ("/api/v1/bentos", {"sort": "name", "limit": "50"}),
    }
    out = {}

    def measure(label: str, fn) -> None:  # type: ignore[no-untyped-def]
        for _ in range(10):  # warm-up
            fn()
        xs = []
        for _ in range(requests):
            t = time.perf_counter()
            fn()
            xs.append((time.perf_counter() - t) * 1000)
        out[label] = {
            "n": len(xs),
            "p50_ms": round(percentile(xs, 50), 2),
            "p95_ms": round(percentile(xs, 95), 2),
            "p99_ms": round(percentile(xs, 99), 2),
            "max_ms": round(max(xs), 2),
        }
        log(f"  {label}: p50 {out[label]['p50_ms']} ms, p99 {out[label]['p99_ms']} ms")

    for label, (path, params) in shapes.items():

        def one(path: str = path, params: dict[str, str] = params, label: str = label) -> None:
            r = http.get(path, params=params)
            r.raise_for_status()
            assert r.json()["items"], label

        measure(label, one)

    # Deep pages: walk the cursor from the start; each request is one page further.
    state = {"cursor": None}

    def page() -> None:
        params = {"limit": "50"}
        if state["cursor"]:
            params["cursor"] = state["cursor"]
        r = http.get("/api/v1/bentos", params=params)
        r.raise_for_status()
        state["cursor"] = r.json()["next_cursor"]

    measure("all, keyset walk (next pages)", page)
    http.close()
    return out


# --- report ---------------------------------------------------------------------------


def machine() -> dict[str, object]:
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def markdown(res: dict) -> str:  # type: ignore[type-arg]
    t = res["transfer"]
    lines = [
        f"Registry benchmark, {res['date']}, {res['machine']['cores']} cores"
        f" ({res['machine']['cpu']}), load before/after {res['load_before']} / {res['load_after']}",
        "",
        f"Bento of {res['size_bytes'] / 2**30:.2f} GiB (one model file), PostgreSQL + moto S3,"
        f" part {PART // MiB} MiB, parallel {PARALLEL}, {res['rounds']} rounds (median, min)",
        "",
        "| Operation | Registry (s) | Raw boto3 (s) | Ratio (median) | Target |"
        " Client CPU s, registry / raw (median) |",
        "|---|---|---|---|---|---|",
    ]
    cpu = res.get("client_cpu", {})
    for op in ("push", "pull"):
        reg, raw = t[op], t[f"raw_{op}"]
        ratio = statistics.median(reg) / statistics.median(raw)
        ok = "ok" if ratio <= 1.1 else "MISSED"
        c = (
            f"{statistics.median(cpu[op]):.2f} / {statistics.median(cpu[f'raw_{op}']):.2f}"
            if op in cpu
            else ""
        )
        lines.append(
            f"| {op} {res['size_bytes'] / 2**30:.2f} GiB | {statistics.median(reg):.2f} ({min(reg):.2f}) |"
            f" {statistics.median(raw):.2f} ({min(raw):.2f}) | {ratio:.2f}x | <= 1.1x {ok} | {c} |"
        )
    s = res["streamed"]
    lines.append(
        f"| push / pull streamed through the registry (PRESIGN=false) | {s['push']:.2f} /"
        f" {s['pull']:.2f} | | | (information) |"
    )
    lines += ["", "| Registry process | Peak RSS (VmHWM) | Target |", "|---|---|---|"]
    for k, v in res["rss"].items():
        mb = v["VmHWM"] / 1e6
        lines.append(f"| {k} | {mb:.0f} MB | <= 150 MB {'ok' if mb <= 150 else 'MISSED'} |")
    lines += [
        "",
        f"List latency over HTTP, {res['list']['versions']} versions in PostgreSQL"
        f" ({res['list']['requests']} requests each, sequential)",
        "",
        "| Query | p50 (ms) | p95 (ms) | p99 (ms) | max (ms) | Target p99 <= 50 ms |",
        "|---|---|---|---|---|---|",
    ]
    for k, v in res["list"]["latency"].items():
        ok = "ok" if v["p99_ms"] <= 50 else "MISSED"
        lines.append(
            f"| {k} | {v['p50_ms']} | {v['p95_ms']} | {v['p99_ms']} | {v['max_ms']} | {ok} |"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=1 << 30, help="bytes of the bento's model file")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--versions", type=int, default=100_000)
    ap.add_argument("--names", type=int, default=1000)
    ap.add_argument("--requests", type=int, default=300, help="list requests per query shape")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/registry.json")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: /tmp)")
    args = ap.parse_args()

    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="jubako-bench-registry-", dir=args.work))
    res: dict = {  # type: ignore[type-arg]
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "make bench-registry  ("
        + " ".join([Path(sys.argv[0]).name] + sys.argv[1:])
        + ")",
        "machine": machine(),
        "load_before": loadavg(),
        "size_bytes": args.size,
        "rounds": args.rounds,
        "part_size": PART,
        "parallel": PARALLEL,
    }
    os.environ["JUBAKO_LOG_LEVEL"] = "warning"
    unsigned_payload()
    try:
        log(f"making a {args.size / 2**30:.2f} GiB bento in {work}")
        store, model, _ = make_bento(work / "home", args.size)
        with moto_server() as (s3, moto), pg_database() as pg:
            bucket = "bench"
            s3_client(s3).create_bucket(Bucket=bucket)
            s3_client(s3).put_object(Bucket=bucket, Key="warm-up", Body=b"x")  # moto's lazy start
            with registry(pg, s3, bucket, work, presign=True) as (url, proc):
                idle = proc_status(proc.pid)
                log("push/pull: registry (presigned) vs raw boto3")
                res["transfer"] = transfer_rounds(
                    url, s3, bucket, store, model, work, args.rounds, args.size
                )
                res["client_cpu"] = dict(CPU)
                rss = {"presigned push+pull": proc_status(proc.pid), "idle": idle}
                log(f"listing: seeding {args.versions} versions")
                t = time.perf_counter()
                seed_versions(pg, args.versions, args.names)
                res["list"] = {
                    "versions": args.versions,
                    "names": args.names,
                    "seed_s": round(time.perf_counter() - t, 1),
                    "requests": args.requests,
                }
                res["list"]["latency"] = list_latency(url, args.requests, args.names)
                rss["presigned, after listing"] = proc_status(proc.pid)
            with registry(pg, s3, bucket, work, presign=False) as (url, proc):
                log("push/pull streamed through the registry")
                res["streamed"] = streamed_round(url, store, work)
                rss["streamed push+pull (PRESIGN=false)"] = proc_status(proc.pid)
            res["rss"] = rss
            res["moto_peak_rss"] = proc_status(moto.pid)["VmHWM"]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    res["load_after"] = loadavg()
    res["wall_s"] = round(time.monotonic() - started, 1)
    md = markdown(res)
    res["markdown"] = md
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2, default=str) + "\n")
    print(md)
    log(f"wrote {args.out} in {res['wall_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
