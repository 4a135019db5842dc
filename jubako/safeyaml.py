"""YAML from untrusted hands (manifests pushed to the registry, archives being imported).

``yaml.safe_load`` builds no arbitrary objects, but it still follows aliases: a 524-byte
document of nested aliases expands to megabytes once validated or dumped (the "billion
laughs"), and a deeply nested document exhausts Python's recursion (a 500, not a 4xx).
Manifests that jubako writes never use anchors or aliases and nest a few levels deep, so
this loader refuses aliases outright and bounds the nesting depth while composing.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.events import AliasEvent, CollectionStartEvent

MAX_DEPTH = 64  # mappings and sequences inside each other (docs/registry.md)


class UnsafeYAML(ValueError):
    pass


class _Loader(yaml.SafeLoader):
    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(AliasEvent):
            event = self.peek_event()
            raise UnsafeYAML(f"aliases are not allowed (alias *{event.anchor}{_at(event)})")
        if self.check_event(CollectionStartEvent):
            self._depth += 1
            if self._depth > MAX_DEPTH:
                raise UnsafeYAML(
                    f"nested more than {MAX_DEPTH} levels deep{_at(self.peek_event())}"
                )
            try:
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1
        return super().compose_node(parent, index)


def _at(event: Any) -> str:
    mark = getattr(event, "start_mark", None)
    return f", line {mark.line + 1}" if mark is not None else ""


def load(data: bytes | str) -> Any:
    """Like ``yaml.safe_load``; raises ``UnsafeYAML`` (a ValueError) on an alias or on
    nesting deeper than ``MAX_DEPTH``, and ``yaml.YAMLError`` on invalid YAML."""
    loader = _Loader(data)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
