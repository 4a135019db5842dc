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


def test_jsonl_rows_that_are_arrays_are_a_tensor_apis_rows(tmp_path: Path, onnx_bento: str) -> None:
    """A JSON Lines file of bare arrays (each line as one item of an HTTP request's body) is
    read as one column, `value`: each array is a row's values, whatever is not fails alone."""
    rows = [json.dumps([0.01 * i] * 16) for i in range(150)]
    rows[1] = json.dumps([1, 2, 3])  # wrong length
    rows[3] = json.dumps({"x": [0.0] * 16})  # an object in a file of arrays
    rows[6] = json.dumps("text")
    rows[8] = ""
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(rows) + "\n")
    outs = {}
    for executor in ("sharded", "workers"):
        out = outs[executor] = tmp_path / f"{executor}.jsonl"
        proc = run_cli(onnx_bento, "--input", str(src), "--output", str(out), "--keep-columns", "all",
                       "--chunk-rows", "64", "--executor", executor, check_codes=(2,))
        assert "146 ok, 4 failed" in proc.stderr
    assert outs["sharded"].read_bytes() == outs["workers"].read_bytes()
    errors = [orjson.loads(line) for line in (tmp_path / "sharded.jsonl.errors.jsonl").read_text().splitlines()]
    assert [e["row"] for e in errors] == [2, 4, 7, 9]
    assert "expected 16 values" in errors[0]["error"]
    assert errors[1]["error"] == "value: missing value"
    assert errors[2]["error"].startswith("value:")
    assert errors[3]["error"] == "empty line"
    lines = [orjson.loads(line) for line in outs["sharded"].read_text().splitlines()]
    assert [sorted(r) for r in lines[:1]] == [["predict", "value"]]
    assert lines[0]["value"] == [0.0] * 16 and len(lines[10]["predict"]) == 4
    assert [i for i, r in enumerate(lines) if r["predict"] is None] == [1, 3, 6, 8]


def test_kept_jsonl_keys_whose_types_change_between_chunks(tmp_path: Path, onnx_bento: str) -> None:
    """A kept key's type is set by the file's first rows, so that every part of the output
    has the same columns: a later value that type cannot hold fails its row (it used to fail
    the whole run at the end, for a Parquet output), objects and mixed values stay JSON."""
    rows = [{"x": [0.1] * 16, "id": i, "info": {"k": i}, "mixed": [1, "a"][i % 2]} for i in range(40)]
    rows[25]["id"] = "twenty-five"  # chunk 2: not an integer
    rows[30]["info"] = {"other": [1, 2]}  # other keys: an object column is JSON text
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tables = {}
    for fmt in ("parquet", "jsonl", "csv"):
        out = tmp_path / f"out.{fmt}"
        proc = run_cli(onnx_bento, "--input", str(src), "--output", str(out), "--keep-columns", "id,info,mixed",
                       "--chunk-rows", "10", check_codes=(2,))
        assert "39 ok, 1 failed" in proc.stderr
        errors = [orjson.loads(line) for line in Path(f"{out}.errors.jsonl").read_text().splitlines()]
        assert errors == [{"row": 26, "error": 'id: "twenty-five" does not fit the column\'s type (int64, from'
                                              " the file's first rows)"}]
        if fmt != "jsonl":  # mixed types: pyarrow's JSON reader refuses it
            tables[fmt] = read_output(out)
    assert tables["csv"].num_rows == 40
    assert tables["parquet"].column("id").to_pylist() == [*range(25), None, *range(26, 40)]
    assert tables["parquet"].schema.field("info").type == "string"
    assert orjson.loads(tables["parquet"].column("info")[30].as_py()) == {"other": [1, 2]}
    # a JSON Lines output gives back each kept value as it was read
    lines = [orjson.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["info"] for r in lines] == [r["info"] for r in rows]
    assert [r["mixed"] for r in lines] == [r["mixed"] for r in rows]


