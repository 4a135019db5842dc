"""Rows -> API items and API results -> output columns, from the manifest's specs alone.

The coordinator never imports the service or its frameworks (the workers do), exactly
like the proxy.

Tensor APIs (``Tensor[dtype, (None, *item)]``): each row gives one item of ``prod(item)``
values, reshaped to ``item``:

1. ``--columns a,b,c``: those columns, in that order (each a number or a list of numbers);
2. otherwise, if the input has exactly one list-valued column (Parquet list, a JSON array),
   that column;
3. otherwise every numeric column, in file order, except those named in
   ``--keep-columns`` (for CSV, every column whose values in the first chunk are mostly
   numbers).

JSON APIs: each row is one item: a JSON Lines row as written; a CSV/Parquet row as an
object ``{column: value}`` (``--columns`` keeps only those). Pydantic validates it in the
worker, as for HTTP requests. Text APIs (``str``): the value of the single column (or the
one named by ``--columns``).

Results go to one column, named after the API unless ``--output-column`` says otherwise:
a tensor row becomes a list of numbers (nested for items of 2+ dimensions; in CSV,
``<col>_0..<col>_k`` columns), a JSON result its JSON (text in CSV and Parquet), text as
text. A row that failed has an empty (null) result, so output row ``n`` is always input
row ``n``.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.ma  # noqa: F401 - pyarrow imports it on the first pa.array(ndarray): ~25 ms in the run otherwise
import pyarrow as pa
import pyarrow.compute as pc

from jubako.errors import ConfigError, JubakoError
from jubako.manifest import ApiSpec, BytesSpec, JSONSpec, TensorSpec, TextSpec

from .formats import EMPTY, Chunk, Reader, to_json
from .objects import ObjectField, object_fields, struct_column

TRANSPOSE_BLOCK = 1 << 19  # bytes of the item array written at a time (Adapter._transpose)


@dataclass
class Items:
    """The items of one chunk that could be made, and why the others could not."""

    rows: np.ndarray  # offsets (in the chunk) of the rows that became items, ascending
    tensor: np.ndarray | None = None  # tensor APIs: (len(rows), *item)
    segments: list[bytes] | None = None  # JSON/text APIs: one encoded item per row
    errors: dict[int, str] = field(default_factory=dict)


def _item_shape(shape: list[int | None], where: str) -> tuple[int, ...]:
    if any(d is None for d in shape):
        raise ConfigError(f"{where}: the item shape {shape} has free dimensions; batch runs need fixed ones")
    return tuple(int(d) for d in shape)  # type: ignore[arg-type]


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _is_number(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


def _record_kinds(records: list[Any], names: list[str]) -> dict[str, str]:
    """The usual kind of each key's values among the first rows: list, number or other."""
    kinds: dict[str, str] = {}
    sample = [r for r in records[:1000] if isinstance(r, dict)]
    for c in names:
        counts = {"list": 0, "number": 0, "other": 0}
        for r in sample:
            v = r.get(c)
            if isinstance(v, list):
                counts["list"] += 1
            elif isinstance(v, int | float) and not isinstance(v, bool):
                counts["number"] += 1
            elif v is not None:
                counts["other"] += 1
        kinds[c] = max(counts, key=lambda k: counts[k]) if any(counts.values()) else "other"
    return kinds


def _mostly_numbers(col: pa.ChunkedArray) -> bool:
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        return False
    sample = [v for v in col.slice(0, 1000).to_pylist() if v not in (None, "")]
    good = 0
    for v in sample:
        try:
            float(v)
            good += 1
        except (TypeError, ValueError):
            pass
    return bool(sample) and good * 2 > len(sample)


