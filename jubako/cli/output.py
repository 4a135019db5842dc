"""Shared output helpers: rich tables for people, JSON for pipelines."""

from __future__ import annotations

import json
import sys
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from ..errors import JubakoError
from ..manifest import BentoManifest, ModelManifest
from ..store import Bundle

JSON_OPTION_HELP = "Print JSON instead of a table."
console = Console(width=None if sys.stdout.isatty() else 160)


def parse_labels(values: list[str] | None) -> dict[str, str]:
    """``["k=v", ...]`` from repeated ``--label`` options."""
    out = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise JubakoError(f"label {item!r} must look like key=value")
        out[key] = value
    return out


def confirm(question: str, yes: bool) -> None:
    """Ask before a destructive step. Without a terminal nobody can answer, so ``-y`` is
    required (a script piping /dev/null into `jubako delete` must not delete)."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise JubakoError(f"{question} stdin is not a terminal, so nobody can confirm: pass -y")
    import typer

    typer.confirm(question, abort=True)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def print_manifest(manifest: BentoManifest | ModelManifest, fmt: str) -> None:
    data = manifest.model_dump(mode="json", by_alias=True)
    if fmt == "json":
        print_json(data)
    else:
        sys.stdout.write(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def bundle_summary(b: Bundle[Any]) -> dict[str, Any]:
    m = b.manifest
    out = {
        "tag": str(m.tag),
        "name": m.name,
        "version": m.version,
        "created_at": m.created_at.isoformat(),
        "size": m.size,
        "digest": m.digest(),
        "labels": m.labels,
        "path": str(b.path),
    }
    if isinstance(m, BentoManifest):
        out["service"] = m.service
        out["apis"] = [a.name for a in m.apis]
        out["models"] = [r.tag for r in m.models]
    else:
        out["framework"] = m.framework
        out["format"] = m.format
    return out


def print_bundles(bundles: list[Bundle[Any]], as_json: bool, kind: str) -> None:
    rows = [bundle_summary(b) for b in bundles]
    if as_json:
        print_json(rows)
        return
    table = Table(box=None, header_style="bold")
    extra = "APIS" if kind == "bento" else "FRAMEWORK"
    # Tags are copied into other commands: never wrap or shorten them.
    table.add_column("TAG", no_wrap=True, min_width=max((len(r["tag"]) for r in rows), default=3))
    for col in (extra, "SIZE", "CREATED", "LABELS"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["tag"],
            ", ".join(r["apis"]) if kind == "bento" else r["format"],
            human_size(r["size"]),
            r["created_at"][:19].replace("T", " "),
            ", ".join(f"{k}={v}" for k, v in r["labels"].items()),
        )
    if rows:
        console.print(table)
    else:
        console.print(f"no {kind}s")
