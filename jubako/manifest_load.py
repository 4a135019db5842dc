"""A manifest's YAML, loaded fast when its file list is written the way jubako writes it.

The list of files is most of a big manifest (30 000 files: 4 MB of YAML, about two seconds
of PyYAML's constructor even with libyaml). Jubako writes each entry as three lines
(``- path: P`` / ``  size: N`` / ``  sha256: H``, registry/domain/canonical.py), so when
the whole ``files:`` block is made of such lines, with values YAML reads as the strings and
the integer they look like, the block is read with one regular expression and only the
text around it goes through ``safeyaml.load``. Anything else (other spellings, quoting,
comments, a second ``files`` key, document markers) takes the ordinary load, and so does
any text around the block that is not a mapping by itself: the result is always what
``safeyaml.load`` of the whole document gives.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.nodes import ScalarNode

from . import safeyaml

_STR = "tag:yaml.org,2002:str"
_resolver = yaml.resolver.Resolver()
_ENTRY = re.compile(
    rb"- path: ([A-Za-z0-9_][A-Za-z0-9_./-]*)\n  size: (0|[1-9][0-9]*)\n  sha256: ([0-9a-f]{64})\n"
)
_BLOCK = re.compile(rb"^files:\n((?:" + _ENTRY.pattern + rb")+)(?=\Z|[A-Za-z_])", re.M)
_FILES_KEY = re.compile(rb"^files\s*:", re.M)
_MARKERS = re.compile(rb"^(?:---|\.\.\.|%)", re.M)


def _is_str(value: str) -> bool:
    return _resolver.resolve(ScalarNode, value, (True, False)) == _STR


def _mapping(text: bytes) -> dict[str, Any] | None:
    if not text.strip():
        return {}
    try:
        out = safeyaml.load(text)
    except (yaml.YAMLError, safeyaml.UnsafeYAML):
        return None
    return out if isinstance(out, dict) and "files" not in out else None


def _fast(data: bytes) -> dict[str, Any] | None:
    if len(_FILES_KEY.findall(data)) != 1 or _MARKERS.search(data):
        return None
    block = _BLOCK.search(data)
    if block is None:
        return None
    files = []
    for path, size, sha in _ENTRY.findall(block.group(1)):
        p, s = path.decode(), sha.decode()
        if not (_is_str(p) and (not s.isdigit() or _is_str(s))):
            return None
        files.append({"path": p, "size": int(size), "sha256": s})
    before, after = _mapping(data[: block.start()]), _mapping(data[block.end() :])
    if before is None or after is None:
        return None
    return {**before, "files": files, **after}


def load(data: bytes) -> Any:
    """``safeyaml.load(data)``, faster for a manifest of many files in jubako's layout."""
    if isinstance(data, bytes) and b"files:\n- path: " in data:
        fast = _fast(data)
        if fast is not None:
            return fast
    return safeyaml.load(data)
