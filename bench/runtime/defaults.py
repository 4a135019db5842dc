"""CPU defaults by measurement (issue 16 item 5): `jubako serve` under a few worker x
intra-op thread x spinning x proxy settings, on the light model (the ONNX MLP) and the heavy one
(the bench encoder); the max rate at SLO of each, and the default's ratio to the best.

    flock /tmp/jubako-bench.lock .venv/bin/python bench/runtime/defaults.py [--models onnx,encoder]
        [--settings 1x1,2x1,2x1x2]   # workers x threads [x proxies], no spinning

The setting equal to what `jubako serve` chooses with no flags (jubako/runtime_settings.py,
cpu_plan, num_proxies' default) is run with no flags and no JUBAKO_NUM_* / JUBAKO_THREAD_SPINNING in the
environment, so the "default" row is what a user gets. The bisection is run.py's, shorter
(at most 6 probes; with --confirm a failing rate is probed twice, the shared machine's
stalls failing single probes); one server per setting, restarted after a failed probe. Writes
bench/results/defaults.json (or --out).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import loadgen
import orjson
import run  # the bench's artifacts, servers and inputs
from jubako.runtime.launch import cores

from jubako.runtime_settings import RuntimeSettings, cpu_plan

# (workers, intra-op threads, spinning, proxies): the old default (1 worker, threads =
# cores, libraries' spinning), the same without spinning, one single-threaded worker per
# core or fewer, and one proxy per worker
SWEEP = [(1, 0, True, 1), (1, 0, False, 1), (1, 1, False, 1), (0, 1, False, 1), (0, 1, False, 0)]
Setting = tuple[int, int, bool, int]


def label(workers: int, threads: int, spin: bool, proxies: int) -> str:
    return f"{workers}w x {threads}t{f' x {proxies}p' if proxies > 1 else ''}{' spin' if spin else ''}"


def resolve(setting: Setting, n: int) -> Setting:
    w, t, spin, p = setting
    w, t = (w or n // (t or 1), t or n // (w or 1))
    return (w, t, spin, p or w)


def server(model: str, env: dict[str, str], port: int, setting: Setting | None) -> run.Server:
    argv = [str(run.VENV / "jubako"), "serve", run.MODELS[model]["jubako"], "--port", str(port)]
    e = {k: v for k, v in env.items() if k not in ("JUBAKO_NUM_WORKERS", "JUBAKO_NUM_THREADS", "JUBAKO_NUM_PROXIES",
                                                    "JUBAKO_THREAD_SPINNING", "OMP_WAIT_POLICY")}
    name = f"defaults-{model}-default"
    if setting is not None:
        w, t, spin, p = setting
        argv += ["--workers", str(w), "--proxies", str(p)]
        e.update(JUBAKO_NUM_THREADS=str(t), JUBAKO_THREAD_SPINNING="1" if spin else "0")
        name = f"defaults-{model}-{w}w{t}t{p}p{'s' if spin else ''}"
    return run.Server(name, argv, e, run.ROOT, port, "/readyz")


def log_probe(p: dict[str, Any]) -> None:
    run.log(f"    {p['rate']:8.1f} req/s: p99 {p['p99_ms']:7.1f} ms  errors {p['error_rate'] * 100:5.2f}%  "
            f"-> {'counts' if p['counts'] else 'fails'}")


async def max_rate(model: str, port: int, srv: run.Server, confirm: bool) -> dict[str, Any]:
    slo = run.MODELS[model]["slo"]
    target = loadgen.Target("127.0.0.1", port, "/predict", run.bodies(model))
    await loadgen.closed_loop(target, 4, 1.0, warmup=0.2)  # warm-up: lazy inits, the cost model
    closed = await loadgen.closed_loop(target, 64, 2.0)
    run.log(f"    closed loop c=64: {closed['ok_rps']:.0f} ok req/s")
    b = loadgen.Bisection(max(0.9 * closed["ok_rps"], 2.0), max_probes=6)
    probes: list[dict[str, Any]] = []
    while b.next is not None:
        rate = b.next
        if probes:
            if not probes[-1]["counts"]:
                srv.restart()
                await loadgen.closed_loop(target, 4, 0.5, warmup=0.2)
            await asyncio.sleep(loadgen.PAUSE)
        p = await loadgen.probe(target, rate, slo, seed=b.probes)
        probes.append(p)
        log_probe(p)
        if not p["counts"] and confirm:  # a stall of another job on the shared cores fails
            srv.restart()                # one probe: a rate fails when a second try fails too
            await loadgen.closed_loop(target, 4, 0.5, warmup=0.2)
            await asyncio.sleep(loadgen.PAUSE)
            p = await loadgen.probe(target, rate, slo, seed=100 + b.probes)
            probes.append(p)
            log_probe(p)
        b.record(rate, p["counts"])
    return {"closed_c64_ok_rps": closed["ok_rps"], "max_rate_at_slo": b.lo,
            "probes": [{k: p[k] for k in ("rate", "p50_ms", "p99_ms", "error_rate", "counts")} for p in probes]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="onnx,encoder")
    ap.add_argument("--out", type=Path, default=run.RESULTS / "defaults.json")
    ap.add_argument("--settings", default="",
                    help="workers x threads [x proxies] to run instead of the sweep, e.g. 1x1,2x1,2x1x2")
    ap.add_argument("--confirm", action="store_true", help="probe a failing rate twice before it fails")
    args = ap.parse_args()
    n = cores()
    plan = cpu_plan(n)
    default = (plan.workers, plan.threads, False, RuntimeSettings.model_fields["num_proxies"].default)
    run.WORK.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "JUBAKO_HOME": str(run.WORK / "home"), "JUBAKO_LOG_LEVEL": "WARNING"}
    env.update(run.prepare(env))
    doc: dict[str, Any] = {"command": " ".join(["bench/runtime/defaults.py", *sys.argv[1:]]), "cores": n,
                           "default": label(*default), "load_at_start": run.loadavg(), "models": {}}
    settings = [resolve(s, n) for s in SWEEP]
    if args.settings:  # e.g. 1x1,2x1x2: workers x threads [x proxies], without spinning
        settings = [(int(x[0]), int(x[1]), False, int(x[2]) if len(x) > 2 else 1)
                    for x in (s.split("x") for s in args.settings.split(","))]
    if default not in settings:
        settings.append(default)
    t0 = time.monotonic()
    port = 3950
    for model in args.models.split(","):
        rows: dict[str, Any] = {}
        run.log(f"== {model} (SLO {run.MODELS[model]['slo'] * 1000:.0f} ms), default {label(*default)}")
        for s in settings:
            port += 1
            name = label(*s) + (" (default)" if s == default else "")
            run.log(f"-- {name}")
            load = run.loadavg()
            with server(model, env, port, None if s == default else s) as srv:
                rows[name] = {**asyncio.run(max_rate(model, port, srv, args.confirm)), "load_before": load}
            run.log(f"  max rate at SLO {rows[name]['max_rate_at_slo']:.0f} req/s (load {load})")
        best = max(r["max_rate_at_slo"] for r in rows.values())
        dflt = next(r for k, r in rows.items() if k.endswith("(default)"))["max_rate_at_slo"]
        doc["models"][model] = {"settings": rows, "best": best, "default_vs_best": dflt / best if best else None}
        run.log(f"  {model}: default {dflt:.0f} req/s = {dflt / best if best else 0:.2f}x the best ({best:.0f})")
    doc["load_at_end"] = run.loadavg()
    doc["wall_seconds"] = round(time.monotonic() - t0, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    print("max rate at SLO in req/s (its ratio to the best), closed loop c=64 ok req/s")
    print(f"| setting | {' | '.join(doc['models'])} |")
    names = list(next(iter(doc["models"].values()))["settings"])
    for k in names:
        cells = [f"{m['settings'][k]['max_rate_at_slo']:.0f} ({m['settings'][k]['max_rate_at_slo'] / m['best']:.2f}x), "
                 f"c=64 {m['settings'][k]['closed_c64_ok_rps']:.0f}" for m in doc["models"].values()]
        print(f"| {k} | {' | '.join(cells)} |")
    print(f"load {doc['load_at_start']} -> {doc['load_at_end']}, {doc['wall_seconds']:.0f} s: {args.out}")


if __name__ == "__main__":
    main()
