"""Round trip on each input format with the example bentos: results equal the model
called row by row, in input order, with input columns carried through."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from jubako.batch import Options, run
from jubako.batch.runner import _gpu

from .conftest import feature_table, features, read_output

N = 1000  # not a multiple of the chunk (300) nor of the batch (64)


def write_input(x: np.ndarray, fmt: str, path: Path) -> None:
    table = feature_table(x)
    if fmt == "parquet":
        pq.write_table(table, path, row_group_size=128)
    elif fmt == "csv":
        pcsv.write_csv(table, path)
    else:
        with open(path, "wb") as f:
            for i, row in enumerate(x):
                f.write(orjson.dumps({"id": i, "x": row.tolist()}) + b"\n")


@pytest.mark.parametrize(
    ("bento", "in_fmt", "out_fmt"),
    [("torch", "parquet", "parquet"), ("onnx", "csv", "csv"), ("torch", "jsonl", "jsonl"),
     ("onnx", "parquet", "jsonl")],
)
def test_tensor_api_round_trip(tmp_path: Path, request: pytest.FixtureRequest, reference, bento: str,
                               in_fmt: str, out_fmt: str) -> None:
    bento_dir = request.getfixturevalue(f"{bento}_bento")
    x = features(N)
    src = tmp_path / f"in.{in_fmt}"
    write_input(x, in_fmt, src)
    out = tmp_path / f"out.{out_fmt}"
    summary = run(Options(bento=bento_dir, api="predict", input=str(src), output=str(out), chunk_rows=300,
                          keep_columns=["id"], workers=2, progress=False))
    assert (summary.rows, summary.failed, summary.chunks) == (N, 0, 4)
    assert summary.executor == ("inprocess" if _gpu() else "sharded")  # auto, a tensor API, 2 instances
    # the worker processes give the same bytes
    by_workers = tmp_path / f"workers.{out_fmt}"
    summary = run(Options(bento=bento_dir, api="predict", input=str(src), output=str(by_workers), chunk_rows=300,
                          keep_columns=["id"], workers=2, executor="workers", progress=False))
    assert (summary.rows, summary.failed, summary.executor) == (N, 0, "workers")
    assert by_workers.read_bytes() == out.read_bytes()
    assert not Path(str(out) + ".parts").exists() and not Path(str(out) + ".errors.jsonl").exists()
    table = read_output(out)
    assert [int(v) for v in table.column("id").to_pylist()] == list(range(N))  # in input order
    if out_fmt == "csv":
        got = np.stack([table.column(f"predict_{k}").to_numpy() for k in range(4)], axis=1)
    else:
        got = np.asarray(table.column("predict").to_pylist(), dtype=np.float32)
    want = np.stack(reference(bento_dir).rows("predict", x))
    assert got.shape == (N, 4)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_parquet_chunks_sized_from_the_file_by_default(tmp_path: Path, onnx_bento: str, reference) -> None:
    """No --chunk-rows: ~4 MiB of a Parquet input per chunk (50 000 rows of 16 floats, the
    last one shorter); the state a resumed run compares holds the same number."""
    x = features(60_000, seed=3)
    src = tmp_path / "in.parquet"
    pq.write_table(feature_table(x), src)
    out = tmp_path / "out.parquet"
    summary = run(Options(bento=onnx_bento, api="predict", input=str(src), output=str(out), workers=2,
                          keep_columns=["id"], progress=False))
    assert (summary.rows, summary.failed, summary.chunks) == (60_000, 0, 2)
    got = np.asarray(read_output(out).column("predict").to_pylist(), dtype=np.float32)
    np.testing.assert_allclose(got[::997], np.stack(reference(onnx_bento).rows("predict", x[::997])),
                               rtol=1e-5, atol=1e-6)


def test_parquet_output_compresses_and_keeps_statistics_where_they_pay(tmp_path: Path, onnx_bento: str) -> None:
    """The output's columns: snappy where it shrinks the first part by 10 % or more (an
    id, text), uncompressed where it does not (the probabilities the model computes);
    min/max statistics on scalar columns, none on a tensor's elements."""
    from jubako.batch.formats import compression

    rng = np.random.default_rng(5)
    sample = pa.table({"id": pa.array(np.arange(5000)), "label": pa.array(rng.integers(0, 4, 5000)),
                       "name": pa.array(["cat", "dog"] * 2500), "noise": pa.array(rng.random(5000)),
                       "rows": pa.FixedSizeListArray.from_arrays(pa.array(rng.random(20000).astype(np.float32)), 4),
                       "missing": pa.nulls(5000, pa.float64())})
    assert compression(sample) == {"id": "snappy", "label": "snappy", "name": "snappy", "noise": "none",
                                   "rows": "none", "missing": "snappy"}
    src = tmp_path / "in.parquet"
    pq.write_table(feature_table(features(3000, seed=4)), src)
    out = tmp_path / "out.parquet"
    run(Options(bento=onnx_bento, api="predict", input=str(src), output=str(out), chunk_rows=1000,
                keep_columns=["id"], workers=2, progress=False))
    meta = pq.ParquetFile(out).metadata
    assert meta.num_row_groups == 3
    for g in range(3):
        cols = {meta.row_group(g).column(i).path_in_schema: meta.row_group(g).column(i) for i in range(2)}
        assert cols["id"].compression == "SNAPPY" and cols["id"].statistics.has_min_max
        assert cols["predict.list.element"].compression == "UNCOMPRESSED"
        assert not cols["predict.list.element"].is_stats_set


