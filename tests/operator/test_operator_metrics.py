"""The operator's Prometheus metrics, scraped over HTTP from the real operator."""

from __future__ import annotations

import socket

import httpx
import pytest
from harness import Operator, wait_for
from jubako.operator.metrics import Metrics
from prometheus_client.parser import text_string_to_metric_families
from test_operator_e2e import _create

from jubako.errors import JubakoError

pytestmark = pytest.mark.timeout(120)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _samples(port: int) -> dict[tuple[str, tuple], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_reconciles_api_calls_and_child_writes_are_counted(cluster, settings):
    port = _free_port()
    operator = Operator(cluster, settings.model_copy(update={"metrics_port": port}))
    try:
        _create(cluster)
        samples = wait_for("a few passes", lambda: (s := _samples(port)).get(
            ("jubako_operator_reconciles_total", (("result", "ok"),)), 0) >= 3 and s)
        assert samples[("jubako_operator_child_writes_total", (("action", "create"),))] >= 6
        assert samples[("jubako_operator_api_requests_total", (("verb", "GET"),))] >= 3
        assert samples[("jubako_operator_reconcile_seconds_count", ())] >= 3
    finally:
        operator.stop()
    with pytest.raises(httpx.TransportError):  # stopped with the operator
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_a_metrics_port_in_use_is_a_clear_error():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(JubakoError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            Metrics().serve(port, host="127.0.0.1")
