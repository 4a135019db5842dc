"""jubako.safeyaml on libyaml: the same refusals, errors and objects as the pure-Python
loader it replaced (issue 13 item 5), which is kept here as the reference."""

from __future__ import annotations

import gc
import hashlib
from typing import Any

import pytest
import yaml
from yaml.events import AliasEvent, CollectionStartEvent

from jubako import safeyaml
from jubako.manifest import FileEntry, ModelManifest, parse_manifest, utcnow


class _ReferenceLoader(yaml.SafeLoader):
    """safeyaml's loader before libyaml: refusals while composing, pure Python."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(AliasEvent):
            event = self.peek_event()
            raise safeyaml.UnsafeYAML(
                f"aliases are not allowed (alias *{event.anchor}{safeyaml._at(event)})")
        if self.check_event(CollectionStartEvent):
            self._depth += 1
            if self._depth > safeyaml.MAX_DEPTH:
                raise safeyaml.UnsafeYAML(f"nested more than {safeyaml.MAX_DEPTH} levels deep"
                                          f"{safeyaml._at(self.peek_event())}")
            try:
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1
        return super().compose_node(parent, index)


def reference_load(data: bytes | str) -> Any:
    loader = _ReferenceLoader(data)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def outcome(load: Any, data: bytes | str) -> tuple[str, Any]:
    try:
        return "ok", load(data)
    except safeyaml.UnsafeYAML as e:
        return "unsafe", str(e)
    except yaml.YAMLError:
        return "invalid", None  # libyaml words its syntax errors its own way


def nested(depth: int) -> str:
    return "deep: " + "[" * depth + "]" * depth + "\n"


def alias_bomb(levels: int = 9) -> str:
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_uses_libyaml_when_there() -> None:
    assert yaml.__with_libyaml__  # the image and CI install PyYAML's wheels, with libyaml
    assert safeyaml._Loader is yaml.CSafeLoader


def test_alias_bomb_and_too_deep_documents_are_still_refused() -> None:
    with pytest.raises(safeyaml.UnsafeYAML, match=r"aliases are not allowed \(alias \*l0, line 2\)"):
        safeyaml.load(alias_bomb())
    with pytest.raises(safeyaml.UnsafeYAML, match=r"alias \*a"):
        safeyaml.load(b"a: &a x\nb: {c: [1, *a]}\n")
    with pytest.raises(safeyaml.UnsafeYAML,
                       match=f"nested more than {safeyaml.MAX_DEPTH} levels deep, line 1"):
        safeyaml.load(nested(safeyaml.MAX_DEPTH))  # the top mapping is a level too
    with pytest.raises(safeyaml.UnsafeYAML, match="levels deep"):
        safeyaml.load("x:\n" + "".join("  " * i + "-\n" for i in range(1, 100)))
    with pytest.raises(safeyaml.UnsafeYAML, match="levels deep"):
        safeyaml.load(nested(200_000))  # no RecursionError, no 500
    assert safeyaml.load(nested(safeyaml.MAX_DEPTH - 1))["deep"] is not None
    assert gc.isenabled()


CASES = [
    "",
    "a: 1\n",
    "- 1\n- 2.5\n- .inf\n- true\n- null\n- ~\n- 0x1f\n- 0o17\n- 1_000\n- 2026-11-30\n"
    "- 2026-11-30T03:45:31Z\n- '1'\n- \"x\\ty\"\n- !!str 12\n- !!binary aGk=\n",
    "a: &x 1\nb: 2\n",  # an anchor that nothing refers to was, and is, accepted
    "<<: {a: 1}\nb: 2\n",
    "? [1, 2]\n: x\n",  # an unhashable key: a ConstructorError (a YAMLError)
    "a: 1\n---\nb: 2\n",  # two documents: refused as before
    "a: 1\n---\nb: *nothing\n",  # an alias in a second document: "expected a single document"
    "a: 1\n...\n",
    "a: [1, *x]\n---\nb: 2\n",
    "a: [unclosed\n",
    "a: 1\n a: 2\n",
    "a: !!python/object:os.system x\n",
    "{a: 1, a: 2}\n",
    "k: |\n  multi\n  line\n",
    "\ufeffa: b\n",
    nested(safeyaml.MAX_DEPTH),
    nested(safeyaml.MAX_DEPTH - 1),
    alias_bomb(),
    "x: [" + "{" * 70 + "}" * 70 + "]\n",
]


@pytest.mark.parametrize("text", CASES)
@pytest.mark.parametrize("as_bytes", [False, True])
def test_same_outcome_as_the_pure_python_loader(text: str, as_bytes: bool) -> None:
    data: bytes | str = text.encode() if as_bytes else text
    assert outcome(safeyaml.load, data) == outcome(reference_load, data)


def test_a_30000_file_manifest_parses_to_the_same_object_as_before() -> None:
    files = []
    for i in range(30_000):
        body = f"file {i}".encode()
        files.append(FileEntry(path=f"d{i // 1000}/f{i}.txt", size=len(body),
                               sha256=hashlib.sha256(body).hexdigest()))
    m = ModelManifest(name="many", version="v1", created_at=utcnow(), framework="torch",
                      format="torch.state_dict", files=files, metadata={"k": [1, {"x": None}]})
    data = m.dump()
    gc.disable()  # the reference loader takes 3 times longer with it
    try:
        before = reference_load(data)
    finally:
        gc.enable()
    assert safeyaml.load(data) == before
    assert parse_manifest(data, "model.yaml", ModelManifest) == m


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_overlapping_loads_restore_the_collector_and_do_not_starve_it(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Server threads load concurrently: the collector comes back when the last load ends,
    and while loads keep overlapping past MAX_PAUSE_S, cyclic garbage is still collected."""
    import weakref

    now = [100.0]
    monkeypatch.setattr(safeyaml, "_clock", lambda: now[0])
    assert gc.isenabled()
    first = safeyaml._gc_paused()
    first.__enter__()  # a long load in one thread...
    try:
        assert not gc.isenabled()
        garbage = _Cycle()
        dead = weakref.ref(garbage)
        del garbage
        with safeyaml._gc_paused():  # ...and a short one in another, ended early
            pass
        assert dead() is not None and not gc.isenabled()  # within the bound: no collection
        now[0] += safeyaml.MAX_PAUSE_S + 1
        with safeyaml._gc_paused():  # a load ending past the bound collects
            pass
        assert dead() is None
        assert not gc.isenabled()  # the long load still runs
    finally:
        first.__exit__(None, None, None)
    assert gc.isenabled()
