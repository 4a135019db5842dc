"""Rows -> items for tensor APIs (jubako/batch/mapping.py): the in-place path for scalar
columns gives the same array as converting row by row, whatever the chunking."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from jubako.batch import mapping
from jubako.batch.formats import Chunk
from jubako.batch.mapping import Adapter
from jubako.manifest import ApiSpec


def _adapter(dtype: str, width: int, item: list[int] | None = None) -> Adapter:
    spec = ApiSpec.model_validate({
        "name": "predict", "route": "/predict", "batchable": True,
        "input": {"kind": "tensor", "dtype": dtype, "shape": [None, *(item or [width])]},
        "output": {"kind": "tensor", "dtype": "float32", "shape": [None, 2]},
    })
    return Adapter(spec, None, None, None, False)


def _chunk(table: pa.Table) -> Chunk:
    return Chunk(0, 0, table)


def _chunked(values: np.ndarray, cuts: list[int], typ: pa.DataType) -> pa.ChunkedArray:
    """One column in several Arrow chunks, the middle ones slices (non-zero offsets)."""
    bounds = [0, *cuts, len(values)]
    whole = pa.array(values, type=typ)
    return pa.chunked_array([whole.slice(a, b - a) for a, b in zip(bounds, bounds[1:], strict=False)], type=typ)


@pytest.mark.parametrize(("target", "source"), [
    ("float32", pa.float32()), ("float32", pa.float64()), ("float32", pa.int64()),
    ("float64", pa.float32()), ("int64", pa.int32()),
])
@pytest.mark.parametrize("block_rows", [None, 1, 37])  # None: the default block (one here)
def test_scalar_columns_in_place_match_the_rows(target: str, source: pa.DataType, block_rows: int | None,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    n, width = 1000, 5
    if block_rows is not None:  # blocks of rows that cross the chunks' bounds
        monkeypatch.setattr(mapping, "TRANSPOSE_BLOCK", block_rows * width * np.dtype(target).itemsize)
    raw = rng.integers(-50, 50, size=(n, width)) if pa.types.is_integer(source) else rng.standard_normal((n, width))
    # each column chunked its own way
    cols = {f"f{j}": _chunked(raw[:, j], [17, 400, 401] if j % 2 else [250, 999], source) for j in range(width)}
    cols["label"] = pa.array(["x"] * n)  # not a feature: left out
    table = pa.table(cols)
    a = _adapter(target, width)
    a.setup(table.column_names, _chunk(table.slice(0, 10)))
    assert a.features == [f"f{j}" for j in range(width)]
    items = a.items(_chunk(table))
    want = np.asarray([[r[c] for c in a.features] for r in table.to_pylist()], dtype=target)
    assert items.tensor is not None and items.tensor.dtype == np.dtype(target)
    assert items.tensor.flags.c_contiguous and items.tensor.flags.writeable
    np.testing.assert_array_equal(items.tensor, want)
    assert items.errors == {} and items.rows.tolist() == list(range(n))


def test_item_shape_and_rows_with_an_empty_value() -> None:
    """Items of shape (2, 2) from 4 columns; a null sends the chunk row by row, which
    names the bad row and keeps the others."""
    table = pa.table({f"f{j}": pa.array([1.0, 2.0, None if j == 2 else 3.0], pa.float32()) for j in range(4)})
    a = _adapter("float32", 4, [2, 2])
    a.setup(table.column_names, _chunk(table))
    items = a.items(_chunk(table))
    assert items.rows.tolist() == [0, 1]
    assert items.tensor is not None and items.tensor.shape == (2, 2, 2)
    np.testing.assert_array_equal(items.tensor[1], [[2.0, 2.0], [2.0, 2.0]])
    assert items.errors == {2: "f2: missing value"}


def test_fractions_for_an_integer_api_still_fail_by_row() -> None:
    """Floats into an int64 API take the checked path: a fraction fails its row only."""
    table = pa.table({"a": pa.array([1.0, 2.5, 3.0]), "b": pa.array([4.0, 5.0, 6.0])})
    a = _adapter("int64", 2)
    a.setup(table.column_names, _chunk(table))
    items = a.items(_chunk(table))
    assert items.rows.tolist() == [0, 2]
    assert items.tensor is not None and items.tensor.tolist() == [[1, 4], [3, 6]]
    assert items.errors == {1: "expected int64 numbers, got fractions"}


def test_default_chunk_rows_from_the_parquet_files_bytes_per_row(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pyarrow.parquet as pq

    from jubako.batch.formats import default_chunk_rows

    narrow = tmp_path / "narrow.parquet"  # the MLP's input: 16 floats a row
    pq.write_table(pa.table({f"f{j}": np.zeros(3000, np.float32) + j for j in range(16)}), narrow)
    assert default_chunk_rows(str(narrow), "parquet") == 50_000  # 4 MiB is more rows than that
    wide = tmp_path / "wide.parquet"  # 2 KiB of floats a row, as the encoder's items
    pq.write_table(pa.table({"x": pa.FixedSizeListArray.from_arrays(
        pa.array(np.random.default_rng(0).standard_normal(3000 * 512).astype(np.float32)), 512)}), wide)
    rows = default_chunk_rows(str(wide), "parquet")  # ~4 MiB / 2 KiB (and the encoding's own bytes)
    assert 1500 <= rows <= 2100 and rows % 100 == 0
    text = tmp_path / "text.parquet"  # a wide column the model never reads counts too: memory
    pq.write_table(pa.table({"f": np.zeros(2000, np.float32),
                             "note": [f"{i}" + "x" * 20_000 for i in range(2000)]}), text)
    assert default_chunk_rows(str(text), "parquet") == 1000  # the floor
    assert default_chunk_rows(str(narrow), "csv") == default_chunk_rows(str(narrow), "jsonl") == 10_000
