"""Generate the parameter tables of charts/jubako/README.md from `## @param` comments.

The values file is the single source: each `## @param path description` comment documents
one value, `## @section Title` starts a table. `--check` fails when the README is stale or
when a value in values.yaml has no @param (so every value stays documented).

Usage: python scripts/chart_readme.py [--check] CHART_DIR
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

BEGIN, END = "<!-- parameters:begin -->", "<!-- parameters:end -->"
PARAM = re.compile(r"^\s*## @param (\S+)\s+(.*)$")
SECTION = re.compile(r"^\s*## @section (.+)$")


def leaves(values: Any, prefix: str = "") -> dict[str, Any]:
    """Every documented-able path: leaves, plus empty maps/lists (which users fill in)."""
    out: dict[str, Any] = {}
    if isinstance(values, dict) and values:
        for k, v in values.items():
            out.update(leaves(v, f"{prefix}.{k}" if prefix else k))
    else:
        out[prefix] = values
    return out


def lookup(values: Any, path: str) -> Any:
    for part in path.split("."):
        values = values[part]
    return values


def render(chart: Path) -> tuple[str, list[str]]:
    text = (chart / "values.yaml").read_text()
    values = yaml.safe_load(text)
    sections: list[tuple[str, list[tuple[str, str]]]] = []
    documented: set[str] = set()
    for line in text.splitlines():
        if m := SECTION.match(line):
            sections.append((m.group(1), []))
        elif m := PARAM.match(line):
            if not sections:
                sections.append(("Parameters", []))
            sections[-1][1].append((m.group(1), m.group(2)))
            documented.add(m.group(1))
    problems = [f"{p}: no @param comment" for p in leaves(values) if p not in documented]
    problems += [f"{p}: @param for a value that does not exist" for p in documented if p not in leaves(values) and not _exists(values, p)]
    lines = []
    for title, params in sections:
        lines += [f"### {title}", "", "| Name | Description | Default |", "| --- | --- | --- |"]
        for path, desc in params:
            default = json.dumps(lookup(values, path)) if _exists(values, path) else ""
            cell = desc.replace("|", r"\|")
            lines.append(f"| `{path}` | {cell} | `{default}` |")
        lines.append("")
    return "\n".join(lines), problems


def _exists(values: Any, path: str) -> bool:
    try:
        lookup(values, path)
        return True
    except (KeyError, TypeError):
        return False


def main() -> None:
    check = "--check" in sys.argv
    chart = Path([a for a in sys.argv[1:] if a != "--check"][0])
    table, problems = render(chart)
    readme = chart / "README.md"
    current = readme.read_text()
    start, end = current.index(BEGIN) + len(BEGIN), current.index(END)
    updated = current[:start] + "\n" + table + current[end:]
    if check:
        if updated != current:
            problems.append(f"{readme} is stale: run `make chart`")
        if problems:
            sys.exit("\n".join(problems))
        return
    readme.write_text(updated)
    if problems:
        sys.exit("\n".join(problems))


if __name__ == "__main__":
    main()