def test_csv_records_that_are_not_utf8_fail_alone(tmp_path: Path, onnx_bento: str) -> None:
    """pyarrow refuses a whole chunk for one record that is not UTF-8 (the run used to stop
    with "CSV conversion error to string: invalid UTF8 data"); such a record is a bad row,
    also when its field count is wrong too. A header that is not UTF-8 stops the run."""
    header = ",".join(f"f{i}" for i in range(16)) + ",name\n"
    good = ",".join(["0.5"] * 16)
    records = [f"{good},row{i}\n".encode() for i in range(30)]
    records[3] = f"{good},caf".encode() + b"\xe9\n"  # Latin-1
    records[7] = b"0.5,\xff\n"  # not UTF-8, and 2 fields
    records[8] = b"1,2,3\n"  # 3 fields
    src = tmp_path / "in.csv"
    src.write_bytes(header.encode() + b"".join(records))
    out = tmp_path / "out.csv"
    proc = run_cli(onnx_bento, "--input", str(src), "--output", str(out), "--keep-columns", "name",
                   "--chunk-rows", "10", check_codes=(2,))
    assert "27 ok, 3 failed" in proc.stderr
    errors = [orjson.loads(line) for line in (tmp_path / "out.csv.errors.jsonl").read_text().splitlines()]
    assert errors == [{"row": 4, "error": "not UTF-8 text (byte 68 of the line)"},
                      {"row": 8, "error": "not UTF-8 text (byte 5 of the line)"},
                      {"row": 9, "error": "expected 17 fields, got 3"}]
    names = [v or None for v in read_output(out).column("name").to_pylist()]  # CSV: null is empty
    assert names == [None if i in (3, 7, 8) else f"row{i}" for i in range(30)]
    src.write_bytes(b"f\xff0,f1\n" + records[0])
    proc = run_cli(onnx_bento, "--input", str(src), "--output", str(tmp_path / "other.csv"), check_codes=(1,))
    assert "the first line (the header) is not UTF-8 text" in proc.stderr


def test_kept_jsonl_types_are_the_first_chunks_in_every_shard(tmp_path: Path, onnx_bento: str) -> None:
    """A shard that never scores the first chunk types the kept keys as that chunk does, so
    that the parts the shards commit fit together (and the bytes equal the workers')."""
    rows = [{"x": [0.1] * 16, "tag": [i], "note": i} for i in range(60)]
    rows[0]["tag"] = "first"  # chunk 0 mixed: JSON text for the whole file, lists after it
    rows[1]["note"] = None
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    outs = {}
    for executor in ("sharded", "workers", "inprocess"):
        out = outs[executor] = tmp_path / f"{executor}.parquet"
        run_cli(onnx_bento, "--input", str(src), "--output", str(out), "--columns", "x", "--keep-columns", "tag,note",
                "--chunk-rows", "5", "--executor", executor, "--workers", "2")
    assert outs["sharded"].read_bytes() == outs["workers"].read_bytes() == outs["inprocess"].read_bytes()
    table = read_output(outs["sharded"])
    assert table.column("tag").to_pylist() == ['"first"', *(f"[{i}]" for i in range(1, 60))]
    assert table.column("note").to_pylist() == [0, None, *range(2, 60)]


def test_csv_records_split_as_pyarrow_reads_quotes() -> None:
    """A quote inside an unquoted value is a character (it used to open a quoted value that
    took every later line); a quoted value may span lines; one never closed makes its line a
    bad record and the lines after it are read again."""
    import io

    from jubako.batch.formats import BadRecord, _csv_records

    lines = [b'1,he said "hi\n', b'2,"multi\n', b'line, with ""quotes"""\n', b'3,"closed"tail\n',
             b'4,"open\n', b"5,x\n", b"6,y"]
    assert list(_csv_records(io.BytesIO(b"".join(lines)))) == [
        b'1,he said "hi\n', b'2,"multi\nline, with ""quotes"""\n', b'3,"closed"tail\n',
        BadRecord(b'4,"open\n', "a quoted value opened on this line is not closed by the end of the file"),
        b"5,x\n", b"6,y"]
    # within the bound, a quoted value takes the lines it spans; past it, they are read again
    long = [b'1,"' + b"a" * 600 + b"\n", *([b"b" * 600 + b"\n"] * 3), b'end"\n', b"2,z\n"]
    assert list(_csv_records(io.BytesIO(b"".join(long)), limit=4096)) == [b"".join(long[:5]), b"2,z\n"]
    got = list(_csv_records(io.BytesIO(b"".join(long)), limit=1024))
    assert got[0] == BadRecord(long[0], "a quoted value opened on this line is not closed within 0 MiB")
    assert got[1:] == [*long[1:4], b'end"\n', b"2,z\n"]


