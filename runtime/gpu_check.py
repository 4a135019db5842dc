"""GPU check: ``python -m jubako.runtime.gpu_check`` on a machine with CUDA.

Builds both example bentos in a temporary JUBAKO_HOME, serves each with JUBAKO_DEVICE=cuda,
checks that torch runs on CUDA and onnxruntime has CUDAExecutionProvider active, that the
pinned-memory path of TorchTensor inputs works, and that served results equal CPU ones.
Exits non-zero on any failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    import httpx
    import onnxruntime as ort
    import torch

    assert torch.cuda.is_available(), "torch sees no CUDA device"
    print("torch", torch.__version__, torch.cuda.get_device_name(0))
    print("onnxruntime", ort.__version__, ort.get_available_providers())
    home = tempfile.mkdtemp(prefix="jubako-gpu-")
    os.environ["JUBAKO_HOME"] = home
    for ex in ("mlp_torch", "mlp_onnx"):
        subprocess.run([sys.executable, str(ROOT / "examples" / ex / "save_model.py")], check=True, capture_output=True)
    from jubako.build import build

    for ex in ("mlp_torch", "mlp_onnx"):
        build(ROOT / "examples" / ex)

    import jubako.models
    from jubako.loader import load_service, open_bento
    from jubako.workers.executor import ApiRunner

    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 16)).astype(np.float32)
    ok = True
    for bento in ("mlp-torch", "mlp-onnx"):
        results = {}
        for device in ("cpu", "cuda"):
            os.environ["JUBAKO_DEVICE"] = device
            for name in ("service", "model"):
                sys.modules.pop(name, None)
            b = open_bento(bento)
            svc = load_service(b)
            with jubako.models.bento_context(b.path, b.manifest):
                inst = svc.create()
            if bento == "mlp-torch":
                dev = next(inst.model.parameters()).device
                print(f"{bento} [{device}]: torch module on {dev}")
                ok &= dev.type == device
                # the pinned-memory host->device path of TorchTensor inputs
                from jubako.manifest import TensorSpec

                api = svc.apis["predict"]
                runner = ApiRunner(api, inst, device)
                runner.input = TensorSpec(dtype="float32", shape=[None, 16], container="torch")
                from jubako.workers.executor import _Torch
                from jubako.workers.staging import PinnedStaging

                staging = None
                if device == "cuda":
                    staging = PinnedStaging(lambda n, dt: torch.empty(n, dtype=dt).pin_memory(), torch.cuda.Event)
                runner._torch = _Torch(torch.device(device), staging)
                # several same-sized batches staged back to back, none synchronised: each
                # must arrive intact (a shared pinned buffer would be overwritten in flight)
                xs = [np.full_like(x, i) for i in range(12)]
                ts = [runner._to_torch(a) for a in xs]
                intact = all(torch.equal(t.cpu(), torch.from_numpy(a)) for t, a in zip(ts, xs, strict=True))
                print(f"  TorchTensor inputs staged to {ts[0].device}; 12 in flight intact: {intact}")
                ok &= ts[0].device.type == device and intact
            else:
                prov = inst.model.providers
                print(f"{bento} [{device}]: onnxruntime providers {prov}")
                ok &= (prov[0] == "CUDAExecutionProvider") == (device == "cuda")
            # served through the real runtime
            port = _free()
            env = {**os.environ, "JUBAKO_DEVICE": device}
            proc = subprocess.Popen(
                [sys.executable, "-c", "from jubako.cli import main; main()", "serve", bento,
                                                "--port", str(port)], env=env)
            try:
                _wait(f"http://127.0.0.1:{port}/readyz")
                r = httpx.post(f"http://127.0.0.1:{port}/predict", json=x.tolist(), timeout=30)
                r.raise_for_status()
                results[device] = np.asarray(r.json(), dtype=np.float32)
            finally:
                proc.send_signal(2)
                proc.wait(60)
        same = np.allclose(results["cpu"], results["cuda"], rtol=1e-3, atol=1e-5)
        print(f"{bento}: served cuda == cpu: {same} (max abs diff {np.abs(results['cpu'] - results['cuda']).max():.2e})")
        ok &= same
    print("GPU CHECK", "PASSED" if ok else "FAILED")
    sys.exit(0 if ok else 1)


def _free() -> int:
    from jubako.runtime.serve import free_port

    return free_port()


def _wait(url: str, timeout: float = 120) -> None:
    import time

    import httpx

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if httpx.get(url).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} not ready after {timeout}s")


if __name__ == "__main__":
    main()
