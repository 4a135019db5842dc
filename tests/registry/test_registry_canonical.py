"""The registry's fast canonical dump is byte for byte ``Manifest.dump()``: the digest of
a version is taken over these bytes, and clients compute it with ``dump()``."""

from __future__ import annotations

import hashlib
import string

from hypothesis import given, settings
from hypothesis import strategies as st
from jubako.registry.domain.canonical import dump

from jubako.manifest import BentoManifest, FileEntry, ModelManifest, ModelRef, utcnow

# Paths that take the template, and paths the emitter quotes, escapes or folds.
plainish = st.text(string.ascii_letters + string.digits + "_./-", min_size=1, max_size=40)
unusual = st.sampled_from(
    ["true", "null", "123", "0b101", "1.5", ".inf", "~", "=", "-a", "a b", "a: b", "#x", "é/ü",
     "x\ny", "'q'", '"q"', "a" * 200, "a " * 60, "2001-12-14", "1:20", "0x1F", "\u2028", "ǅ"]
)
paths = st.one_of(plainish, unusual, st.text(min_size=1, max_size=30))
digests = st.one_of(
    st.binary(max_size=8).map(lambda b: hashlib.sha256(b).hexdigest()),
    st.sampled_from(["0" * 64, "0b" + "01" * 31, "1" * 63 + "e", "e" * 64]),
)
entries = st.builds(FileEntry, path=paths, size=st.integers(0, 2**53), sha256=digests)
values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=60)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=10), inner, max_size=3)),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(files=st.lists(entries, max_size=12), metadata=st.dictionaries(st.text(max_size=12), values,
       max_size=4), description=st.text(max_size=120))
def test_a_model_manifest_dumps_as_dump_does(files, metadata, description) -> None:  # type: ignore[no-untyped-def]
    m = ModelManifest(name="m", version="v1", created_at=utcnow(), framework="torch",
                      format="torch.state_dict", files=files, metadata=metadata,
                      description=description)
    assert dump(m) == m.dump()


@settings(max_examples=100, deadline=None)
@given(files=st.lists(entries, max_size=6), labels=st.dictionaries(st.text(max_size=8),
       st.text(max_size=20), max_size=3))
def test_a_bento_manifest_dumps_as_dump_does(files, labels) -> None:  # type: ignore[no-untyped-def]
    m = BentoManifest(name="b", version="v1", created_at=utcnow(), service="svc:S", files=files,
                      labels=labels,
                      models=[ModelRef(tag="m:v1", digest="sha256:" + "a" * 64)])
    assert dump(m) == m.dump()


def test_thirty_thousand_files_dump_as_dump_does() -> None:
    files = [FileEntry(path=f"d{i % 100}/f{i}.bin", size=i, sha256=hashlib.sha256(b"%d" % i)
                       .hexdigest()) for i in range(30_000)]
    m = ModelManifest(name="m", version="v1", created_at=utcnow(), framework="torch",
                      format="torch.state_dict", files=files)
    assert dump(m) == m.dump()
