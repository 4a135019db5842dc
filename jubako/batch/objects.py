"""JSON results that are objects, as columns of a CSV or Parquet output.

An API whose result is a pydantic model (``list[Prediction]``) returns one JSON object per
row. In a CSV or Parquet output each of the object's fields becomes a column of its own
(typed from the API's output schema: integer, number, string, boolean; anything else is
its JSON text), instead of one column of JSON text a reader must parse again: a Parquet
struct column (``classify.label``), flattened to ``classify_label`` in CSV. The types come
from the schema, not from the values, so every chunk's part has the same schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa

_SCALARS = {"integer": pa.int64(), "number": pa.float64(), "string": pa.string(), "boolean": pa.bool_()}


@dataclass(frozen=True)
class ObjectField:
    name: str
    type: pa.DataType
    json: bool  # not a scalar: the value's JSON text


def _resolve(schema: Any, defs: dict[str, Any]) -> Any:
    """Follow ``$ref`` to ``#/$defs/...`` (a few levels: refs to refs are rare)."""
    for _ in range(8):
        if not isinstance(schema, dict) or "$ref" not in schema:
            return schema
        ref = schema["$ref"]
        if not isinstance(ref, str) or not ref.startswith("#/$defs/"):
            return schema
        schema = defs.get(ref.removeprefix("#/$defs/"), {})
    return schema


def _scalar(schema: Any, defs: dict[str, Any]) -> pa.DataType | None:
    schema = _resolve(schema, defs)
    if not isinstance(schema, dict):
        return None
    options = schema.get("anyOf")
    if isinstance(options, list):  # Optional[x]: anyOf [x, null]
        rest = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
        return _scalar(rest[0], defs) if len(rest) == 1 else None
    kind = schema.get("type")
    return _SCALARS.get(kind) if isinstance(kind, str) else None


def object_fields(schema: dict[str, Any], batchable: bool) -> list[ObjectField] | None:
    """The fields of the API's per-row result when it is an object with declared
    properties; None otherwise (a list, a number, a free-form dict: kept as JSON text)."""
    defs = schema.get("$defs") if isinstance(schema.get("$defs"), dict) else {}
    item: Any = schema
    if batchable:
        if schema.get("type") != "array":
            return None
        item = schema.get("items")
    item = _resolve(item, defs or {})
    if not isinstance(item, dict) or item.get("type") != "object":
        return None
    props = item.get("properties")
    if not isinstance(props, dict) or not props:
        return None
    fields = []
    for name, sub in props.items():
        t = _scalar(sub, defs or {})
        fields.append(ObjectField(str(name), t or pa.string(), t is None))
    return fields


def struct_column(values: list[bytes | None], fields: list[ObjectField], first_row: int,
                  errors: dict[int, str]) -> pa.Array:
    """One struct column from each row's JSON object (None: a failed row, a null). A value
    that its column cannot hold (an integer past 64 bits) is a null, and an error of its
    row in ``errors`` (offset in the chunk -> message, ``row N, field f: ...``)."""
    objects = [None if v is None else orjson.loads(v) for v in values]
    columns, built = [], []
    bad: set[int] = set()
    for f in fields:
        col = [o.get(f.name) if isinstance(o, dict) else None for o in objects]
        if f.json:
            col = [None if v is None else orjson.dumps(v).decode() for v in col]
        try:
            built.append(pa.array(col, f.type))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            for i, v in enumerate(col):
                try:
                    pa.array([v], f.type)
                except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as e:
                    errors.setdefault(i, f"row {first_row + i + 1}, field {f.name}: {v!r} does not fit {f.type}: {e}")
                    bad.add(i)
        columns.append(col)
    # a row with a value that does not fit is a failed row: null, like any other
    arrays = built if not bad else [pa.array([None if i in bad else v for i, v in enumerate(col)], f.type)
                                    for f, col in zip(fields, columns, strict=True)]
    mask = pa.array([o is None or i in bad for i, o in enumerate(objects)], pa.bool_())
    return pa.StructArray.from_arrays(arrays, fields=[pa.field(f.name, f.type) for f in fields], mask=mask)