class Adapter:
    def __init__(self, spec: ApiSpec, columns: list[str] | None, output_column: str | None,
                 keep: list[str] | None, keep_all: bool):
        self.spec = spec
        self.batchable = spec.batchable
        self.explicit = columns
        self.output_column = output_column or spec.name
        self.keep_opt, self.keep_all = keep, keep_all
        self.keep: list[str] = []
        self.features: list[str] = []
        inp = spec.input
        if isinstance(inp, BytesSpec):
            raise ConfigError(f"API {spec.name!r} takes raw bytes; batch runs support tensor, JSON and text APIs")
        if isinstance(inp, TensorSpec):
            shape = inp.shape[1:] if self.batchable else inp.shape
            self.item = _item_shape(shape, f"API {spec.name!r} input")
            self.width = math.prod(self.item)
            self.dtype = np.dtype(inp.dtype)
        out = spec.output
        if isinstance(out, TensorSpec):
            oshape = out.shape[1:] if self.batchable else out.shape
            self.out_item: tuple[int, ...] | None = tuple(oshape) if None not in oshape else None  # type: ignore[arg-type]
        self.json_columns = {self.output_column} if isinstance(out, JSONSpec) else set()
        self.object_fields: list[ObjectField] | None = None

    def objects_as_columns(self) -> None:
        """A result that is an object gets a column per field (CSV and Parquet outputs)."""
        out = self.spec.output
        if isinstance(out, JSONSpec):
            self.object_fields = object_fields(out.json_schema, self.batchable)
            if self.object_fields is not None:
                self.json_columns = set()

    # --- set-up from the first chunk -------------------------------------------------

    def setup(self, columns: list[str], first: Chunk) -> None:
        table = first.table
        names = [c for c in columns if c != EMPTY]
        used = {*(self.explicit or names), *(self.keep_opt or ()), *(names if self.keep_all else ())}
        clash = sorted(c for c, n in collections.Counter(names).items() if n > 1 and c in used)
        if clash:
            raise ConfigError(f"the input has more than one column named {clash[0]!r}; choose the columns to"
                              " use with --columns and --keep-columns (other names)")
        if self.explicit:
            missing = [c for c in self.explicit if c not in names]
            if missing:
                raise ConfigError(f"--columns: the input has no column {missing[0]!r} (it has {names})")
        inp = self.spec.input
        if isinstance(inp, TensorSpec):
            if self.explicit:
                self.features = list(self.explicit)
            else:
                kinds = _record_kinds(first.records, names) if first.records is not None else {
                    c: "list" if _is_list(table.column(c).type) else "number" if _is_number(table.column(c).type)
                    else "text" if _mostly_numbers(table.column(c)) else "other" for c in names
                }
                lists = [c for c in names if kinds.get(c) == "list"]
                if len(lists) == 1:
                    self.features = lists
                else:
                    named_keep = set(self.keep_opt or ())
                    self.features = [
                        c for c in names
                        if c not in named_keep and kinds.get(c) in ("number", "text")
                    ]
                if not self.features:
                    raise ConfigError(
                        f"API {self.spec.name!r} takes {self.width} numbers per row; the input has no numeric"
                        f" or list column (columns: {names}); name them with --columns"
                    )
            scalars = [c for c in self.features if not _is_list(table.column(c).type)
                       and (first.records is None or _record_kinds(first.records, [c]).get(c) != "list")]
            if len(scalars) == len(self.features) and len(scalars) != self.width:
                raise ConfigError(
                    f"API {self.spec.name!r} takes {self.width} values per row (item shape {list(self.item)});"
                    f" the feature columns {self.features} give {len(scalars)}; choose them with --columns"
                )
        elif isinstance(inp, TextSpec):
            cols = self.explicit or names
            if len(cols) != 1:
                raise ConfigError(f"API {self.spec.name!r} takes text: name its column with --columns (one of {names})")
            self.features = list(cols)
        else:
            self.features = list(self.explicit) if self.explicit else []
        if self.keep_all:
            self.keep = names
        elif self.keep_opt:
            missing = [c for c in self.keep_opt if c not in names]
            if missing:
                raise ConfigError(f"--keep-columns: the input has no column {missing[0]!r} (it has {names})")
            self.keep = list(self.keep_opt)
        if self.output_column in self.keep:
            raise ConfigError(f"the result column {self.output_column!r} is also an input column that is kept;"
                              " choose another name with --output-column")

    def narrow(self, reader: Reader) -> None:
        """Tell ``reader``, once set up, which columns the run reads and which the output carries."""
        reader.only = self.needed()
        reader.kept = set(self.keep)

    def needed(self) -> list[str] | None:
        """The input columns the run uses; None: all of them, or not known yet (before
        :meth:`setup` without --columns; a JSON API's row is every column). Readers drop
        the others, so that a wide column nobody asked for (free text next to the
        features) is not held chunk after chunk."""
        if self.keep_all:
            return None
        if self.explicit:
            return list(dict.fromkeys([*self.explicit, *(self.keep_opt or ())]))
        if not self.features or not isinstance(self.spec.input, TensorSpec | TextSpec):
            return None
        return list(dict.fromkeys([*self.features, *self.keep]))

    # --- rows -> items ---------------------------------------------------------------

    def items(self, chunk: Chunk) -> Items:
        inp = self.spec.input
        if isinstance(inp, TensorSpec):
            return self._tensor_items(chunk)
        errors = dict(chunk.errors)
        rows, segs = [], []
        if isinstance(inp, TextSpec):
            values = chunk.table.column(self.features[0]).to_pylist()
            for i, v in enumerate(values):
                if i in errors:
                    continue
                if v is None:
                    errors[i] = f"{self.features[0]}: missing value"
                    continue
                rows.append(i)
                segs.append(str(v).encode())
        elif chunk.raw is not None and not self.explicit:
            for i, line in enumerate(chunk.raw):
                if i not in errors:
                    rows.append(i)
                    segs.append(line)
        else:
            table = chunk.table.select(self.features or [c for c in chunk.table.column_names if c != EMPTY])
            for i, rec in enumerate(table.to_pylist()):
                if i in errors:
                    continue
                try:
                    segs.append(to_json(rec))
                    rows.append(i)
                except TypeError as e:
                    errors[i] = f"cannot encode the row as JSON: {e}"
        return Items(np.asarray(rows, dtype=np.int64), None, segs, errors)

    def _tensor_items(self, chunk: Chunk) -> Items:
        n = chunk.rows
        if not chunk.errors:
            try:
                arr = self._fast(chunk.table, n)
                return Items(np.arange(n, dtype=np.int64), arr)
            except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError, TypeError, _Slow):
                pass
        return self._slow(chunk)

    def _fast(self, table: pa.Table, n: int) -> np.ndarray:
        """All rows at once, in C; raises when any row is not clean (then :meth:`_slow`)."""
        if self._scalar_columns(table):
            return self._transpose(table, n)
        parts = []
        for c in self.features:
            col = table.column(c)
            if col.null_count:
                raise _Slow
            t = col.type
            if _is_list(t):
                arr = col.combine_chunks()
                lengths = pc.list_value_length(arr)
                if n and (pc.min(lengths).as_py() != pc.max(lengths).as_py()):
                    raise _Slow
                while _is_list(arr.type):
                    arr = arr.flatten()
                if arr.null_count:
                    raise _Slow
                values = arr.to_numpy(zero_copy_only=False)
                if values.dtype.kind not in "biuf" or values.size % max(n, 1):
                    raise _Slow
                parts.append(values.reshape(n, -1))
            elif pa.types.is_string(t) or pa.types.is_large_string(t):
                parts.append(pc.cast(col, pa.float64()).to_numpy().reshape(n, 1))
            elif _is_number(t):
                parts.append(col.to_numpy().reshape(n, 1))
            else:
                raise _Slow
        x = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
        if x.shape[1] != self.width:
            raise _Slow
        return self._cast(x).reshape((n, *self.item))

    def _scalar_columns(self, table: pa.Table) -> bool:
        """Whether every feature is one integer or float column (the common tabular input),
        none casting floats to integers (that needs :meth:`_cast`'s checks)."""
        if len(self.features) != self.width:
            return False
        for c in self.features:
            t = table.column(c).type
            if not (pa.types.is_integer(t) or pa.types.is_floating(t)):
                return False
            if self.dtype.kind in "iu" and pa.types.is_floating(t):
                return False
        return True

    def _transpose(self, table: pa.Table, n: int) -> np.ndarray:
        """Scalar columns into the item array: each Arrow chunk's values read in place and
        written, cast, into their column of one array. ChunkedArray.to_numpy copies every
        column first (and a nullable one through a slower path), then concatenate makes
        the rows: two passes instead of one. Written a block of rows at a time, all the
        columns of a block while it is in cache: a column at a time across the whole
        array wrote each cache line once per column, ~0.057 us per MLP row against
        ~0.034 in blocks of 512 KiB (bench/README.md)."""
        x = np.empty((n, self.width), dtype=self.dtype)
        columns = []  # per feature: (first row, values) of each Arrow chunk
        for c in self.features:
            col = table.column(c)
            if col.null_count:
                raise _Slow
            at, pieces = 0, []
            for chunk in col.chunks:
                pieces.append((at, chunk.to_numpy(zero_copy_only=True)))  # no nulls: a view
                at += len(chunk)
            columns.append(pieces)
        rows = max(1, TRANSPOSE_BLOCK // max(1, x.itemsize * self.width))
        for s in range(0, n, rows):
            e = min(s + rows, n)
            block = x[s:e]
            for j, pieces in enumerate(columns):
                for at, values in pieces:
                    lo, hi = max(s, at), min(e, at + len(values))
                    if lo < hi:
                        block[lo - s : hi - s, j] = values[lo - at : hi - at]
        return x.reshape((n, *self.item))

    def _cast(self, x: np.ndarray) -> np.ndarray:
        if self.dtype.kind in "iu" and x.dtype.kind == "f":
            if not np.all(np.isfinite(x)) or not np.array_equal(x, np.trunc(x)):
                raise _Slow
        return np.ascontiguousarray(x, dtype=self.dtype)

    def _slow(self, chunk: Chunk) -> Items:
        """Row by row, naming what is wrong with each bad row."""
        errors = dict(chunk.errors)
        if chunk.records is not None:
            recs = chunk.records
            columns = {c: [r.get(c) if isinstance(r, dict) else None for r in recs] for c in self.features}
        else:
            columns = {c: chunk.table.column(c).to_pylist() for c in self.features}
        rows, values = [], []
        for i in range(chunk.rows):
            if i in errors:
                continue
            try:
                values.append(self._row(columns, i))
                rows.append(i)
            except _RowError as e:
                errors[i] = str(e)
        if values:
            arr = np.asarray(values, dtype=np.float64) if self.dtype.kind == "f" else np.asarray(values)
            arr = np.ascontiguousarray(arr, dtype=self.dtype).reshape((len(values), *self.item))
        else:
            arr = np.zeros((0, *self.item), dtype=self.dtype)
        return Items(np.asarray(rows, dtype=np.int64), arr, None, errors)

    def _row(self, columns: dict[str, list[Any]], i: int) -> list[Any]:
        out: list[Any] = []
        for c in self.features:
            v = columns[c][i]
            if v is None or v == "":
                raise _RowError(f"{c}: missing value")
            if isinstance(v, str):
                try:
                    v = float(v) if self.dtype.kind == "f" else int(v)
                except ValueError:
                    raise _RowError(f"{c}: {v[:40]!r} is not a {self.dtype.name} number") from None
            if isinstance(v, list):
                try:
                    a = np.asarray(v, dtype=np.float64)
                except (ValueError, TypeError):
                    raise _RowError(f"{c}: expected an array of numbers of shape {list(self.item)}") from None
                if a.size and not np.all(np.isfinite(a)) and np.isnan(a).any():
                    raise _RowError(f"{c}: the array holds empty values")
                out.extend(a.ravel().tolist())
            elif isinstance(v, bool) or not isinstance(v, int | float):
                raise _RowError(f"{c}: {v!r} is not a number")
            else:
                out.append(v)
        if len(out) != self.width:
            raise _RowError(f"expected {self.width} values (shape {list(self.item)}), got {len(out)}")
        if self.dtype.kind in "iu" and any(isinstance(v, float) and not v.is_integer() for v in out):
            raise _RowError(f"expected {self.dtype.name} numbers, got fractions")
        return out

    # --- results -> output table -----------------------------------------------------

    def output_table(self, chunk: Chunk, rows: np.ndarray, tensor: np.ndarray | None,
                     segments: list[bytes] | None, errors: dict[int, str]) -> pa.Table:
        """The chunk's output rows: kept input columns, then the result column (a result
        that does not fit its column adds its row to ``errors``)."""
        n = chunk.rows
        ok = np.zeros(n, dtype=bool)
        ok[rows] = True
        out = self.spec.output
        if isinstance(out, TensorSpec):
            assert tensor is not None or len(rows) == 0
            result = _tensor_column(tensor, rows, n, ok, self.out_item)
        elif self.object_fields is not None:
            objects: list[bytes | None] = [None] * n
            for i, s in zip(rows.tolist(), segments or [], strict=True):
                objects[i] = s
            result = struct_column(objects, self.object_fields, chunk.start, errors)
        else:
            values: list[Any] = [None] * n
            if segments is not None:
                for i, s in zip(rows.tolist(), segments, strict=True):
                    values[i] = s if isinstance(out, BytesSpec) else s.decode()
            result = pa.array(values, pa.binary() if isinstance(out, BytesSpec) else pa.string())
        cols = [chunk.table.column(c) for c in self.keep]
        fields = [chunk.table.schema.field(c) for c in self.keep]  # with their metadata (JSON text)
        return pa.table([*cols, result], schema=pa.schema([*fields, pa.field(self.output_column, result.type)]))


class _Slow(Exception):
    pass


class _RowError(Exception):
    pass


def _tensor_column(tensor: np.ndarray | None, rows: np.ndarray, n: int, ok: np.ndarray,
                   item: tuple[int, ...] | None) -> pa.Array:
    if tensor is None:
        tensor = np.zeros((0, *(item or ())), dtype=np.float32)
    if item is None:
        item = tuple(tensor.shape[1:])
    if len(rows) and tuple(tensor.shape[1:]) != item:
        raise JubakoError(f"the API returned rows of shape {tensor.shape[1:]}, expected {item}")
    if len(rows) == n:  # every row scored: the results are the column as they are
        full = tensor
    else:
        full = np.zeros((n, *item), dtype=tensor.dtype)
        full[rows] = tensor
    mask = None if len(rows) == n else pa.array(~ok)  # no validity bitmap when every row scored
    if not item:
        return pa.array(full, mask=None if mask is None else ~ok)
    arr: pa.Array = pa.array(full.reshape(-1))
    for k, d in enumerate(reversed(item)):
        last = k == len(item) - 1
        arr = pa.FixedSizeListArray.from_arrays(arr, d, mask=mask if last else None)
    return arr
