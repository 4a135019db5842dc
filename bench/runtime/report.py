"""runtime.json -> runtime.md (tables) and runtime.png (p50/p99 latency against offered rate).

    bench/.venv-bentoml/bin/python bench/runtime/report.py bench/results/runtime.json bench/results
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def f(x: Any, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and x != x):
        return "-"
    return f"{x:.{digits}f}"


def markdown(doc: dict[str, Any]) -> str:
    out = [f"# Runtime benchmark ({doc['date']})", "",
           f"Machine: {doc['machine']['cpus']} CPUs ({doc['machine']['cpu']}), {doc['machine']['platform']}; "
           f"load average at start {doc['load_at_start']}, at end {doc['load_at_end']}; "
           f"wall time {doc['wall_seconds']:.0f} s.", f"Command: `{doc['command']}`.", ""]
    for m in doc["models"].values():
        out += [f"## {m['title']}: SLO p99 <= {m['slo_ms']:.0f} ms", ""]
        raw = m.get("raw")
        if raw:
            one, per = raw["one_process"], raw["process_per_core"]
            out += [f"Raw batched throughput in-process (batch 64): **{raw['items_per_s']:.0f} items/s** (the best of "
                    f"one process with {one['threads']} threads: {one['items_per_s']:.0f}/s, and {per['processes']} "
                    f"single-threaded processes side by side: {per['items_per_s']:.0f}/s).", ""]
        out += ["| system | max rate at SLO (req/s) | c=1 p50 / p99 (ms) | c=4 | c=16 | c=64 (ok req/s, p50 / p99 ms) "
                "| errors in closed loop | overload 150 %: within SLO / capacity | overload codes | 503 p50 / p99 (ms) "
                "| 503 from the write p50 / p99 (ms) | generator's own lag p99 (ms) |",
                "| --- | ---: | --- | --- | --- | --- | --- | ---: | --- | ---: | ---: | ---: |"]
        for name, s in m["systems"].items():
            if "failed" in s:
                out.append(f"| {name} | failed: {s['failed']} | | | | | | | | | |")
                continue
            cl = s["closed"]

            def cell(c: str, cl: dict[str, Any] = cl) -> str:
                r = cl[c]
                return f"{r['ok_rps']:.0f}/s, {f(r['p50_ms'], 2)} / {f(r['p99_ms'], 1)}"
            errs = sum(r["errors"] for r in cl.values())
            ov = s.get("overload", {})
            out.append(
                f"| {name} | **{s['max_rate_at_slo']:.0f}** | {cell('1')} | {cell('4')} | {cell('16')} | {cell('64')} "
                f"| {errs} | {f(ov.get('share_of_capacity_within_slo', float('nan')) * 100, 0)} % "
                f"| {ov.get('codes', '-')} | {f(ov.get('error_p50_ms'))} / {f(ov.get('error_p99_ms'))} "
                f"| {f(ov.get('refused_p50_from_send_ms'))} / {f(ov.get('refused_p99_from_send_ms'))} "
                f"| {f(ov.get('lag_p99_ms'))} |")
        out.append("")
    out += ["## Ratios against the targets", "", "| model | jubako / FastAPI (>= 1.5) | jubako / BentoML tuned (>= 4) "
            "| jubako / BentoML defaults | jubako / raw (>= 0.8, encoder) | c=1 p50 - FastAPI's (<= 1 ms) "
            "| overload: capacity served within SLO (>= 95 %) | 2 proxies / FastAPI |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for model, r in doc.get("ratios", {}).items():
        out.append(f"| {model} | {f(r.get('vs_fastapi'), 2)} | {f(r.get('vs_bentoml_tuned'), 2)} "
                   f"| {f(r.get('vs_bentoml_default'), 2)} | {f(r.get('vs_raw'), 2)} | {f(r.get('c1_p50_delta_ms'), 2)} "
                   f"| {f((r.get('overload_share_within_slo') or float('nan')) * 100, 0)} % "
                   f"| {f(r.get('proxies2_vs_fastapi'), 2)} |")
    return "\n".join(out) + "\n"


def plot(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(doc["models"])
    fig, axes = plt.subplots(1, len(models), figsize=(7 * len(models), 5), squeeze=False)
    colors = {"jubako": "tab:blue", "jubako-2proxies": "tab:purple", "fastapi": "tab:green", "bentoml-default": "tab:red", "bentoml-tuned": "tab:orange"}
    for ax, model in zip(axes[0], models, strict=True):
        m = doc["models"][model]
        for name, s in m["systems"].items():
            if "failed" in s:
                continue
            pts = sorted((p["rate"], p["p50_ms"], p["p99_ms"]) for p in s["probes"])
            if "overload" in s:
                ov = s["overload"]
                pts.append((ov["offered_rate"], float("nan"), ov["ok_p99_ms"]))
                pts.sort()
            xs = [p[0] for p in pts]
            c = colors.get(name)
            ax.plot(xs, [p[2] for p in pts], "o-", color=c, label=f"{name} p99")
            ax.plot(xs, [p[1] for p in pts], "x--", color=c, alpha=0.6, label=f"{name} p50")
        ax.axhline(m["slo_ms"], color="gray", linestyle=":", label="SLO")
        top = max((p["rate"] for s in m["systems"].values() for p in s.get("probes", [])), default=0)
        if m.get("raw") and m["raw"]["items_per_s"] <= 3 * top:  # off the chart for the tiny MLP
            ax.axvline(m["raw"]["items_per_s"], color="black", linestyle="-.", alpha=0.5, label="raw batched")
        ax.set_yscale("log")
        ax.set_xlabel("offered rate (req/s, Poisson)")
        ax.set_ylabel("latency from scheduled send (ms)")
        ax.set_title(f"{m['title']}, SLO {m['slo_ms']:.0f} ms")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"jubako vs BentoML vs FastAPI, {doc['machine']['cpus']} CPUs, {doc['date']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    doc = json.loads(src.read_text())
    (out / "runtime.md").write_text(markdown(doc))
    plot(doc, out / "runtime.png")


if __name__ == "__main__":
    main()
