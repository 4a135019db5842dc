"""`jubako serve --config FILE` over real HTTP: the file's per-API settings take effect
in the proxy, a flag beats the file, a variable beats the file, and a file naming an API
the bento lacks stops serve before anything starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from jubako.store import Store

from .conftest import serve

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]  # whole jubako serve processes

CONFIG = """\
port: 1            # the --port flag wins
num_workers: 3     # the --workers flag wins
batching:
  slow: {max_queue_items: 3}
  scale: {max_queue_items: 3}
  linger: {max_latency_ms: 50, inflight_timeout_s: 0.1}   # 300 ms per item
metrics_latency_buckets: [0.5, 30, 120]
"""


def test_the_config_file_sets_per_api_batching_under_flags_and_environment(runtime_store: Store, tmp_path: Path) -> None:
    cfg = tmp_path / "jubako-runtime.yaml"
    cfg.write_text(CONFIG)
    env = {"JUBAKO_BATCHING": json.dumps({"scale": {"max_queue_items": 5}})}
    with serve(runtime_store, "toy", workers=1, env=env, args=("--config", str(cfg))) as server:
        assert server.workers_ready() == 1 and len(server.children("worker")) == 1
        # the file's queue bound (the bento's would be 16 x 4): also the most items per request
        r = httpx.post(server.url + "/slow", json=[1, 2, 3, 4], timeout=30)
        assert r.status_code == 413 and "at most 3 items per request" in r.text, r.text
        assert httpx.post(server.url + "/slow", json=[1, 2, 3], timeout=30).json() == [2, 4, 6]
        # JUBAKO_BATCHING beats the file's 3 for this API
        assert httpx.post(server.url + "/scale", json=[1, 2, 3, 4], timeout=30).json() == [2, 4, 6, 8]
        assert 'jubako_request_seconds_bucket{api="slow",le="120.0"}' in httpx.get(server.url + "/metrics").text
        # this API's own in-flight timeout: its worker takes 300 ms, the file allows 0.1 s
        r = httpx.post(server.url + "/linger", json=[1], timeout=30)
        assert r.status_code == 504 and "did not answer within 0.1 s" in r.text, r.text


@pytest.mark.parametrize("text, message", [
    ("batching:\n  predcit: {max_batch_size: 2}\n", "batching.predcit: the bento toy:"),
    ("max_batch: 2\n", "unknown key(s) max_batch"),
])
def test_serve_refuses_a_bad_config_file_naming_the_key(runtime_store: Store, tmp_path: Path,
                                                         text: str, message: str) -> None:
    cfg = tmp_path / "jubako-runtime.yaml"
    cfg.write_text(text)
    r = subprocess.run(
        [sys.executable, "-c", "from jubako.cli import main; main()", "serve", "toy", "--config", str(cfg)],
        env={**os.environ, "JUBAKO_HOME": str(runtime_store.home)},
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 1 and message in r.stderr, r.stderr
    if "unknown" in message:
        assert str(cfg) in r.stderr
