"""Push a bento (its models first) or a model from the local store to the registry.

Only the blobs the registry lacks travel; parts go up in parallel, straight to S3 through
presigned URLs when the registry hands them out, else through the registry. Running the
same push again after an interruption resumes it: the registry remembers the parts it has.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jubako.digest import CHUNK
from jubako.errors import JubakoError
from jubako.manifest import BentoManifest, ModelManifest
from jubako.store import Bundle, Store
from jubako.tags import Tag

from .progress import Progress
from .registry import ConflictError, RegistryClient, RegistryError, RegistryNotFound

log = logging.getLogger("jubako.push")
RETRIES = 3  # of one part
RETRY_FOR_S = 90.0  # how long push_bundle keeps starting a push over
BACKOFF_S = 0.5
MAX_BACKOFF_S = 5.0


@dataclass
class Pushed:
    kind: str
    tag: str
    digest: str
    state: str
    uploaded_bytes: int
    skipped: bool  # already ready in the registry


def read_range(path: Path, offset: int, size: int) -> Iterator[bytes]:
    with open(path, "rb") as f:
        f.seek(offset)
        left = size
        while left > 0:
            chunk = f.read(min(CHUNK, left))
            if not chunk:
                raise JubakoError(f"{path} changed while being pushed")
            left -= len(chunk)
            yield chunk


def _upload_part(
    client: RegistryClient,
    upload_id: str,
    blob: dict[str, Any],
    part: dict[str, Any],
    path: Path,
    progress: Progress,
    task: int | None,
) -> int:
    offset = (part["number"] - 1) * blob["part_size"]
    size = part["size"]
    for attempt in range(RETRIES):
        sent = 0

        def body() -> Iterator[bytes]:
            nonlocal sent
            for chunk in read_range(path, offset, size):
                sent += len(chunk)
                progress.advance(task, len(chunk))
                yield chunk

        try:
            if part.get("url") and attempt == 0:
                client.put_presigned(part["url"], body(), size)
            else:
                client.put_part(upload_id, blob["digest"], part["number"], body(), size)
            return size
        except RegistryError as e:
            progress.advance(task, -sent)
            if attempt == RETRIES - 1 or (e.status and e.status < 500 and not part.get("url")):
                raise
    return size


def push_bundle(
    client: RegistryClient,
    kind: str,
    bundle: Bundle[Any],
    *,
    force: bool = False,
    labels: dict[str, str] | None = None,
    parallel: int = 4,
    progress: Progress | None = None,
) -> Pushed:
    """Push one bundle. Starts over (for up to RETRY_FOR_S, with growing random pauses)
    when the push cannot finish as begun but can from the start: another client pushing the
    same version got there first or finished it, blobs were collected meanwhile, the
    session vanished, or the registry restarted. Parts already received are not resent."""
    progress = progress or Progress(enabled=False)
    delay = BACKOFF_S
    deadline = time.monotonic() + RETRY_FOR_S
    while True:
        try:
            return _push_once(client, kind, bundle, force, labels, parallel, progress)
        except RegistryError as e:
            if time.monotonic() > deadline or not _worth_retrying(e):
                raise
            log.info("push of %s %s: %s; starting over", kind, bundle.manifest.tag, e)
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, MAX_BACKOFF_S)


def _worth_retrying(e: RegistryError) -> bool:
    if isinstance(e, ConflictError):
        # Only conflicts the registry says a retry resolves; not different content.
        return bool(e.body.get("retry") or e.body.get("missing"))
    if isinstance(e, RegistryNotFound):
        return "upload" in str(e)  # the session was finished by another pusher, or swept
    return e.status == 0 or e.status >= 500  # unreachable, restarting, overloaded


def _push_once(
    client: RegistryClient,
    kind: str,
    bundle: Bundle[Any],
    force: bool,
    labels: dict[str, str] | None,
    parallel: int,
    progress: Progress,
) -> Pushed:
    m = bundle.manifest
    text = m.dump().decode()
    resp = client.push_version(kind, m.name, m.version, text, labels=labels, force=force)
    v, upload = resp["version"], resp["upload"]
    if upload is None:
        return Pushed(kind, str(m.tag), v["digest"], v["state"], 0, skipped=True)
    paths = {f.sha256: bundle.path / f.path for f in m.files}
    work = [(b, p) for b in upload["blobs"] for p in b["parts"] if not p["received"]]
    total = sum(p["size"] for _, p in work)
    task = progress.task(f"push {kind} {m.tag}", total)
    with ThreadPoolExecutor(max(1, parallel)) as pool:
        futures = [
            pool.submit(
                _upload_part, client, upload["id"], b, p, paths[b["digest"]], progress, task
            )
            for b, p in work
        ]
        for f in futures:
            f.result()
    for b in upload["blobs"]:
        client.complete_blob(upload["id"], b["digest"])
    done = client.complete(upload["id"], v["digest"])
    return Pushed(kind, str(m.tag), done["digest"], done["state"], total, skipped=False)


def push(
    client: RegistryClient,
    tag: str | Tag,
    *,
    store: Store | None = None,
    kind: str = "bento",
    force: bool = False,
    labels: dict[str, str] | None = None,
    parallel: int = 4,
    progress: Progress | None = None,
) -> list[Pushed]:
    """Push a bento and the models it references (or one model); models first."""
    store = store or Store()
    tag = Tag.parse(tag) if isinstance(tag, str) else tag
    out = []
    if kind == "model":
        bundle: Bundle[ModelManifest] = store.models.get(tag)
        return [
            push_bundle(
                client,
                "model",
                bundle,
                force=force,
                labels=labels,
                parallel=parallel,
                progress=progress,
            )
        ]
    bento: Bundle[BentoManifest] = store.bentos.get(tag)
    for ref in bento.manifest.models:
        model = store.models.get(ref.parsed)
        if model.manifest.digest() != ref.digest:
            raise JubakoError(
                f"model {ref.tag} in the local store does not match bento {bento.tag}"
            )
        out.append(push_bundle(client, "model", model, parallel=parallel, progress=progress))
    out.append(
        push_bundle(
            client, "bento", bento, force=force, labels=labels, parallel=parallel, progress=progress
        )
    )
    return out
