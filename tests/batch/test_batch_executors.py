"""The two executors of `jubako run` (the service in this process, the runtime's worker
processes) give the same bytes, output and error file (the tensor round trips compare them
in test_batch_roundtrip.py), and the automatic choice follows the documented rule
(docs/batch.md, "Executors")."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from jubako.batch import Options, run
from jubako.batch.runner import choose_executor
from jubako.errors import ConfigError
from jubako.manifest import JSONSpec, TensorSpec, TextSpec

from .conftest import features


def _both(tmp_path: Path, name: str, **kw: object) -> dict[str, tuple[bytes, bytes | None]]:
    got = {}
    for executor in ("workers", "inprocess"):
        out = tmp_path / executor / name
        out.parent.mkdir(exist_ok=True)
        summary = run(Options(output=str(out), executor=executor, progress=False, **kw))  # type: ignore[arg-type]
        assert summary.executor == executor
        errors = Path(str(out) + ".errors.jsonl")
        got[executor] = (out.read_bytes(), errors.read_bytes() if errors.exists() else None)
    return got


def test_json_api_and_bad_rows_same_bytes(tmp_path: Path, torch_bento: str) -> None:
    items: list[object] = [{"values": r.tolist()} for r in features(200, seed=1)]
    items[6] = {"values": [0.5] * 3}  # pydantic refuses it, in the executor
    items[70] = {"other": 1}
    src = tmp_path / "items.jsonl"
    src.write_bytes(b"".join(orjson.dumps(i) + b"\n" for i in items) + b"{not json\n")
    got = _both(tmp_path, "labels.jsonl", bento=torch_bento, api="classify", input=str(src), chunk_rows=64)
    assert got["inprocess"] == got["workers"]
    errors = [orjson.loads(line) for line in (got["workers"][1] or b"").splitlines()]
    assert [e["row"] for e in errors] == [7, 71, 201]


def test_choose_executor() -> None:
    tensor = type("Spec", (), {"input": TensorSpec(dtype="float32", shape=[None, 16])})()
    json_ = type("Spec", (), {"input": JSONSpec(schema={})})()
    text = type("Spec", (), {"input": TextSpec()})()
    assert choose_executor("auto", tensor, None) == "inprocess"
    assert choose_executor("auto", tensor, 4) == "inprocess"  # numpy/onnxruntime/torch release the GIL
    assert choose_executor("auto", json_, None) == "inprocess"
    assert choose_executor("auto", json_, 2) == "workers"  # per-item Python holds the GIL
    assert choose_executor("auto", text, 3) == "workers"
    assert choose_executor("workers", tensor, None) == "workers"
    assert choose_executor("inprocess", json_, 4) == "inprocess"
    with pytest.raises(ConfigError, match="--executor 'threads'"):
        choose_executor("threads", tensor, 1)
