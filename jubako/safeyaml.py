"""YAML from untrusted hands (manifests pushed to the registry, archives being imported).

``yaml.safe_load`` builds no arbitrary objects, but it still follows aliases: a 524-byte
document of nested aliases expands to megabytes once validated or dumped (the "billion
laughs"), and a deeply nested document exhausts Python's recursion (a 500, not a 4xx).
Manifests that jubako writes never use anchors or aliases and nest a few levels deep, so
this loader refuses aliases outright and bounds the nesting depth.

The checks run on the parser's events, before anything is composed: with libyaml
(``yaml.__with_libyaml__``) both that scan and the load run in C (a 30 000-file manifest
loads in about a second instead of seven with the pure-Python classes). The cyclic
garbage collector is paused while a document is built: the hundreds of thousands of nodes
and objects a big manifest makes, all alive, would otherwise set off collections that
walk them again and again (two thirds of the load's time); reference counting still frees
whatever dies meanwhile. The pause is process-wide, so it is counted (concurrent loads in
server threads nest; the last one out restores the collector) and bounded: while loads
keep overlapping, one finishing after ``MAX_PAUSE_S`` runs a collection, so cyclic garbage
from other threads cannot pile up for as long as a stream of pushes lasts.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    DocumentEndEvent,
)

MAX_DEPTH = 64  # mappings and sequences inside each other (docs/registry.md)
MAX_PAUSE_S = 2.0  # longest the collector stays paused while loads overlap

_Loader: type = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader


class UnsafeYAML(ValueError):
    pass


def _at(event: Any) -> str:
    mark = getattr(event, "start_mark", None)
    return f", line {mark.line + 1}" if mark is not None else ""


def _check(data: bytes | str) -> None:
    """Refuse an alias, or nesting deeper than ``MAX_DEPTH``, in the first document.

    Only the first document is scanned: the load that follows reads no further than the
    start of a second one (and refuses it), as the composer always did."""
    depth = 0
    for event in yaml.parse(data, Loader=_Loader):
        if isinstance(event, AliasEvent):
            raise UnsafeYAML(f"aliases are not allowed (alias *{event.anchor}{_at(event)})")
        if isinstance(event, CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise UnsafeYAML(f"nested more than {MAX_DEPTH} levels deep{_at(event)}")
        elif isinstance(event, CollectionEndEvent):
            depth -= 1
        elif isinstance(event, DocumentEndEvent):
            return


def load(data: bytes | str) -> Any:
    """Like ``yaml.safe_load``; raises ``UnsafeYAML`` (a ValueError) on an alias or on
    nesting deeper than ``MAX_DEPTH``, and ``yaml.YAMLError`` on invalid YAML."""
    _check(data)
    with _gc_paused():
        return yaml.load(data, Loader=_Loader)  # noqa: S506 - a safe loader, checked above


_gc_lock = threading.Lock()
_gc_pausers = 0
_gc_was_enabled = False
_gc_paused_at = 0.0
_clock = time.monotonic  # tests move it


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic collector; concurrent loads (server threads) nest, and the last one
    out restores the state that the first one in found. A load finishing while others still
    run, after the collector has been paused for ``MAX_PAUSE_S``, collects once (overlapping
    loads would otherwise keep it off for good)."""
    global _gc_pausers, _gc_was_enabled, _gc_paused_at
    with _gc_lock:
        if _gc_pausers == 0:
            _gc_was_enabled = gc.isenabled()
            _gc_paused_at = _clock()
            gc.disable()
        _gc_pausers += 1
    try:
        yield
    finally:
        collect = False
        with _gc_lock:
            _gc_pausers -= 1
            if _gc_pausers == 0:
                if _gc_was_enabled:
                    gc.enable()
            elif _gc_was_enabled and _clock() - _gc_paused_at > MAX_PAUSE_S:
                _gc_paused_at = _clock()
                collect = True
        if collect:
            gc.collect()
