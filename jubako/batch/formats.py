"""Reading inputs in fixed-size chunks and writing outputs, for JSON Lines, CSV, Parquet.

Every reader yields :class:`Chunk` objects of exactly ``chunk_rows`` rows (the last one
may be shorter), so chunk ``k`` always covers rows ``[k*chunk_rows, (k+1)*chunk_rows)``;
that is what makes a restarted run able to skip the chunks it already finished. Memory
is bounded by a chunk: nothing reads a whole file.

- JSON Lines: one JSON value per line (an object for tensor/column mappings); blank
  lines are rows too (reported as bad), so row ``n`` is line ``n``.
- CSV: the first line is the header; every value is read as text (CSV has no types) and
  the tensor mapping converts the feature columns itself, so one bad value fails one row,
  not a block. A quoted value may span lines.
- Parquet: read row group by row group with the file's own types.
"""

from __future__ import annotations

import base64
import bisect
import datetime
import decimal
import io
import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa

from jubako.errors import ConfigError, JubakoError

from . import storage

FORMATS = ("jsonl", "csv", "parquet")
VALUE = "value"  # the one column of a JSON Lines file whose rows are not objects
EMPTY = "__jubako_no_columns__"  # placeholder column of a JSON Lines chunk whose rows are not objects
_EXT = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet",
        ".pq": "parquet"}
# parts of a Parquet output are Arrow IPC streams (cheap to write, read back only by a
# resumed run); the output itself is encoded once, by Output, as chunks commit
EXTENSION = {"jsonl": "jsonl", "csv": "csv", "parquet": "arrow"}


def detect(url: str, given: str | None) -> str:
    if given:
        if given not in FORMATS:
            raise ConfigError(f"unknown format {given!r}; use one of {', '.join(FORMATS)}")
        return given
    name = url.rsplit("/", 1)[-1].lower()
    for ext, fmt in _EXT.items():
        if name.endswith(ext):
            return fmt
    raise ConfigError(f"{url}: cannot tell the format from the name; pass --input-format/--output-format"
                      f" ({', '.join(FORMATS)})")


@dataclass
class Chunk:
    index: int
    start: int  # 0-based index of the chunk's first row in the input
    table: pa.Table  # one row per input row (rows that could not be parsed are all-null)
    raw: list[bytes] | None = None  # JSON Lines: each row's own JSON text
    records: list[Any] | None = None  # JSON Lines: each row parsed (None where it is not JSON)
    errors: dict[int, str] = field(default_factory=dict)  # row offset in chunk -> message
    bytes_read: int = 0  # input bytes consumed so far (progress of text formats)

    @property
    def rows(self) -> int:
        return self.table.num_rows


class Reader:
    fmt: str
    total_rows: int | None = None
    total_bytes: int | None = None
    chunk_rows: int
    columns: list[str]
    only: list[str] | None = None  # the columns to keep in later chunks (None: all); see Adapter.needed
    kept: set[str] | None = None  # the columns the output carries (None: not known yet); see Adapter.narrow

    def adopt(self, first: Reader) -> None:
        """What ``first``, which read the file's first chunk, learnt of the whole file (a
        shard's reader may never read that chunk)."""
        self.columns = list(first.columns)

    def chunks(self, claim: Callable[[], int] | None = None) -> Iterator[Chunk]:
        """Every chunk in order; with ``claim``, only the chunks it names: it is asked for
        the next index wanted (increasing) before each chunk is read, and the chunks in
        between are skipped (text: their lines are counted, not parsed; Parquet: row groups
        before the chunk's are not read). A shard of the ``sharded`` executor reads so."""
        raise NotImplementedError

    def chunk_ranges(self, first: int) -> list[tuple[int, int]] | None:
        """Chunk index ranges that read well apart (Parquet: one per row group, from chunk
        ``first`` on; claims.py); None: any order costs the same (text: lines are counted)."""
        return None


CHUNK_BYTES = 4 << 20  # a Parquet chunk's decoded size, about, when --chunk-rows is not given
TEXT_CHUNK_ROWS = 10_000


def default_chunk_rows(url: str, fmt: str) -> int:
    """Rows per chunk when ``--chunk-rows`` is not given (the reader's choice)."""
    return open_reader(url, fmt, None).chunk_rows


