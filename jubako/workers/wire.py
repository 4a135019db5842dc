"""Proxy <-> worker framing: one binary message per batch over a TCP stream.

Every frame is ``u32 length`` + body, network byte order. A body starts with
``u8 kind, u32 id``. Payloads are either one tensor (``u8 len + dtype name, u8 ndim,
i64 dims..., raw C-order bytes``) or a list of byte segments (``u32 count, u32 len...,
bytes...``): JSON items travel as the client's own orjson-parsable bytes, text as UTF-8,
bytes as they came. docs/runtime.md has the full table.

    CALL    id, u16 len + api name, u16 requests, u32 items per request..., payload
    RESULT  id, f64 exec seconds, f64 wait seconds, u16 requests, u16 status per request...,
            u8 has tensor, [tensor of the ok requests' rows, in order], segments
            (per request: the encoded output or, for a failed request, its error message)
    HELLO   id=0, segments [orjson {"pid":..., "apis": [...]}], sent by the worker on connect
"""

from __future__ import annotations

import struct
from collections.abc import Container
from dataclasses import dataclass

import numpy as np

CALL, RESULT, HELLO = 1, 2, 3
TENSOR, SEGMENTS = 1, 2

_LEN = struct.Struct("!I")
_HEAD = struct.Struct("!BI")
_TIMES = struct.Struct("!ddH")
MAX_FRAME = 1 << 31


MAX_ID = 0xFFFFFFFF  # ids are u32 on the wire; 0 is the HELLO's


class MessageIds:
    """CALL ids: 1, 2, ... MAX_ID, then 1 again (a counter would overflow its u32 field
    after 4 billion calls and fail every later one), skipping ids still in flight."""

    def __init__(self, start: int = 1):
        self._next = start

    def take(self, busy: Container[int] = ()) -> int:
        while True:
            mid = self._next
            self._next = mid + 1 if mid < MAX_ID else 1
            if mid not in busy:
                return mid


def _tensor(arr: np.ndarray) -> list[bytes]:
    arr = np.ascontiguousarray(arr)
    name = arr.dtype.str.encode()  # e.g. b"<f4": explicit byte order
    return [
        struct.pack(f"!B{len(name)}sB{arr.ndim}q", len(name), name, arr.ndim, *arr.shape),
        arr.data.cast("B") if arr.size else b"",
    ]


def _read_tensor(buf: memoryview, pos: int) -> tuple[np.ndarray, int]:
    (nlen,) = struct.unpack_from("!B", buf, pos)
    dtype = np.dtype(bytes(buf[pos + 1 : pos + 1 + nlen]).decode())
    pos += 1 + nlen
    (ndim,) = struct.unpack_from("!B", buf, pos)
    shape = struct.unpack_from(f"!{ndim}q", buf, pos + 1)
    pos += 1 + 8 * ndim
    size = dtype.itemsize * int(np.prod(shape, dtype=np.int64))
    arr = np.frombuffer(buf[pos : pos + size], dtype=dtype).reshape(shape)
    return arr, pos + size


def _segments(parts: list[bytes]) -> list[bytes]:
    return [struct.pack(f"!I{len(parts)}I", len(parts), *map(len, parts)), *parts]


def _read_segments(buf: memoryview, pos: int) -> tuple[list[bytes], int]:
    (count,) = struct.unpack_from("!I", buf, pos)
    lens = struct.unpack_from(f"!{count}I", buf, pos + 4)
    pos += 4 + 4 * count
    out = []
    for n in lens:
        out.append(bytes(buf[pos : pos + n]))
        pos += n
    return out, pos


def _frame(parts: list[bytes]) -> bytes:
    body = b"".join(parts)
    return _LEN.pack(len(body)) + body


