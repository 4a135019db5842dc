"""JSON results that are objects become typed columns in CSV and Parquet outputs (not
JSON text); their types come from the API's output schema."""

from __future__ import annotations

from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.csv as pcsv

from jubako.batch.objects import object_fields, struct_column

from .conftest import features, run_cli

PREDICTION = {
    "$defs": {
        "Prediction": {
            "type": "object",
            "properties": {
                "label": {"type": "integer"}, "probability": {"type": "number"},
                "name": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                "ok": {"type": "boolean"}, "tags": {"type": "array", "items": {"type": "string"}},
            },
        },
    },
    "type": "array", "items": {"$ref": "#/$defs/Prediction"},
}


def test_object_fields_from_the_schema() -> None:
    fields = object_fields(PREDICTION, batchable=True)
    assert fields is not None
    assert [(f.name, f.type, f.json) for f in fields] == [
        ("label", pa.int64(), False), ("probability", pa.float64(), False), ("name", pa.string(), False),
        ("ok", pa.bool_(), False), ("tags", pa.string(), True),
    ]
    single = {"$defs": PREDICTION["$defs"], "$ref": "#/$defs/Prediction"}
    assert object_fields(single, batchable=False) == fields
    assert object_fields({"type": "array", "items": {"type": "number"}}, batchable=True) is None
    assert object_fields({"type": "array", "items": {"type": "object"}}, batchable=True) is None  # free-form dict


def test_struct_column_values_nulls_and_misfits() -> None:
    fields = object_fields(PREDICTION, batchable=True)
    assert fields is not None
    rows = [orjson.dumps({"label": 1, "probability": 1, "name": None, "ok": True, "tags": ["a"]}), None,
            orjson.dumps({"label": 2**63, "probability": 0.5, "name": "x", "ok": False, "tags": []})]
    errors: dict[int, str] = {}
    col = struct_column(rows, fields, 100, errors)
    assert col.to_pylist() == [{"label": 1, "probability": 1.0, "name": None, "ok": True, "tags": '["a"]'}, None, None]
    assert list(errors) == [2] and errors[2].startswith("row 103, field label: ")


def test_csv_output_of_an_object_api(tmp_path: Path, torch_bento: str) -> None:
    items = [{"values": r.tolist()} for r in features(20, seed=4)]
    items[3] = {"values": [1.0]}
    src = tmp_path / "items.jsonl"
    src.write_bytes(b"".join(orjson.dumps(i) + b"\n" for i in items))
    out = tmp_path / "labels.csv"
    run_cli(torch_bento, "--api", "classify", "--input", str(src), "--output", str(out), check_codes=(2,))
    table = pcsv.read_csv(out)
    assert table.column_names == ["classify_label", "classify_probability"]
    assert table.column("classify_label").type == pa.int64()
    assert table.column("classify_label").null_count == 1 and table.column("classify_label")[3].as_py() is None
    assert all(0 < p <= 1 for i, p in enumerate(table.column("classify_probability").to_pylist()) if i != 3)
