"""Idle intra-op threads do not spin-wait unless JUBAKO_THREAD_SPINNING says so: in
onnxruntime (the session's allow_spinning) and in torch's OpenMP (OMP_WAIT_POLICY)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import jubako
from jubako.store import Store

from .test_onnx_outputs import one_output


@pytest.mark.parametrize(("env", "spinning"), [(None, "0"), ("1", "1"), ("0", "0")])
def test_onnx_sessions_spin_only_when_asked(store: Store, monkeypatch: pytest.MonkeyPatch,
                                             env: str | None, spinning: str) -> None:
    if env is None:
        monkeypatch.delenv("JUBAKO_THREAD_SPINNING", raising=False)
    else:
        monkeypatch.setenv("JUBAKO_THREAD_SPINNING", env)
    jubako.models.onnx.save("one", one_output(), store=store)
    model = jubako.models.load("one", store=store)
    opts = model.session.get_session_options()
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == spinning


@pytest.mark.parametrize(("env", "policy"), [({}, "PASSIVE"), ({"JUBAKO_THREAD_SPINNING": "1"}, "unset"),
                                             ({"OMP_WAIT_POLICY": "ACTIVE"}, "ACTIVE")])
def test_configure_threads_makes_openmp_threads_sleep_before_torch_loads(env: dict[str, str], policy: str) -> None:
    # a fresh process: OpenMP reads OMP_WAIT_POLICY once, when torch loads it
    code = ("import os, sys; from jubako.workers.executor import configure_threads; configure_threads(); "
            "assert 'torch' in sys.modules; print(os.environ.get('OMP_WAIT_POLICY', 'unset'))")
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "JUBAKO_THREAD_SPINNING")}
    out = subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == policy
