"""Reading, checking and writing bundle directories (a manifest plus its files)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from .digest import sha256_file
from .errors import InvalidBundle
from .manifest import BENTO_MANIFEST, MODEL_MANIFEST, FileEntry, Manifest

MANIFEST_NAMES = (BENTO_MANIFEST, MODEL_MANIFEST)


def file_entries(root: Path, relpaths: Iterable[str]) -> list[FileEntry]:
    """Hash the given files under ``root`` into sorted manifest entries."""
    entries = []
    for rel in sorted(set(relpaths)):
        size, digest = sha256_file(root / rel)
        entries.append(FileEntry(path=rel, size=size, sha256=digest))
    return entries


MODELS_DIR = "models"  # a self-contained bento keeps its models here, outside its manifest


def walk_files(root: Path, skip_top: tuple[str, ...] = ()) -> list[str]:
    """Every file under ``root`` as a POSIX relative path, manifests and ``skip_top`` excluded."""
    out = []
    for dirpath, dirs, files in os.walk(root):
        if Path(dirpath) == root:
            dirs[:] = [d for d in dirs if d not in skip_top]
        for f in files:
            rel = Path(dirpath, f).relative_to(root).as_posix()
            if rel not in MANIFEST_NAMES:
                out.append(rel)
    return out


def verify_bundle(root: Path, manifest: Manifest) -> list[str]:
    """Problems between a bundle directory and its manifest; empty when they agree."""
    problems = []
    listed = {f.path: f for f in manifest.files}
    present = set(walk_files(root, (MODELS_DIR,) if manifest.kind == "bento" else ()))
    for rel in sorted(present - listed.keys()):
        problems.append(f"{rel}: not listed in the manifest")
    for rel, entry in sorted(listed.items()):
        path = root / rel
        if rel not in present:
            problems.append(f"{rel}: missing")
            continue
        if path.is_symlink():
            problems.append(f"{rel}: is a link, not a file")
            continue
        size, digest = sha256_file(path)
        if size != entry.size:
            problems.append(f"{rel}: size {size} != {entry.size} in the manifest")
        elif digest != entry.sha256:
            problems.append(f"{rel}: sha256 {digest} != {entry.sha256} in the manifest")
    return problems


def check_bundle(root: Path, manifest: Manifest) -> None:
    problems = verify_bundle(root, manifest)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise InvalidBundle(f"{manifest.kind} {manifest.tag}: {problems[0]}{more}")


def write_manifest(root: Path, manifest: Manifest) -> None:
    name = BENTO_MANIFEST if manifest.kind == "bento" else MODEL_MANIFEST
    (root / name).write_bytes(manifest.dump())
