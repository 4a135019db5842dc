"""Fixtures for the batch tests: example bentos as directories, inputs, the reference model."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from jubako.store import Store

FEATURES = 16


def bento_dir(store: Store, name: str) -> str:
    return str(store.bentos.get(name).path)


@pytest.fixture(scope="session")
def torch_bento(example_store: Store) -> str:
    return bento_dir(example_store, "mlp-torch")


@pytest.fixture(scope="session")
def onnx_bento(example_store: Store) -> str:
    return bento_dir(example_store, "mlp-onnx")


@pytest.fixture(autouse=True)
def _batch_env(example_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    # the example bentos resolve their models in the example store
    monkeypatch.setenv("JUBAKO_HOME", str(example_store.home))
    monkeypatch.setenv("JUBAKO_NUM_THREADS", "1")
    for k in list(os.environ):
        if k.startswith("JUBAKO_REGISTRY_") or k in ("JUBAKO_BATCHING", "JUBAKO_DEVICE"):
            monkeypatch.delenv(k)


def features(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, FEATURES)).astype(np.float32)


def feature_table(x: np.ndarray) -> pa.Table:
    return pa.table({"id": np.arange(len(x)), **{f"f{i}": x[:, i] for i in range(FEATURES)}})


class Reference:
    """The example service loaded in this process: the model called row by row."""

    def __init__(self, bento: str):
        import jubako.models
        from jubako.loader import SRC_DIR, import_service, open_bento

        bundle = open_bento(bento)
        src = bundle.path / SRC_DIR
        try:
            service = import_service(src, bundle.manifest.service)
            with jubako.models.bento_context(bundle.path, bundle.manifest):
                self.instance = service.create()
        finally:  # both examples name their modules "service" and "model": forget them
            sys.path.remove(str(src))
            for name, mod in list(sys.modules.items()):
                if (getattr(mod, "__file__", None) or "").startswith(str(src)):
                    del sys.modules[name]
        self.service = service

    def rows(self, api: str, items: Any) -> list[Any]:
        fn = getattr(self.instance, api)
        if isinstance(items, np.ndarray):
            return [np.asarray(fn(items[i : i + 1]))[0] for i in range(len(items))]
        return [fn([item])[0] for item in items]


_refs: dict[str, Reference] = {}


@pytest.fixture
def reference() -> Any:
    def get(bento: str) -> Reference:
        if bento not in _refs:
            _refs[bento] = Reference(bento)
        return _refs[bento]

    return get


def jubako_cli() -> list[str]:
    return [sys.executable, "-c", "from jubako.cli import main; main()"]


def run_cli(*args: str, check_codes: tuple[int, ...] = (0,), **kw: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*jubako_cli(), "run", *args, "--no-progress"], capture_output=True, text=True,
                          timeout=240, **kw)
    assert proc.returncode in check_codes, proc.stderr
    return proc


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    from jubako.runtime.serve import free_port
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def read_output(path: Path) -> pa.Table:
    import pyarrow.csv as pcsv
    import pyarrow.json as pjson
    import pyarrow.parquet as pq

    s = str(path)
    if s.endswith(".parquet"):
        return pq.read_table(s)
    if s.endswith(".csv"):
        return pcsv.read_csv(s)
    return pjson.read_json(s)
