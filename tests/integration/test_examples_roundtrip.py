"""The examples, end to end: build -> verify -> export -> import -> load -> same outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jubako import archive
from jubako.bundle import verify_bundle
from jubako.store import Store

PREDICT = Path(__file__).with_name("predict.py")


def predict(home: Path, ref: str) -> dict:
    out = subprocess.run(
        [sys.executable, str(PREDICT), ref], env={**os.environ, "JUBAKO_HOME": str(home)},
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout)


@pytest.mark.parametrize("name, compression", [("mlp-torch", "gzip"), ("mlp-onnx", "zstd")])
def test_example_round_trip(example_store: Store, tmp_path: Path, name: str, compression: str) -> None:
    bento = example_store.bentos.get(name)
    assert verify_bundle(bento.path, bento.manifest) == []
    for ref in bento.manifest.models:
        model = example_store.models.get(ref.tag)
        assert verify_bundle(model.path, model.manifest) == []

    path = tmp_path / f"{name}{archive.SUFFIXES[compression]}"
    with open(path, "wb") as f:
        archive.export(bento, f, compression, store=example_store)
    target = Store(tmp_path / "elsewhere")
    with open(path, "rb") as f:
        imported = archive.import_archive(f, target).bundle
    assert imported.manifest.files == bento.manifest.files
    assert imported.manifest.digest() == bento.manifest.digest()
    for ref in bento.manifest.models:
        assert target.models.get(ref.tag).manifest.files == example_store.models.get(ref.tag).manifest.files

    before = predict(example_store.home, str(bento.tag))
    after = predict(target.home, str(bento.tag))
    assert after == before  # same digest and bit-identical outputs
    assert len(after["predict"]) == 5 and all(abs(sum(row) - 1) < 1e-5 for row in after["predict"])


def test_self_contained_directory_serves_without_a_store(example_store: Store, tmp_path: Path) -> None:
    """An extracted archive (what `jubako pull --output` gives a pod) loads with an empty store."""
    bento = example_store.bentos.get("mlp-onnx")
    path = tmp_path / "b.tar"
    with open(path, "wb") as f:
        archive.export(bento, f, store=example_store)
    with open(path, "rb") as f:
        archive.extract(f, tmp_path / "bento")
    out = predict(tmp_path / "empty-home", str(tmp_path / "bento"))
    assert out == predict(example_store.home, str(bento.tag))