def encode_call(
    msg_id: int, api: str, sizes: list[int], tensor: np.ndarray | None = None,
    segments: list[bytes] | None = None,
) -> bytes:
    name = api.encode()
    parts = [
        _HEAD.pack(CALL, msg_id),
        struct.pack(f"!H{len(name)}sH{len(sizes)}I", len(name), name, len(sizes), *sizes),
    ]
    if tensor is not None:
        parts.append(b"\x01")
        parts += _tensor(tensor)
    else:
        parts.append(b"\x02")
        parts += _segments(segments or [])
    return _frame(parts)


@dataclass(slots=True)
class Call:
    id: int
    api: str
    sizes: tuple[int, ...]
    tensor: np.ndarray | None
    segments: list[bytes] | None


def decode_call(body: memoryview) -> Call:
    _, msg_id = _HEAD.unpack_from(body, 0)
    (nlen,) = struct.unpack_from("!H", body, 5)
    api = bytes(body[7 : 7 + nlen]).decode()
    pos = 7 + nlen
    (count,) = struct.unpack_from("!H", body, pos)
    sizes = struct.unpack_from(f"!{count}I", body, pos + 2)
    pos += 2 + 4 * count
    kind = body[pos]
    if kind == TENSOR:
        tensor, _ = _read_tensor(body, pos + 1)
        return Call(msg_id, api, sizes, tensor, None)
    segments, _ = _read_segments(body, pos + 1)
    return Call(msg_id, api, sizes, None, segments)


@dataclass(slots=True)
class Result:
    id: int
    exec_seconds: float
    wait_seconds: float
    statuses: tuple[int, ...]
    tensor: np.ndarray | None
    segments: list[bytes]


def encode_result(
    msg_id: int, exec_seconds: float, wait_seconds: float, statuses: list[int],
    segments: list[bytes], tensor: np.ndarray | None = None,
) -> bytes:
    n = len(statuses)
    parts = [
        _HEAD.pack(RESULT, msg_id),
        _TIMES.pack(exec_seconds, wait_seconds, n),
        struct.pack(f"!{n}H", *statuses),
    ]
    if tensor is not None:
        parts.append(b"\x01")
        parts += _tensor(tensor)
    else:
        parts.append(b"\x00")
    parts += _segments(segments)
    return _frame(parts)


def decode_result(body: memoryview) -> Result:
    _, msg_id = _HEAD.unpack_from(body, 0)
    exec_s, wait_s, n = _TIMES.unpack_from(body, 5)
    pos = 5 + _TIMES.size
    statuses = struct.unpack_from(f"!{n}H", body, pos)
    pos += 2 * n
    tensor = None
    has_tensor = body[pos]
    pos += 1
    if has_tensor:
        tensor, pos = _read_tensor(body, pos)
    segments, _ = _read_segments(body, pos)
    return Result(msg_id, exec_s, wait_s, statuses, tensor, segments)


def encode_hello(info: bytes) -> bytes:
    return _frame([_HEAD.pack(HELLO, 0), *_segments([info])])


def decode_hello(body: memoryview) -> bytes:
    return _read_segments(body, 5)[0][0]


def kind_of(body: memoryview) -> int:
    return body[0]


class FrameReader:
    """Accumulates stream bytes and yields complete frame bodies."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[memoryview]:
        buf = self._buf
        buf += data
        frames: list[memoryview] = []
        pos = 0
        end = len(buf)
        while end - pos >= 4:
            (n,) = _LEN.unpack_from(buf, pos)
            if n >= MAX_FRAME:
                raise ValueError(f"frame of {n} bytes is too large")
            if end - pos - 4 < n:
                break
            frames.append(memoryview(buf[pos + 4 : pos + 4 + n]))  # a writable copy
            pos += 4 + n
        if pos:
            del buf[:pos]
        return frames


def decode_result_times(frame: bytes) -> float:
    """The execution seconds of an encoded RESULT frame (length prefix included)."""
    return _TIMES.unpack_from(frame, _LEN.size + _HEAD.size)[0]
