"""Offer a series of open-loop rates to one `jubako serve` and print, per rate, what was
served within the SLO, the status codes, the latencies and the CPU each process role
used (proxy, workers, this load generator): to see where an overload's time goes.

    .venv/bin/python bench/runtime/run.py --models onnx --systems jubako --capacity onnx=1 --no-raw  # builds the bentos once
    .venv/bin/python bench/runtime/rates.py --rates 10000,18000,24000
    .venv/bin/python bench/runtime/rates.py --rates 6000,18000,30000 --no-workers  # the proxy alone: every request refused

``--no-workers`` runs the proxy role with a worker address nobody listens on, so every API
request gets the pre-encoded 503 ("no worker is ready"): the cost of a refusal. Uses the
bentos `run.py` built in $BENCH_WORK (default /tmp/jubako-bench).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadgen  # noqa: E402
import run as bench  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def roles() -> dict[str, str]:
    """pid -> role of every jubako runtime process on this machine."""
    out = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"jubako.runtime" in cmd:
            out[pid] = "proxy" if b"proxy" in cmd else "worker"
    return out


def cpu(pid: str) -> tuple[float, float]:
    """(user, system) CPU seconds of one process."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    return int(f[11]) / TICK, int(f[12]) / TICK


async def offer(port: int, model: str, rates: list[float], seconds: float) -> None:
    t = loadgen.Target("127.0.0.1", port, "/predict", bench.bodies(model))
    await loadgen.closed_loop(t, 4, 1.0, warmup=0.2)  # warm up
    slo = bench.MODELS[model]["slo"]
    for rate in rates:
        await asyncio.sleep(loadgen.PAUSE)
        procs = roles()
        c0, me0, t0 = {p: cpu(p) for p in procs}, os.times(), time.monotonic()
        ov = await loadgen.overload(t, rate, slo, seconds=seconds)
        dt = time.monotonic() - t0
        me1 = os.times()
        use: dict[str, list[float]] = {"generator": [(me1.user - me0.user) / dt, (me1.system - me0.system) / dt]}
        for p, role in procs.items():
            (u0, s0), (u1, s1) = c0[p], cpu(p)
            acc = use.setdefault(role, [0.0, 0.0])
            acc[0] += (u1 - u0) / dt
            acc[1] += (s1 - s0) / dt
        answered = sum(ov["codes"].values())
        print(f"{rate:8.0f} req/s: {ov['served_within_slo_per_s']:8.0f}/s within SLO, codes {ov['codes']}, "
              f"ok p99 {ov['ok_p99_ms']:.1f} ms, 503 p50/p99 {ov['error_p50_ms']:.1f}/{ov['error_p99_ms']:.1f} ms, "
              f"from the write {ov['refused_p50_from_send_ms']:.1f}/{ov['refused_p99_from_send_ms']:.1f} ms, "
              f"generator lag p99 {ov['lag_p99_ms']:.1f} ms", flush=True)
        print("    CPU (cores, user/system): " + ", ".join(f"{r} {u:.2f}/{s:.2f}" for r, (u, s) in use.items())
              + (f"; proxy {sum(use['proxy']) * dt / answered * 1e6:.1f} us per request"
                 if "proxy" in use and answered else ""), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="onnx", choices=sorted(bench.MODELS))
    ap.add_argument("--rates", required=True, help="comma-separated requests per second, offered in turn")
    ap.add_argument("--seconds", type=float, default=4.0, help="measured seconds per rate (after 1 s of warm-up)")
    ap.add_argument("--workers", type=int, default=0, help="jubako serve --workers (0: its default)")
    ap.add_argument("--no-workers", action="store_true", help="the proxy alone: every API request refused")
    ap.add_argument("--port", type=int, default=3950)
    args = ap.parse_args()
    env = {**os.environ, "JUBAKO_HOME": str(bench.WORK / "home"), "JUBAKO_LOG_LEVEL": "WARNING"}
    bento = bench.MODELS[args.model]["jubako"]
    if args.no_workers:
        argv = [str(bench.VENV / "python"), "-m", "jubako.runtime", "proxy", "--bento", bento,
                "--port", str(args.port), "--workers", "127.0.0.1:1"]
        ready = "/livez"
    else:
        argv = [str(bench.VENV / "jubako"), "serve", bento, "--port", str(args.port),
                *(["--workers", str(args.workers)] if args.workers else [])]
        ready = "/readyz"
    log = open(bench.WORK / "rates-server.log", "wb")
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{args.port}{ready}", timeout=1).status == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"the server did not start; see {bench.WORK / 'rates-server.log'}")
            time.sleep(0.25)
        try:
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        except ImportError:
            pass
        asyncio.run(offer(args.port, args.model, [float(r) for r in args.rates.split(",")], args.seconds))
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()


if __name__ == "__main__":
    main()