def test_a_csv_quote_left_open_fails_its_row_alone(tmp_path: Path, onnx_bento: str) -> None:
    header = ",".join(f"f{i}" for i in range(16)) + ",name\n"
    good = ",".join(["0.5"] * 16)
    rows = [f"{good},row{i}\n" for i in range(40)]
    rows[2] = f'{good},he said "hi\n'  # a quote inside an unquoted value
    rows[33] = f'{good},"never closed\n'
    src = tmp_path / "in.csv"
    src.write_text(header + "".join(rows))
    out = tmp_path / "out.csv"
    proc = run_cli(onnx_bento, "--input", str(src), "--output", str(out), "--keep-columns", "name",
                   "--chunk-rows", "10", check_codes=(2,))
    assert "40 rows (39 ok, 1 failed)" in proc.stderr
    errors = [orjson.loads(line) for line in (tmp_path / "out.csv.errors.jsonl").read_text().splitlines()]
    assert errors == [{"row": 34, "error": "a quoted value opened on this line is not closed by the end of the file"}]
    names = [v or None for v in read_output(out).column("name").to_pylist()]
    assert names == ['he said "hi' if i == 2 else None if i == 33 else f"row{i}" for i in range(40)]


def test_lines_longer_than_the_bound_are_bad_rows_never_held(tmp_path: Path, onnx_bento: str,
                                                             monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A file without line breaks (or one huge line) was read whole into memory; a line past
    MAX_RECORD is read past in pieces and fails its row alone, in JSON Lines and CSV."""
    import io

    from jubako.batch import Options, formats, run

    stream = io.BufferedReader(io.BytesIO(b"a\n" + b"x" * 5000 + b"\nb\n" + b"y" * 5000), 1024)
    assert list(formats._bounded_lines(stream, 1000)) == [
        b"a\n", formats.BadRecord(b"", "the line is longer than 0 MiB"), b"b\n",
        formats.BadRecord(b"", "the line is longer than 0 MiB")]
    monkeypatch.setattr(formats, "MAX_RECORD", 4 << 20)
    row = [0.5] * 16
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"".join([orjson.dumps(row) + b"\n", orjson.dumps(["x" * (5 << 20)]) + b"\n",
                              orjson.dumps(row) + b"\n"]))
    csv = tmp_path / "in.csv"
    header = ",".join(f"f{i}" for i in range(16)) + ",note\n"
    good = ",".join(["0.5"] * 16)
    csv.write_text(header + f"{good},a\n{good},{'z' * (5 << 20)}\n{good},b\n")
    for path in (src, csv):
        out = tmp_path / f"out-{path.suffix[1:]}.jsonl"
        summary = run(Options(bento=onnx_bento, api="predict", input=str(path), output=str(out),
                              executor="inprocess", progress=False))
        assert (summary.rows, summary.failed) == (3, 1)
        errors = [orjson.loads(line) for line in Path(f"{out}.errors.jsonl").read_text().splitlines()]
        assert errors == [{"row": 2, "error": "the line is longer than 4 MiB"}]


def test_columns_named_twice_stop_the_run_with_the_name(tmp_path: Path, onnx_bento: str) -> None:
    """Two columns of one name (Parquet allows it, so does a CSV header) stopped the run in a
    shard with "KeyError: Field "f0" exists 2 times in schema"; now a clear error, up front."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    x = np.zeros((20, 16), dtype=np.float32)
    names = [f"f{i}" for i in range(16)]
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table([*(x[:, i] for i in range(16)), pa.array(range(20))], names=[*names, "f3"]), src)
    csv = tmp_path / "in.csv"
    csv.write_text(",".join([*names, "f3"]) + "\n" + ",".join(["0.5"] * 17) + "\n")
    for path in (src, csv):
        proc = run_cli(onnx_bento, "--input", str(path), "--output", str(tmp_path / "out.jsonl"), check_codes=(1,))
        assert "the input has more than one column named 'f3'" in proc.stderr
