"""`make bench-runtime`: serve the same models with jubako, BentoML 1.4 (defaults and tuned)
and a plain FastAPI endpoint, load them from one asyncio generator, write bench/results/.

    .venv/bin/python bench/runtime/run.py [--models onnx,encoder] [--systems ...] [--quick]

The generator (this process) runs on the same machine as the servers, the same way for
every system. Work files (the jubako store, model files, server logs) go to $BENCH_WORK
(default /tmp/jubako-bench).
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import platform
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import loadgen
import numpy as np
import orjson

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RESULTS = ROOT / "bench" / "results"
VENV = ROOT / ".venv" / "bin"
BENTO_VENV = Path(os.environ.get("BENCH_BENTOML_VENV", ROOT / "bench" / ".venv-bentoml")) / "bin"
WORK = Path(os.environ.get("BENCH_WORK", "/tmp/jubako-bench"))
CORES = os.cpu_count() or 1

MODELS: dict[str, dict[str, Any]] = {
    "onnx": {"slo": 0.050, "shape": (16,), "jubako": "mlp-onnx", "bento": "bento_services:MLPOnnx",
             "title": "MLP (ONNX example, 16 -> 4)"},
    "encoder": {"slo": 0.200, "shape": (32, 16), "jubako": "bench-encoder", "bento": "bento_services:BenchEncoder",
                "title": "4-layer encoder (torch, 32x16 -> 4)"},
}
SYSTEMS = ["jubako", "fastapi", "bentoml-default", "bentoml-tuned"]
# jubako serve --proxies 2 (one worker each): for the HTTP-bound MLP only, by default
PROXIES_SYSTEM = "jubako-2proxies"
DEFAULT_SYSTEMS = {"onnx": ["jubako", PROXIES_SYSTEM, *SYSTEMS[1:]], "encoder": SYSTEMS}
CONCURRENCY = [1, 4, 16, 64]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def sh(argv: list[str], **kw: Any) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kw).stdout


# --- artifacts ---------------------------------------------------------------------------


def prepare(env: dict[str, str]) -> dict[str, str]:
    """Save and build both models in a private jubako store; return the model file paths."""
    home = Path(env["JUBAKO_HOME"])
    onnx = glob.glob(str(home / "models" / "mlp-onnx" / "**" / "*.onnx"), recursive=True)
    if not onnx:
        log("saving the ONNX example model")
        sh([str(VENV / "python"), str(ROOT / "examples/mlp_onnx/save_model.py")], env=env, cwd=ROOT)
        onnx = glob.glob(str(home / "models" / "mlp-onnx" / "**" / "*.onnx"), recursive=True)
    weights = WORK / "encoder.pt"
    if not weights.exists() or not (home / "models" / "bench-encoder").exists():
        log("saving the encoder model")
        sh([str(VENV / "python"), str(HERE / "encoder/save_model.py"), "--weights", str(weights)], env=env, cwd=ROOT)
    for d in ("examples/mlp_onnx", "bench/runtime/encoder"):
        sh([str(VENV / "jubako"), "build", str(ROOT / d)], env=env, cwd=ROOT)
    return {"BENCH_ONNX": sorted(onnx)[-1], "BENCH_ENCODER_WEIGHTS": str(weights)}


def bodies(model: str, n: int = 64) -> list[bytes]:
    """The same inputs for every system: one item per request, seeded."""
    rng = np.random.default_rng(1234)
    shape = MODELS[model]["shape"]
    return [orjson.dumps(rng.standard_normal((1, *shape)).astype(np.float32), option=orjson.OPT_SERIALIZE_NUMPY)
            for _ in range(n)]


# --- servers -----------------------------------------------------------------------------


class Server:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], cwd: Path, port: int, ready_path: str):
        self.name, self.argv, self.env, self.cwd, self.port, self.ready_path = name, argv, env, cwd, port, ready_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.logfile = WORK / "logs" / f"{name}.log"

    def restart(self) -> None:
        self.__exit__()
        self.__enter__()

    def __enter__(self) -> Server:
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.logfile, "ab")
        self.proc = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}); see {self.logfile}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{self.ready_path}", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.25)
        self.__exit__()
        raise RuntimeError(f"{self.name} not ready after 180 s; see {self.logfile}")

    def __exit__(self, *exc: Any) -> None:
        p = self.proc
        if p is None or p.poll() is not None:
            return
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        time.sleep(1.0)  # let the ports and the CPU settle


def server(system: str, model: str, env: dict[str, str], port: int, jubako_workers: int) -> Server:
    spec = MODELS[model]
    if system == "jubako":  # --jubako-workers 0: no flag, jubako serve's own defaults (workers, proxies)
        workers = ["--workers", str(jubako_workers)] if jubako_workers else []
        return Server(f"{system}-{model}", [str(VENV / "jubako"), "serve", spec["jubako"], "--port", str(port),
                                             *workers], env, ROOT, port, "/readyz")
    if system == PROXIES_SYSTEM:
        return Server(f"{system}-{model}", [str(VENV / "jubako"), "serve", spec["jubako"], "--port", str(port),
                                             "--workers", str(max(2, jubako_workers)), "--proxies", "2"],
                      env, ROOT, port, "/readyz")
    if system == "fastapi":
        e = {**env, "BENCH_MODEL": model, "BENCH_PROCESSES": "2"}
        return Server(f"{system}-{model}", [str(VENV / "uvicorn"), "fastapi_app:app", "--port", str(port),
                                             "--workers", "2", "--loop", "uvloop", "--http", "httptools",
                                             "--no-access-log", "--log-level", "warning", "--backlog", "4096"],
                      e, HERE, port, "/readyz")
    e = {**env, "BENTOML_HOME": str(WORK / "bentoml"), "BENTOML_DO_NOT_TRACK": "true"}
    e.pop("BENCH_BENTO_WORKERS", None)
    if system == "bentoml-tuned":
        e["BENCH_BENTO_WORKERS"] = str(CORES)
        e["BENCH_BENTO_THREADS"] = "1"
    return Server(f"{system}-{model}", [str(BENTO_VENV / "bentoml"), "serve", spec["bento"], "--port", str(port)],
                  e, HERE, port, "/readyz")


# --- one system --------------------------------------------------------------------------


async def measure(system: str, model: str, port: int, quick: bool, srv: Server | None = None,
                  capacity: float | None = None) -> dict[str, Any]:
    slo = MODELS[model]["slo"]
    target = loadgen.Target("127.0.0.1", port, "/predict", bodies(model))
    res: dict[str, Any] = {"load_before": loadavg()}
    # check the answer once, and warm up (the cost model learns, lazy inits happen)
    await loadgen.closed_loop(target, 4, 1.0 if not quick else 0.5, warmup=0.2)
    if capacity is not None:  # --capacity: only the overload step, against a given max rate
        res["max_rate_at_slo"] = capacity
        return {**res, **await _overload(target, capacity, slo, quick)}
    closed = {}
    for c in CONCURRENCY:
        r = await loadgen.closed_loop(target, c, 3.0 if not quick else 1.0)
        closed[str(c)] = r
        log(f"  closed c={c:<3d} {r['ok_rps']:8.1f} ok/s  p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms  "
            f"codes {r['codes']}")
    res["closed"] = closed
    guess = 0.9 * max(r["ok_rps"] for r in closed.values())
    async def reset() -> None:  # a fresh server after a failed probe, warmed the same way
        if srv is not None:
            srv.restart()
            await loadgen.closed_loop(target, 4, 0.5, warmup=0.2)

    max_rate, probes = await loadgen.find_max_rate(target, max(guess, 2.0), slo, log=log, reset=reset)
    res["max_rate_at_slo"] = max_rate
    res["probes"] = probes
    if max_rate > 0:
        res.update(await _overload(target, max_rate, slo, quick))
    res["load_after"] = loadavg()
    return res


async def _overload(target: loadgen.Target, max_rate: float, slo: float, quick: bool) -> dict[str, Any]:
    await asyncio.sleep(loadgen.PAUSE)
    ov = await loadgen.overload(target, 1.5 * max_rate, slo, seconds=5.0 if not quick else 2.0)
    ov["share_of_capacity_within_slo"] = ov["served_within_slo_per_s"] / max_rate
    log(f"  overload {ov['offered_rate']:.0f} req/s: {ov['share_of_capacity_within_slo'] * 100:.0f}% of capacity "
        f"within SLO, codes {ov['codes']}, error p50/p99 {ov['error_p50_ms']:.1f}/{ov['error_p99_ms']:.1f} ms, "
        f"503 from the write p50/p99 {ov['refused_p50_from_send_ms']:.1f}/{ov['refused_p99_from_send_ms']:.1f} ms, "
        f"ok p99 {ov['ok_p99_ms']:.1f} ms, generator lag p99 {ov['lag_p99_ms']:.1f} ms")
    return {"overload": ov, "load_after": loadavg()}


def raw(model: str, env: dict[str, str], seconds: float) -> dict[str, Any]:
    """The best of one process with all cores' threads and one single-threaded process
    per core running side by side (torch on this machine does better with the latter)."""
    argv = [str(VENV / "python"), str(HERE / "raw_throughput.py"), model, str(seconds)]
    one = json.loads(sh(argv, env=env, cwd=HERE).strip().splitlines()[-1])
    procs = [subprocess.Popen(argv, env={**env, "BENCH_RAW_THREADS": "1"}, cwd=HERE, stdout=subprocess.PIPE)
             for _ in range(CORES)]
    each = [json.loads(p.communicate()[0].decode().strip().splitlines()[-1])["items_per_s"] for p in procs]
    per_core = {"processes": CORES, "threads": 1, "items_per_s": sum(each)}
    best = max(one, per_core, key=lambda r: r["items_per_s"])
    return {"items_per_s": best["items_per_s"], "batch": 64, "best": best, "one_process": one,
            "process_per_core": per_core}


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for model, r in results.items():
        s = r["systems"]
        if "jubako" not in s:
            continue
        j = s["jubako"]
        x: dict[str, Any] = {}
        jr = j["max_rate_at_slo"]
        if PROXIES_SYSTEM in s and "fastapi" in s and s["fastapi"].get("max_rate_at_slo"):
            x["proxies2_vs_fastapi"] = s[PROXIES_SYSTEM].get("max_rate_at_slo", 0) / s["fastapi"]["max_rate_at_slo"]
        for other, key in (("fastapi", "vs_fastapi"), ("bentoml-tuned", "vs_bentoml_tuned"),
                           ("bentoml-default", "vs_bentoml_default")):
            if other in s:
                o = s[other]["max_rate_at_slo"]
                x[key] = jr / o if o else None
        if r.get("raw"):
            x["vs_raw"] = jr / r["raw"]["items_per_s"]
        if "fastapi" in s:
            x["c1_p50_delta_ms"] = j["closed"]["1"]["p50_ms"] - s["fastapi"]["closed"]["1"]["p50_ms"]
        if "overload" in j:
            x["overload_share_within_slo"] = j["overload"]["share_of_capacity_within_slo"]
            x["overload_codes"] = j["overload"]["codes"]
        out[model] = x
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="onnx,encoder")
    ap.add_argument("--systems", default=None,
                    help=f"default: {','.join(DEFAULT_SYSTEMS['onnx'])} (onnx), {','.join(SYSTEMS)} (encoder)")
    ap.add_argument("--jubako-workers", default="onnx=1,encoder=2",
                    help="worker processes of `jubako serve` per model (0: no --workers flag, serve's defaults)")
    ap.add_argument("--quick", action="store_true", help="short runs, to debug the harness")
    ap.add_argument("--capacity", default="",
                    help="e.g. onnx=9000,encoder=600: skip the closed loop and the bisection and run only the "
                         "overload step at 1.5x this max rate (to iterate on overload; not a recorded run)")
    ap.add_argument("--no-raw", action="store_true", help="skip the raw in-process throughput")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    t_start = time.monotonic()
    jw = {k: int(v) for k, v in (p.split("=") for p in args.jubako_workers.split(","))}
    cap = {k: float(v) for k, v in (p.split("=") for p in args.capacity.split(",") if p)}
    WORK.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "JUBAKO_HOME": str(WORK / "home"), "JUBAKO_LOG_LEVEL": "WARNING"}
    env.update(prepare(env))
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    doc: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": CORES, "cpu": _cpu_name(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "command": "make bench-runtime (" + " ".join(["bench/runtime/run.py", *sys.argv[1:]]) + ")",
        "load_at_start": loadavg(),
        "settings": {"max_batch_size": 64, "slo_ms": {m: MODELS[m]["slo"] * 1000 for m in MODELS},
                     "jubako_workers": jw, "fastapi_processes": 2, "bentoml_tuned": {"workers": CORES, "threads": 1},
                     "threads_rule": "intra-op threads = cores / worker processes, inter-op 1 (every system)"},
        "versions": _versions(),
        "models": {},
    }
    port = 3900
    for model in args.models.split(","):
        slo = MODELS[model]["slo"]
        log(f"== {model} (SLO {slo * 1000:.0f} ms)")
        entry: dict[str, Any] = {"title": MODELS[model]["title"], "slo_ms": slo * 1000, "systems": {}}
        if not args.no_raw:
            entry["raw"] = raw(model, env, 2.0 if args.quick else 5.0)
            log(f"  raw batched throughput {entry['raw']['items_per_s']:.0f} items/s")
        for system in (args.systems.split(",") if args.systems else DEFAULT_SYSTEMS[model]):
            port += 1
            log(f"-- {system} on :{port}")
            try:
                with server(system, model, env, port, jw.get(model, 1)) as srv:
                    entry["systems"][system] = asyncio.run(measure(system, model, port, args.quick, srv,
                                                                   cap.get(model)))
            except Exception as e:  # a system that cannot run is reported, not fatal
                log(f"  FAILED: {e}")
                entry["systems"][system] = {"failed": str(e)}
            log(f"  max rate at SLO: {entry['systems'][system].get('max_rate_at_slo', 0):.1f} req/s")
        doc["models"][model] = entry
    doc["ratios"] = ratios({m: v for m, v in doc["models"].items()})
    doc["load_at_end"] = loadavg()
    doc["wall_seconds"] = round(time.monotonic() - t_start, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "runtime.json").write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    if cap:  # an overload-only run has no tables to draw
        log(f"done in {doc['wall_seconds']:.0f} s: {args.out}/runtime.json")
        return
    report = [str(BENTO_VENV / "python"), str(HERE / "report.py"), str(args.out / "runtime.json"), str(args.out)]
    subprocess.run(report, check=True, cwd=HERE)
    log(f"done in {doc['wall_seconds']:.0f} s: {args.out}/runtime.json, runtime.md, runtime.png")


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _versions() -> dict[str, str]:
    def ver(py: Path, mods: str) -> dict[str, str]:
        code = ("import importlib.metadata as m, json; print(json.dumps({k: m.version(k) for k in "
                f"{mods.split(',')!r}}}))")
        try:
            return json.loads(sh([str(py), "-c", code], cwd=HERE))
        except Exception:
            return {}
    return {"jubako_venv": ver(VENV / "python", "torch,onnxruntime,numpy,uvicorn,fastapi,orjson"),
            "bentoml_venv": ver(BENTO_VENV / "python", "bentoml,torch,onnxruntime,numpy")}


if __name__ == "__main__":
    main()