def test_json_api_round_trip(tmp_path: Path, torch_bento: str, reference) -> None:
    x = features(300, seed=1)
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"".join(orjson.dumps({"values": r.tolist()}) + b"\n" for r in x))
    out = tmp_path / "out.parquet"
    summary = run(Options(bento=torch_bento, api="classify", input=str(src), output=str(out), chunk_rows=128,
                          progress=False))
    assert (summary.rows, summary.failed) == (300, 0)
    column = pq.read_table(out).column("classify")
    assert column.type == pa.struct([("label", pa.int64()), ("probability", pa.float64())])  # columns, not JSON text
    got = column.to_pylist()
    ref = reference(torch_bento)
    Features = ref.service.apis["classify"].input_type.__args__[0]  # list[Features]
    want = ref.rows("classify", [Features(values=r.tolist()) for r in x])
    assert [g["label"] for g in got] == [w.label for w in want]
    np.testing.assert_allclose([g["probability"] for g in got], [w.probability for w in want], rtol=1e-5)


def test_csv_numeric_columns_and_existing_output(tmp_path: Path, onnx_bento: str) -> None:
    x = features(50, seed=2)
    src = tmp_path / "in.csv"
    pcsv.write_csv(feature_table(x), src)
    out = tmp_path / "out.parquet"
    # without --keep-columns, "id" is numeric too: 17 values for a 16-value item
    with pytest.raises(Exception, match="takes 16 values per row"):
        run(Options(bento=onnx_bento, input=str(src), output=str(out), progress=False))
    assert not Path(str(out) + ".parts").exists()
    cols = [f"f{i}" for i in range(16)]
    run(Options(bento=onnx_bento, input=str(src), output=str(out), columns=cols, progress=False))
    assert pq.read_table(out).column_names == ["predict"]
    with pytest.raises(Exception, match="exists; pass --overwrite"):
        run(Options(bento=onnx_bento, input=str(src), output=str(out), columns=cols, progress=False))
    run(Options(bento=onnx_bento, input=str(src), output=str(out), columns=cols, overwrite=True,
                keep_all=True, output_column="p", progress=False))
    assert pq.read_table(out).column_names == ["id", *cols, "p"]


def test_kept_parquet_columns_of_every_type_reach_text_outputs(tmp_path: Path, onnx_bento: str) -> None:
    """Kept columns that JSON and CSV have no type for (bytes, decimals, durations, maps)
    used to fail the whole run when written ("Type is not JSON serializable",
    "Invalid UTF8 payload"); they are written as documented (docs/batch.md, Formats)."""
    import datetime
    import decimal

    n = 70
    table = feature_table(features(n)).drop_columns(["id"])
    kept = {
        "blob": pa.array([b"\x00\xff" * 2] * n),
        "dec": pa.array([decimal.Decimal("1.25")] * n),
        "ts": pa.array([datetime.datetime(2026, 1, 1, 12)] * n),
        "dur": pa.array([datetime.timedelta(milliseconds=1500)] * n, pa.duration("ms")),
        "m": pa.array([[("a", 1)]] * n, pa.map_(pa.string(), pa.int64())),
    }
    for name, col in kept.items():
        table = table.append_column(name, col)
    src = tmp_path / "in.parquet"
    pq.write_table(table, src)
    for fmt in ("jsonl", "csv", "parquet"):
        out = tmp_path / f"out.{fmt}"
        summary = run(Options(bento=onnx_bento, api="predict", input=str(src), output=str(out),
                              keep_columns=list(kept), progress=False))
        assert (summary.rows, summary.failed) == (n, 0)
    row = orjson.loads((tmp_path / "out.jsonl").read_bytes().splitlines()[-1])
    assert {k: row[k] for k in kept} == {"blob": "AP8A/w==", "dec": 1.25, "ts": "2026-01-01T12:00:00", "dur": 1.5,
                                         "m": [["a", 1]]}
    csv = pcsv.read_csv(tmp_path / "out.csv", convert_options=pcsv.ConvertOptions(
        column_types={k: pa.string() for k in kept})).to_pylist()[-1]
    assert {k: csv[k] for k in kept} == {"blob": "AP8A/w==", "dec": "1.25", "ts": "2026-01-01 12:00:00.000000",
                                         "dur": "1.5", "m": '[["a",1]]'}
    assert pq.read_table(tmp_path / "out.parquet").select(list(kept)).equals(table.select(list(kept)))
