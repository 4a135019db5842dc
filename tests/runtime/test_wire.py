"""Wire framing: message ids stay within their u32 field for ever."""

from __future__ import annotations

from jubako.workers import wire


def test_message_ids_wrap_within_u32_and_skip_ids_still_in_flight() -> None:
    ids = wire.MessageIds(start=wire.MAX_ID - 1)
    got = [ids.take(), ids.take(), ids.take(), ids.take(busy={2, 3})]
    assert got == [wire.MAX_ID - 1, wire.MAX_ID, 1, 4]
    for mid in got:
        frame = wire.encode_call(mid, "f", [1], segments=[b"1"])
        assert wire.decode_call(memoryview(frame)[4:]).id == mid


def test_message_ids_never_take_zero_the_hello_id() -> None:
    ids = wire.MessageIds(start=wire.MAX_ID)
    assert [ids.take(), ids.take()] == [wire.MAX_ID, 1]
