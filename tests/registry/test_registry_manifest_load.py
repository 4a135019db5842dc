"""The fast load of a manifest's file list (jubako/manifest_load.py, issue 13 item 5)
gives exactly what ``safeyaml.load`` gives, or falls back to it: checked on jubako's own
layout and on documents built to look like it but read otherwise by YAML."""

from __future__ import annotations

import hashlib

import pytest
import yaml

from jubako import manifest_load, safeyaml
from jubako.manifest import FileEntry, ModelManifest, parse_manifest, utcnow

SHA = hashlib.sha256(b"x").hexdigest()
HEAD = b"schema_version: 1\nname: m\nversion: v1\ncreated_at: '2026-11-30T06:25:34Z'\n"
TAIL = b"kind: model\nframework: torch\nformat: x\n"


def entry(path: str = "a/b.bin", size: str = "8", sha: str = SHA) -> bytes:
    return f"- path: {path}\n  size: {size}\n  sha256: {sha}\n".encode()


def canonical(n: int) -> bytes:
    files = [FileEntry(path=f"d/f{i}.bin", size=i, sha256=hashlib.sha256(b"%d" % i).hexdigest())
             for i in range(n)]
    return ModelManifest(name="m", version="v1", created_at=utcnow(), framework="torch",
                         format="x", files=files).dump()


def test_jubako_layout_takes_the_fast_path_and_reads_the_same() -> None:
    data = canonical(500)
    fast = manifest_load._fast(data)
    assert fast is not None and len(fast["files"]) == 500
    assert fast == safeyaml.load(data)
    assert parse_manifest(data, "m", ModelManifest).model_dump() == ModelManifest.model_validate(
        safeyaml.load(data)
    ).model_dump()


TRICKY = {
    # the files block inside a multi-line quoted string: text, not a list
    "quoted": HEAD + b'description: "x\nfiles:\n' + entry() + b'"\n' + TAIL,
    "single-quoted": HEAD + b"description: 'x\nfiles:\n" + entry() + b"'\n" + TAIL,
    "second key": HEAD + b"files:\n" + entry() + TAIL + b"files: []\n",
    "files first in flow": HEAD + b"labels: {a: b,\nfiles: c}\nfiles:\n" + entry() + TAIL,
    "int sha": HEAD + b"files:\n" + entry(sha="1" * 64) + TAIL,
    "octal-looking sha": HEAD + b"files:\n" + entry(sha="0" + "9" * 63) + TAIL,
    "float path": HEAD + b"files:\n" + entry(path="1.5") + TAIL,
    "bool path": HEAD + b"files:\n" + entry(path="yes") + TAIL,
    "null path": HEAD + b"files:\n" + entry(path="null") + TAIL,
    "int path": HEAD + b"files:\n" + entry(path="0x1f") + TAIL,
    "fourth key": HEAD + b"files:\n" + entry() + b"  extra: 1\n" + TAIL,
    "comment after": HEAD + b"files:\n" + entry() + b"# c\n" + TAIL,
    "other entry": HEAD + b"files:\n" + entry() + b"- path: 'q'\n  size: 1\n  sha256: x\n" + TAIL,
    "two documents": HEAD + b"files:\n" + entry() + b"---\n" + TAIL,
    "document end": HEAD + b"...\nfiles:\n" + entry() + TAIL,
    "crlf": (HEAD + b"files:\n" + entry() + TAIL).replace(b"\n", b"\r\n"),
    "duplicate keys": HEAD + b"files:\n" + entry() + b"name: other\n" + TAIL,
    "not a mapping before": b"- a\nfiles:\n" + entry() + TAIL,
    "alias": HEAD + b"labels: &l {a: b}\nfiles:\n" + entry() + b"metadata: *l\n" + TAIL,
    "at the end": HEAD + TAIL + b"files:\n" + entry() + entry(path="c"),
    "no final newline": HEAD + TAIL + b"files:\n" + entry()[:-1],
    "plain continuation": HEAD + b"description: a\n files:\n" + entry() + TAIL,
}


@pytest.mark.parametrize("name", sorted(TRICKY))
def test_tricky_documents_read_as_yaml_reads_them(name: str) -> None:
    data = TRICKY[name]
    try:
        want = safeyaml.load(data)
    except (yaml.YAMLError, safeyaml.UnsafeYAML) as e:
        with pytest.raises(type(e)):
            manifest_load.load(data)
        return
    assert manifest_load.load(data) == want
