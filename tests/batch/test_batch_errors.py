"""Bad rows do not stop a run: each goes to the error file with its row number and the
message, its output row has an empty result, and the exit code says some rows failed."""

from __future__ import annotations

import json
from pathlib import Path

import orjson

from jubako.batch.runner import locate

from .conftest import read_output, run_cli


def test_bad_rows_jsonl(tmp_path: Path, onnx_bento: str) -> None:
    rows = [json.dumps({"id": i, "x": [0.1 * i] * 16}) for i in range(200)]
    rows[2] = json.dumps({"id": 2, "x": [1, 2, 3]})  # wrong length
    rows[4] = "{not json"
    rows[5] = json.dumps({"id": 5, "x": [1, "a"] + [0] * 14})  # not a number
    rows[7] = ""  # blank line
    rows[150] = json.dumps({"id": 150})  # no features
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(rows) + "\n")
    out = tmp_path / "out.jsonl"
    proc = run_cli(onnx_bento, "--input", str(src), "--output", str(out), "--keep-columns", "id",
                   "--chunk-rows", "64", check_codes=(2,))
    assert "195 ok, 5 failed" in proc.stderr
    errors = [orjson.loads(line) for line in (tmp_path / "out.jsonl.errors.jsonl").read_text().splitlines()]
    assert [e["row"] for e in errors] == [3, 5, 6, 8, 151]  # 1-based: row n is line n
    assert "expected 16 values" in errors[0]["error"]
    assert "not valid JSON" in errors[1]["error"]
    assert errors[2]["error"].startswith("x:")
    assert errors[3]["error"] == "empty line"
    assert errors[4]["error"] == "x: missing value"
    table = read_output(out)
    assert table.num_rows == 200
    results = table.column("predict").to_pylist()
    assert [i for i, r in enumerate(results) if r is None] == [2, 4, 5, 7, 150]


def test_bad_rows_csv_and_json_api(tmp_path: Path, torch_bento: str) -> None:
    header = "id," + ",".join(f"f{i}" for i in range(16))
    lines = [header] + [f"{i}," + ",".join(["0.5"] * 16) for i in range(100)]
    lines[11] = "10," + ",".join(["oops"] + ["0.5"] * 15)  # row 11
    lines[21] = "20,1,2,3"  # row 21: wrong field count
    lines[31] = "30," + ",".join([""] + ["0.5"] * 15)  # row 31: empty value
    src = tmp_path / "in.csv"
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.csv"
    run_cli(torch_bento, "--api", "predict", "--input", str(src), "--output", str(out), "--keep-columns", "id",
            "--chunk-rows", "40", check_codes=(2,))
    errors = [orjson.loads(line) for line in (tmp_path / "out.csv.errors.jsonl").read_text().splitlines()]
    assert [(e["row"], e["error"]) for e in errors] == [
        (11, "f0: 'oops' is not a float32 number"), (21, "expected 17 fields, got 4"), (31, "f0: missing value"),
    ]
    table = read_output(out)
    assert table.num_rows == 100 and table.column("predict_0").null_count == 3
    # a JSON API: pydantic's message in the worker, like an HTTP 422
    items = [{"values": [0.5] * 16}] * 10
    items[6] = {"values": [0.5] * 3}
    src = tmp_path / "items.jsonl"
    src.write_bytes(b"".join(orjson.dumps(i) + b"\n" for i in items))
    out = tmp_path / "labels.jsonl"
    run_cli(torch_bento, "--api", "classify", "--input", str(src), "--output", str(out), check_codes=(2,))
    errors = [orjson.loads(line) for line in (tmp_path / "labels.jsonl.errors.jsonl").read_text().splitlines()]
    assert [e["row"] for e in errors] == [7]
    assert errors[0]["error"].startswith("row 7, field values: List should have at least 16 items")
    results = [orjson.loads(line)["classify"] for line in out.read_text().splitlines()]
    assert results[6] is None and all(isinstance(r["label"], int) for i, r in enumerate(results) if i != 6)


def test_locate_names_row_and_field() -> None:
    assert locate("body[0].values[3]: Input should be a valid number; body[0].x: Field required", 9) == (
        "row 9, field values[3]: Input should be a valid number; row 9, field x: Field required")
    assert locate("body[0]: Input should be a valid dictionary", 2) == "row 2: Input should be a valid dictionary"
    assert locate("body: not valid JSON: line 1", 4) == "row 4: not valid JSON: line 1"
    # the API's own messages are left as they are
    assert locate("API 'classify': ValueError: somebody.x: no", 2) == "API 'classify': ValueError: somebody.x: no"