def _parquet_chunk_rows(md: Any) -> int:
    """About CHUNK_BYTES of decoded data (the file's uncompressed size per row, every column:
    an upper bound of what is read), from 1 000 to 50 000 rows. A chunk's fixed costs (its
    part, marker and fsyncs, the hops between threads, an output row group) are paid per
    chunk: 10 000 rows of the example MLP's 16 floats (640 KB) ran at 1.58 M rows/s where
    50 000 ran at 2.24 M (bench/README.md); rows as wide as the encoder's (2 KiB) keep chunks
    of a few MiB. The same file gives the same number: a resumed run finds the chunks it left."""
    rows = md.num_rows
    size = sum(md.row_group(g).total_byte_size for g in range(md.num_row_groups))
    per_row = size / rows if rows else 1
    return int(min(max(CHUNK_BYTES / max(per_row, 1), 1000), 50_000)) // 100 * 100


def open_reader(url: str, fmt: str, chunk_rows: int | None) -> Reader:
    """``chunk_rows`` None: the reader chooses (Parquet: from the file, _parquet_chunk_rows;
    text: TEXT_CHUNK_ROWS, where parsing costs far more than a chunk's fixed costs)."""
    if fmt == "jsonl":
        return JsonlReader(url, chunk_rows)
    if fmt == "csv":
        return CsvReader(url, chunk_rows)
    return ParquetReader(url, chunk_rows)


JSON_TEXT = {b"jubako": b"json"}  # field metadata of a column holding JSON text


def json_default(v: Any) -> Any:
    """What orjson cannot write itself, as JSON (orjson's ``default``): bytes as base64
    text, a decimal as its exact number, a duration in seconds. A kept Parquet column of
    such a type is then written to JSON Lines and CSV instead of failing the run."""
    if isinstance(v, bytes | bytearray | memoryview):
        return base64.b64encode(v).decode()
    if isinstance(v, decimal.Decimal):
        return orjson.Fragment(str(v)) if v.is_finite() else str(v)
    if isinstance(v, datetime.timedelta):
        return v.total_seconds()
    raise TypeError(f"Type is not JSON serializable: {type(v).__name__}")


