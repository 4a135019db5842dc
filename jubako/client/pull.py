"""Pull a bento (with its models) or a model from the registry.

Into the local store, or with ``output`` into a self-contained bento directory (see
docs/contracts.md): the bento's files, ``models/<name>/<version>/`` per model, and
``bento.yaml`` written last, so its presence means the directory is complete. Every file
is checked against the manifest (size and sha256) as it downloads (``download.py``), and
every manifest against its digest.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from jubako.bundle import write_manifest
from jubako.digest import sha256_bytes
from jubako.errors import InvalidBundle, JubakoError
from jubako.manifest import BentoManifest, ModelManifest, parse_manifest
from jubako.store import Store
from jubako.tags import Tag

from .download import download
from .progress import Progress
from .registry import RegistryClient


@dataclass
class Pulled:
    kind: str
    tag: str
    digest: str
    path: str
    downloaded_bytes: int
    skipped: bool  # already in the local store


def _info(
    client: RegistryClient, kind: str, tag: Tag, expect: str | None = None
) -> tuple[dict[str, Any], Any]:
    info = client.download_info(kind, tag.name, tag.version)
    text = info["manifest"].encode()
    digest = "sha256:" + sha256_bytes(text)
    if digest != info["digest"] or (expect and digest != expect):
        raise InvalidBundle(
            f"{kind} {tag}: manifest digest {digest} does not match {expect or info['digest']}"
        )
    kind_cls = BentoManifest if kind == "bento" else ModelManifest
    m = parse_manifest(text, f"{kind} {info['tag']}", kind_cls)
    if m.digest() != digest:
        raise InvalidBundle(f"{kind} {tag}: manifest is not in canonical form")
    listed = {f.path: f for f in m.files}
    for f in info["files"]:
        e = listed.get(f["path"])
        if e is None or (e.size, e.sha256) != (f["size"], f["sha256"]):
            raise InvalidBundle(f"{kind} {tag}: file {f['path']} does not match the manifest")
    if len(info["files"]) != len(listed):
        raise InvalidBundle(f"{kind} {tag}: the registry lists other files than the manifest")
    return info, m


def _download_all(
    client: RegistryClient,
    jobs: list[tuple[str, Path, int, str]],
    parallel: int,
    progress: Progress,
    label: str,
) -> int:
    total = sum(j[2] for j in jobs)
    task = progress.task(label, total)
    with ThreadPoolExecutor(max(1, parallel)) as pool:
        futures = [
            pool.submit(download, client, url, dest, size, sha, partial(progress.advance, task))
            for url, dest, size, sha in jobs
        ]
        for f in futures:
            f.result()
    return total


def _safe(root: Path, rel: str) -> Path:
    p = (root / rel).resolve()
    if not p.is_relative_to(root.resolve()) or p == root.resolve():
        raise InvalidBundle(f"unsafe path {rel!r} in manifest")
    return p


def pull(
    client: RegistryClient,
    tag: str | Tag,
    *,
    store: Store | None = None,
    output: Path | None = None,
    kind: str = "bento",
    parallel: int = 4,
    progress: Progress | None = None,
) -> list[Pulled]:
    progress = progress or Progress(enabled=False)
    tag = Tag.parse(tag) if isinstance(tag, str) else tag
    info, m = _info(client, kind, tag)
    resolved = m.tag
    refs = [(Tag.parse(r.tag), r.digest) for r in m.models] if isinstance(m, BentoManifest) else []
    if output is not None:
        return _pull_dir(client, kind, info, m, refs, Path(output), parallel, progress)
    store = store or Store()
    out = []
    for rtag, rdigest in refs:
        out.append(_pull_store(client, store, "model", rtag, rdigest, parallel, progress))
    out.append(
        _pull_store(client, store, kind, resolved, info["digest"], parallel, progress, (info, m))
    )
    return out


def _pull_store(
    client: RegistryClient,
    store: Store,
    kind: str,
    tag: Tag,
    digest: str,
    parallel: int,
    progress: Progress,
    known: tuple[dict[str, Any], Any] | None = None,
) -> Pulled:
    bundles = store.bentos if kind == "bento" else store.models
    if bundles.exists(tag):
        local = bundles.get(tag)
        if local.manifest.digest() != digest:
            raise JubakoError(
                f"{kind} {tag} in the local store differs from the registry's ({digest});"
                " delete it locally first"
            )
        return Pulled(kind, str(tag), digest, str(local.path), 0, skipped=True)
    info, m = known or _info(client, kind, tag, digest)
    with bundles.staging() as staged:
        jobs = [(f["url"], _safe(staged, f["path"]), f["size"], f["sha256"]) for f in info["files"]]
        n = _download_all(client, jobs, parallel, progress, f"pull {kind} {tag}")
        try:
            # fetch verified every file's size and sha256 against the manifest (and _info
            # that the files are exactly the manifest's): no second hashing pass.
            bundle = bundles.commit(staged, m, verified=True)
        except JubakoError:
            if bundles.exists(tag):  # pulled concurrently
                bundle = bundles.get(tag)
            else:
                raise
    return Pulled(kind, str(tag), digest, str(bundle.path), n, skipped=False)


def _pull_dir(
    client: RegistryClient,
    kind: str,
    info: dict[str, Any],
    m: Any,
    refs: list[tuple[Tag, str]],
    output: Path,
    parallel: int,
    progress: Progress,
) -> list[Pulled]:
    if kind != "bento":
        raise JubakoError("--output is for bentos (a self-contained bento directory)")
    output.mkdir(parents=True, exist_ok=True)
    if any(output.iterdir()):
        raise JubakoError(f"{output} is not empty")
    out = []
    jobs = [(f["url"], _safe(output, f["path"]), f["size"], f["sha256"]) for f in info["files"]]
    models = []
    for rtag, rdigest in refs:
        minfo, mm = _info(client, "model", rtag, rdigest)
        mdir = output / "models" / rtag.name / rtag.version
        jobs += [(f["url"], _safe(mdir, f["path"]), f["size"], f["sha256"]) for f in minfo["files"]]
        models.append((mdir, mm, rdigest))
    n = _download_all(client, jobs, parallel, progress, f"pull bento {m.tag}")
    for mdir, mm, rdigest in models:
        mdir.mkdir(parents=True, exist_ok=True)
        write_manifest(mdir, mm)
        out.append(Pulled("model", str(mm.tag), rdigest, str(mdir), 0, skipped=False))
    tmp = output / ".bento.yaml.tmp"
    tmp.write_bytes(m.dump())
    os.replace(tmp, output / "bento.yaml")  # last: its presence marks a complete directory
    out.append(Pulled("bento", str(m.tag), info["digest"], str(output), n, skipped=False))
    return out