def to_json(v: Any) -> bytes:
    return orjson.dumps(v, default=json_default, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


def _json_text(values: list[Any]) -> pa.Array:
    return pa.array([None if v is None else to_json(v).decode() for v in values], pa.string())


def _column(values: list[Any]) -> pa.Array:
    """An Arrow array for Python values; mixed types fall back to their JSON text."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return _json_text(values)


def _has_struct(kind: pa.DataType) -> bool:
    if pa.types.is_struct(kind) or pa.types.is_map(kind):
        return True
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return _has_struct(kind.value_type)
    return False


class JsonlReader(Reader):
    fmt = "jsonl"

    def __init__(self, url: str, chunk_rows: int | None):
        self.url, self.chunk_rows = url, chunk_rows or TEXT_CHUNK_ROWS
        self.total_bytes = storage.stat(url).size
        self.columns = []
        self.types: dict[str, pa.DataType | None] = {}  # None: the column is JSON text

    def adopt(self, first: Reader) -> None:
        super().adopt(first)
        assert isinstance(first, JsonlReader)
        self.types = dict(first.types)

    def _typed(self, name: str, values: list[Any], errors: dict[int, str]) -> pa.Array:
        """A column of one chunk. A column the output carries has the type the file's
        first chunk gave it: every part of the output then has the same columns (a Parquet
        output's parts must). Where the first chunk's values are of mixed types, all null,
        or objects (whose keys vary from row to row), that is their JSON text, written back
        as JSON in a JSON Lines output. A later value that its column's type cannot hold
        fails its row. Other columns (features) take each chunk's own type: one odd value
        early in the file does not send every later chunk down the row-by-row path."""
        if name not in self.types:
            arr = _column(values)
            mixed = pa.types.is_string(arr.type) and not all(isinstance(v, str) for v in values if v is not None)
            self.types[name] = None if pa.types.is_null(arr.type) or _has_struct(arr.type) or mixed else arr.type
            if (self.kept is not None and name not in self.kept) or self.types[name] is not None:
                return arr  # the first chunk's own type: no second conversion
        elif self.kept is not None and name not in self.kept:
            return _column(values)
        kind = self.types[name]
        if kind is None:
            return _json_text(values)
        try:
            return pa.array(values, kind)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
            pass
        fitting: list[Any] = []
        for i, v in enumerate(values):
            try:
                pa.array([v], kind)
                fitting.append(v)
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
                fitting.append(None)
                errors.setdefault(i, f"{name}: {orjson.dumps(v).decode()[:40]} does not fit the column's type"
                                     f" ({kind}, from the file's first rows)")
        return pa.array(fitting, kind)

    def _is_json_text(self, name: str) -> bool:
        return self.types[name] is None and (self.kept is None or name in self.kept)

    def chunks(self, claim: Callable[[], int] | None = None) -> Iterator[Chunk]:
        stream, counter = storage.open_stream(self.url)
        want = claim() if claim is not None else 0
        with stream:
            lines_in = _bounded_lines(stream)
            for index in itertools.count():
                if index < want and self.columns:  # another shard's chunk: count its lines
                    if _skip(lines_in, self.chunk_rows) < self.chunk_rows:
                        return
                    continue
                lines = list(itertools.islice(lines_in, self.chunk_rows))
                if not lines:
                    return
                raw: list[bytes] = []
                records: list[Any] = []
                errors: dict[int, str] = {}
                for i, line in enumerate(lines):
                    rec = None
                    if isinstance(line, BadRecord):  # too long to read
                        errors[i] = line.error
                        line = line.line
                    else:
                        line = line.rstrip(b"\r\n")
                        try:
                            rec = orjson.loads(line)
                        except orjson.JSONDecodeError as e:
                            errors[i] = "empty line" if not line.strip() else f"not valid JSON: {e}"
                    raw.append(line)
                    records.append(rec)
                if not self.columns:
                    self.columns = _jsonl_columns(records, errors)
                if self.columns == [VALUE]:  # a file of values: each row is {"value": the line's value}
                    records = [{VALUE: None if isinstance(r, dict) else r} for r in records]
                cols = {c: self._typed(c, [r.get(c) if isinstance(r, dict) else None for r in records], errors)
                        for c in self.columns}
                if index < want:  # parsed only for its columns (the first chunks had none)
                    continue
                table = pa.table(list(cols.values()), schema=pa.schema(
                    [pa.field(c, a.type, metadata=JSON_TEXT if self._is_json_text(c) else None) for c, a in cols.items()])
                ) if cols else pa.table({EMPTY: pa.nulls(len(records))})
                yield Chunk(index, index * self.chunk_rows, table, raw, records, errors, counter.count)
                if claim is not None:
                    want = claim()


def _jsonl_columns(records: list[Any], errors: dict[int, str]) -> list[str]:
    """The columns of a JSON Lines file, from its first chunk's rows: the keys of its objects,
    or, where most rows are not objects (arrays, as in an HTTP request's body, or strings),
    one column, ``value``, holding each line's value."""
    seen: dict[str, None] = {}
    objects = 0
    for rec in records:
        if isinstance(rec, dict):
            seen.update(dict.fromkeys(rec))
            objects += 1
    values = len(records) - len(errors) - objects
    return [VALUE] if values > objects else list(seen)


# A CSV line whose quoted values are all closed, as pyarrow reads quotes: a value that
# starts with a quote is quoted up to the next lone quote ("" is a quote inside it), and
# what follows the closing quote is part of the value; a quote inside an unquoted value
# is a character. _CONTINUED: the rest of a record after a line break inside a quoted value.
_FIELD = rb'(?:"(?:[^"]|"")*+"[^,\r\n]*+|[^,"\r\n][^,\r\n]*+|)'
_CLOSED = re.compile(rb"%s(?:,%s)*+\r?\n?" % (_FIELD, _FIELD))
_CONTINUED = re.compile(rb'(?:[^"]|"")*+"[^,\r\n]*+(?:,%s)*+\r?\n?' % _FIELD)
# the longest line (JSON Lines) or record (CSV) read: a file without line breaks, or a quoted
# value left open, would be held whole in memory
MAX_RECORD = 64 << 20


@dataclass
class BadRecord:
    """A line too long to read, or a CSV line that starts a quoted value never closed: a
    bad row, not parsed."""

    line: bytes
    error: str


def _bounded_lines(stream: Any, limit: int | None = None) -> Iterator[bytes | BadRecord]:
    """The stream's lines, line endings kept; a line longer than ``limit`` (MAX_RECORD) is
    skipped (read in pieces, never held) and given as a bad record."""
    limit = limit or MAX_RECORD
    while line := stream.readline(limit + 1):
        yield _past(stream, limit) if len(line) > limit and not line.endswith(b"\n") else line


def _past(stream: Any, limit: int) -> BadRecord:
    """The rest of a line longer than ``limit`` read past; the line as a bad record."""
    while (more := stream.readline(limit)) and not more.endswith(b"\n"):
        pass
    return BadRecord(b"", f"the line is longer than {limit >> 20} MiB")


def _csv_records(stream: Any, limit: int | None = None) -> Iterator[bytes | BadRecord]:
    """Whole CSV records (a quoted value may hold line breaks), line endings kept. A quoted
    value still open at the end of the file, or after ``limit`` bytes, makes its first line
    a bad record, and the lines after it are read again as records: no row is swallowed."""
    limit = limit or MAX_RECORD
    readline, cap = stream.readline, limit + 1
    back: list[bytes | BadRecord] = []  # lines to read again, last first

    def next_line() -> bytes | BadRecord | None:
        if back:
            return back.pop()
        line = readline(cap)
        return None if not line else _past(stream, limit) if len(line) > limit and not line.endswith(b"\n") else line

    while True:  # next_line() inlined: this loop runs once a line
        line = back.pop() if back else readline(cap)
        if not line:
            return
        if line.__class__ is BadRecord or (len(line) > limit and not line.endswith(b"\n")):
            yield line if line.__class__ is BadRecord else _past(stream, limit)
            continue
        # an even number of quotes: closed, as quoted values are (the regular expression
        # costs ~2 us per line of a quoted CSV, 7x the count); an odd number: a quote in an
        # unquoted value, or one left open
        if not line.count(b'"') % 2 or _CLOSED.fullmatch(line):
            yield line
            continue
        pending, size = [line], len(line)
        while (more := next_line()) is not None:
            pending.append(more)
            if isinstance(more, BadRecord):  # a line too long inside the value: read again after
                size = limit + 1
            else:
                size += len(more)
                if b'"' in more and _CONTINUED.fullmatch(more):
                    yield b"".join(pending)
                    break
            if size > limit:
                yield BadRecord(line, f"a quoted value opened on this line is not closed within {limit >> 20} MiB")
                back.extend(reversed(pending[1:]))
                break
        else:
            yield BadRecord(line, "a quoted value opened on this line is not closed by the end of the file")
            back.extend(reversed(pending[1:]))


class CsvReader(Reader):
    fmt = "csv"

    def __init__(self, url: str, chunk_rows: int | None):
        self.url, self.chunk_rows = url, chunk_rows or TEXT_CHUNK_ROWS
        self.total_bytes = storage.stat(url).size
        self.columns = []

    def chunks(self, claim: Callable[[], int] | None = None) -> Iterator[Chunk]:
        import pyarrow.csv as pcsv

        stream, counter = storage.open_stream(self.url)
        want = claim() if claim is not None else 0
        with stream:
            records = _csv_records(stream)
            header = next(records, None)
            if header is None:
                return
            if isinstance(header, BadRecord):
                raise JubakoError(f"{self.url}: the first line (the header): {header.error}")
            if not header.endswith(b"\n"):
                header += b"\n"
            if not _utf8(pa.py_buffer(header)):
                raise JubakoError(f"{self.url}: the first line (the header) is not UTF-8 text")
            names = pcsv.read_csv(io.BytesIO(header)).column_names if header.strip() else []
            if not names:
                raise JubakoError(f"{self.url}: the first line (the header) names no columns")
            self.columns = names
            for index in itertools.count():
                if index < want:  # another shard's chunk: its records counted, not parsed
                    if _skip(records, self.chunk_rows) < self.chunk_rows:
                        return
                    continue
                convert = pcsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                              strings_can_be_null=False, quoted_strings_can_be_null=False,
                                              include_columns=None if self.only is None else
                                              [c for c in dict.fromkeys(names) if c in self.only])
                # the chunk as one Arrow buffer (and its records' offsets), not a list of
                # line objects joined: with wide lines the heap fragmented and RSS grew
                sink = pa.BufferOutputStream()
                sink.write(header)
                ends: list[int] = []
                last = b""
                forced: dict[int, str] = {}
                for record in itertools.islice(records, self.chunk_rows):
                    if isinstance(record, BadRecord):  # a blank line in its place: no row parsed
                        forced[len(ends)] = record.error
                        record = b"\n"
                    sink.write(record)
                    ends.append(sink.tell())
                    last = record
                if not ends:
                    return
                if not last.endswith(b"\n"):
                    sink.write(b"\n")
                    ends[-1] += 1
                buf = sink.getvalue()
                # pyarrow refuses a whole chunk for one record that is not UTF-8 text
                parse = self._parse if _utf8(buf) else self._without_bad_text
                table, errors = parse(buf, header, ends, convert, len(names))
                errors.update(forced)
                del buf, sink
                yield Chunk(index, index * self.chunk_rows, table, None, None, errors, counter.count)
                if claim is not None:
                    want = claim()

    @classmethod
    def _parse(cls, buf: pa.Buffer, header: bytes, ends: list[int], convert: Any,
               ncols: int) -> tuple[pa.Table, dict[int, str]]:
        """A chunk's records (``buf``: the header, then the records ending at ``ends``) as
        a table of one row per record, and the records that are bad rows."""
        import pyarrow.csv as pcsv

        bad: list[str] = []

        def on_invalid(row: Any) -> str:
            bad.append(row.text)
            return "skip"

        table = pcsv.read_csv(
            pa.BufferReader(buf),
            read_options=pcsv.ReadOptions(use_threads=False, block_size=max(1 << 20, len(buf) + 1)),
            parse_options=pcsv.ParseOptions(invalid_row_handler=on_invalid, newlines_in_values=True),
            convert_options=convert,
        )
        errors: dict[int, str] = {}
        if bad or table.num_rows != len(ends):  # blank lines are skipped by pyarrow
            starts = [len(header), *ends[:-1]]
            lines = [buf.slice(a, b - a).to_pybytes() for a, b in zip(starts, ends, strict=True)]
            if bad:
                table, errors = cls._reinsert(lines, table, bad, ncols)
            if table.num_rows != len(lines):
                table, errors = cls._align(lines, table, errors)
        return table, errors

    @classmethod
    def _without_bad_text(cls, buf: pa.Buffer, header: bytes, ends: list[int], convert: Any,
                          ncols: int) -> tuple[pa.Table, dict[int, str]]:
        """The chunk parsed without its records that are not UTF-8 text (pyarrow refuses the
        whole chunk for one), each of those a bad row."""
        starts = [len(header), *ends[:-1]]
        lines = [buf.slice(a, b - a).to_pybytes() for a, b in zip(starts, ends, strict=True)]
        text_errors: dict[int, str] = {}
        good: list[int] = []
        for i, line in enumerate(lines):
            try:
                line.decode()
                good.append(i)
            except UnicodeDecodeError as e:
                text_errors[i] = f"not UTF-8 text (byte {e.start + 1} of the line)"
        kept = [lines[i] for i in good]
        good_ends = list(itertools.accumulate((len(line) for line in kept), initial=len(header)))[1:]
        table, errors = cls._parse(pa.py_buffer(header + b"".join(kept)), header, good_ends, convert, ncols)
        at = {i: k for k, i in enumerate(good)}
        table = _take(table, [at.get(i) for i in range(len(lines))])
        return table, {**text_errors, **{good[k]: msg for k, msg in errors.items()}}

    @staticmethod
    def _reinsert(lines: list[bytes], table: pa.Table, bad: list[str], ncols: int) -> tuple[pa.Table, dict[int, str]]:
        """Put all-null rows back where pyarrow skipped rows with the wrong field count."""
        errors: dict[int, str] = {}
        remaining = list(bad)
        keep: list[int | None] = []
        j = 0
        for i, line in enumerate(lines):
            text = line.rstrip(b"\r\n").decode(errors="replace")
            if remaining and text == remaining[0]:
                remaining.pop(0)
                fields = len(next(iter(__import__("csv").reader([text])), []))
                errors[i] = f"expected {ncols} fields, got {fields}"
                keep.append(None)
            else:
                keep.append(j)
                j += 1
        return _take(table, keep), errors

    @staticmethod
    def _align(lines: list[bytes], table: pa.Table, errors: dict[int, str]) -> tuple[pa.Table, dict[int, str]]:
        keep: list[int | None] = []
        j = 0
        for i, line in enumerate(lines):
            if i in errors:
                keep.append(None)
            elif not line.strip():
                errors[i] = "empty line"
                keep.append(None)
            else:
                keep.append(j)
                j += 1
        return _take(table, keep), errors


def _utf8(buf: pa.Buffer) -> bool:
    try:
        pa.StringArray.from_buffers(1, pa.array([0, len(buf)], pa.int32()).buffers()[1], buf).validate(full=True)
        return True
    except pa.ArrowInvalid:
        return False


def _take(table: pa.Table, rows: list[int | None]) -> pa.Table:
    return table.take(pa.array(rows, pa.int64()))  # a null index gives an all-null row


class ParquetReader(Reader):
    fmt = "parquet"

    def __init__(self, url: str, chunk_rows: int | None):
        import pyarrow.parquet as pq

        self.url = url
        self.source = storage.open_seekable(url)
        try:
            # a local file memory-mapped: decoding reads the pages in place (about half the
            # CPU per row of reading them into buffers first, for the MLP's 16 floats)
            self.file = pq.ParquetFile(self.source, memory_map=isinstance(self.source, str))
        except (pa.ArrowInvalid, OSError) as e:
            raise JubakoError(f"{url}: not a Parquet file: {e}") from None
        self.total_rows = self.file.metadata.num_rows
        self.columns = self.file.schema_arrow.names
        self.chunk_rows = chunk_rows or _parquet_chunk_rows(self.file.metadata)

    def chunks(self, claim: Callable[[], int] | None = None) -> Iterator[Chunk]:
        if claim is not None:
            yield from self._claimed(claim)
            return
        pending: list[pa.RecordBatch] = []
        have = 0
        index = 0
        batch_size = min(self.chunk_rows, 65536)
        for batch in self.file.iter_batches(batch_size=batch_size):
            pending.append(batch)
            have += batch.num_rows
            while have >= self.chunk_rows:
                table = pa.Table.from_batches(pending)
                yield Chunk(index, index * self.chunk_rows, _only(table.slice(0, self.chunk_rows), self.only))
                rest = table.slice(self.chunk_rows)
                pending = rest.to_batches()
                have = rest.num_rows
                index += 1
        if have:
            yield Chunk(index, index * self.chunk_rows, _only(pa.Table.from_batches(pending), self.only))

    def _row_group_starts(self) -> list[int]:
        md = self.file.metadata
        starts = [0]
        for g in range(md.num_row_groups):
            starts.append(starts[-1] + md.row_group(g).num_rows)
        return starts

    def chunk_ranges(self, first: int) -> list[tuple[int, int]] | None:
        from .claims import group_ranges

        return group_ranges(self._row_group_starts()[:-1], self.total_rows or 0, self.chunk_rows, first)

    def _claimed(self, claim: Callable[[], int]) -> Iterator[Chunk]:
        """The chunks ``claim`` names. A chunk's rows are read from the row group that
        holds its first row on: row groups before it are not read; rows of that row group
        before the chunk are decoded and dropped (Parquet pages cannot be skipped here), which
        is why shards claim a row group's chunks together (claims.py). Consecutive claims in
        the same row group continue the same read."""
        md = self.file.metadata
        starts = self._row_group_starts()
        batch_size = min(self.chunk_rows, 65536)
        it: Iterator[pa.RecordBatch] | None = None
        pos = 0  # the input row of held[0] (or of the next batch of it)
        held: list[pa.RecordBatch] = []
        while True:
            index = claim()
            s = index * self.chunk_rows
            if s >= self.total_rows:  # type: ignore[operator]
                return
            e = min(s + self.chunk_rows, self.total_rows)  # type: ignore[type-var]
            group = bisect.bisect_right(starts, s) - 1
            if it is None or s < pos or group > bisect.bisect_right(starts, pos) - 1:
                names = self.file.schema_arrow.names
                # one thread: a shard has its core, the other shards have theirs
                it = self.file.iter_batches(batch_size=batch_size, row_groups=range(group, md.num_row_groups),
                                            columns=None if self.only is None else
                                            [c for c in names if c in self.only], use_threads=False)
                pos, held = starts[group], []
            got: list[pa.RecordBatch] = []
            while pos < e:
                batch = held.pop(0) if held else next(it, None)
                if batch is None:
                    break
                end = pos + batch.num_rows
                if end <= s:  # before the chunk: decoded, dropped
                    pos = end
                    continue
                lo, hi = max(s - pos, 0), min(e, end) - pos
                got.append(batch.slice(lo, hi - lo))
                if hi < batch.num_rows:
                    held.insert(0, batch.slice(hi))
                pos += hi
            table = pa.Table.from_batches(got, schema=got[0].schema) if got else None
            if table is None:
                return
            yield Chunk(index, s, _only(table, self.only))


def _skip(lines: Iterator[Any], n: int) -> int:
    """Consume up to ``n`` lines (or records); how many there were."""
    count = 0
    for _ in itertools.islice(lines, n):
        count += 1
    return count


def _only(table: pa.Table, names: list[str] | None) -> pa.Table:
    return table if names is None else table.select([c for c in names if c in table.column_names])


# --- writers --------------------------------------------------------------------------


def encode_part(table: pa.Table, fmt: str, first: bool, json_columns: set[str]) -> bytes:
    """One chunk's output part: text parts are concatenated at the end; a Parquet output's
    parts are Arrow IPC streams (the output is encoded by :class:`Output`)."""
    if fmt == "parquet":
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as w:
            w.write_table(table)
        return bytes(sink.getvalue())
    table = _text_safe(table)
    if fmt == "csv":
        import pyarrow.csv as pcsv

        buf = io.BytesIO()
        pcsv.write_csv(_flat_for_csv(table), buf, pcsv.WriteOptions(include_header=first))
        return buf.getvalue()
    out = bytearray()
    names = table.column_names
    columns = [table.column(n).to_pylist() for n in names]
    json_columns = json_columns | {f.name for f in table.schema if f.metadata == JSON_TEXT}
    for row in zip(*columns, strict=True):
        rec = {n: (orjson.Fragment(v) if v is not None and n in json_columns else v)
               for n, v in zip(names, row, strict=True)}
        out += to_json(rec)
        out += b"\n"
    return bytes(out)


def _text_safe(table: pa.Table) -> pa.Table:
    """Columns a text output writes alike in CSV and JSON Lines: binary as base64 text, a
    duration in seconds (CSV would write a count of its unit)."""
    import pyarrow.compute as pc

    for i, (f, col) in enumerate(zip(table.schema, table.columns, strict=True)):
        t = f.type
        if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
            col = pa.array([None if v is None else base64.b64encode(v).decode() for v in col.to_pylist()], pa.string())
        elif pa.types.is_duration(t):
            per_second = {"s": 1, "ms": 1e3, "us": 1e6, "ns": 1e9}[t.unit]
            col = pc.divide(pc.cast(col, pa.int64()).cast(pa.float64()), per_second)
        else:
            continue
        table = table.set_column(i, pa.field(f.name, col.type, metadata=f.metadata), col)
    return table


def _flat_for_csv(table: pa.Table) -> pa.Table:
    """CSV holds scalars: a fixed-size list column becomes ``col_0..col_k``, other nested
    values JSON text."""
    cols, names = [], []
    for name, col in zip(table.column_names, table.columns, strict=True):
        t = col.type
        if pa.types.is_fixed_size_list(t) and not pa.types.is_nested(t.value_type):
            arr = col.combine_chunks()
            flat = arr.flatten()  # null rows have their slots dropped
            import numpy as np

            width = t.list_size
            valid = np.asarray(arr.is_valid())
            values = np.full((len(arr), width), np.nan, dtype=np.float64) if pa.types.is_floating(t.value_type) \
                else np.zeros((len(arr), width), dtype=np.float64)
            values[valid] = flat.to_numpy(zero_copy_only=False).reshape(-1, width)
            for i in range(width):
                cols.append(pa.array(values[:, i], type=t.value_type, mask=~valid))
                names.append(f"{name}_{i}")
        elif pa.types.is_struct(t):  # an object result (objects.py): name_field columns
            for child, values in zip(t, col.combine_chunks().flatten(), strict=True):  # nulls of the row kept
                cols.append(values)
                names.append(f"{name}_{child.name}")
        elif pa.types.is_nested(t):
            cols.append(_json_text(col.to_pylist()))
            names.append(name)
        else:
            cols.append(col)
            names.append(name)
    return pa.table(cols, names=names)


class Output:
    """The output file, written part by part in chunk order as parts commit, so that no
    pass over all the parts is left for the end (docs/batch.md, "Resuming"). Nothing is
    visible at ``url`` before :meth:`commit`: a local temporary file (in ``tmp_dir``, the
    parts folder, so that a killed run's temporary goes with the parts), or an S3
    multipart upload. A Parquet output gets one row group per part."""

    def __init__(self, url: str, fmt: str, tmp_dir: str | None = None):
        self.fmt = fmt
        self.writer = storage.AtomicWriter(url, tmp_dir)
        self.pw: Any = None  # the ParquetWriter, from the first part on
        self.schema: pa.Schema | None = None

    def add_table(self, table: pa.Table, name: str) -> None:
        """One part of a Parquet output, as a table."""
        import pyarrow.parquet as pq

        if self.pw is None:
            self.schema = table.schema
            names, types = table.schema.names, table.schema.types
            # dictionaries pay off for text, not for numbers and tensor rows; min/max
            # statistics serve filters on scalar columns, not on a tensor's elements
            text = [n for n, t in zip(names, types, strict=True) if pa.types.is_string(t) or pa.types.is_large_string(t)]
            scalar = [n for n, t in zip(names, types, strict=True) if not pa.types.is_nested(t)]
            self.pw = pq.ParquetWriter(self.writer, table.schema, use_dictionary=text or False,
                                       compression=compression(table), write_statistics=scalar or False)
        elif table.schema != self.schema:
            try:
                table = table.cast(self.schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as e:
                raise JubakoError(f"{name}: its columns differ from the first part's: {e}") from None
        self.pw.write_table(table)

    def add_bytes(self, data: bytes) -> None:
        """One part of a text output (CSV or JSON Lines), as encoded."""
        self.writer.write(data)

    def add_part(self, parts: storage.Parts, name: str) -> None:
        """A part already committed (a resumed run's), read back from the parts folder."""
        with parts.open(name) as f:
            if self.fmt == "parquet":
                self.add_table(pa.ipc.open_stream(f).read_all(), name)
            else:
                while block := f.read(1 << 20):
                    self.writer.write(block)

    def commit(self) -> None:
        if self.fmt == "parquet":
            if self.pw is None:
                raise JubakoError("no rows to write")
            self.pw.close()
        self.writer.commit()

    def abort(self) -> None:
        if self.pw is not None:
            try:
                self.pw.close()
            except Exception:  # noqa: S110 - the file is dropped anyway
                pass
        self.writer.abort()


# a column that snappy shrinks by less than this on the first part is written uncompressed:
# the MLP's class probabilities shrank 7 %, for 28 % of the CPU the output's encoding took
# (0.089 -> 0.064 us per row; bench/README.md), and the coordinator encodes every row
MIN_SAVING = 0.10
SAMPLE_BYTES = 1 << 20


def compression(table: pa.Table) -> dict[str, str]:
    """Parquet's usual codec (snappy) for each column where it pays on ``table`` (the
    first part), none where it does not: the floats a model computes rarely compress."""
    codecs = {}
    for name, col in zip(table.column_names, table.columns, strict=True):
        sample = [b.slice(0, min(b.size, SAMPLE_BYTES)) for chunk in col.chunks[:1] for b in chunk.buffers() if b is not None]
        size = sum(b.size for b in sample)
        packed = sum(len(pa.compress(b, "snappy", asbytes=True)) for b in sample if b.size)
        codecs[name] = "snappy" if size == 0 or packed <= (1 - MIN_SAVING) * size else "none"
    return codecs


def assemble(parts: storage.Parts, names: list[str], fmt: str, output: str) -> None:
    """Join finished parts into ``output``: all of it appears at once or nothing does."""
    out = Output(output, fmt)
    try:
        for name in names:
            out.add_part(parts, name)
        out.commit()
    except BaseException:
        out.abort()
        raise
