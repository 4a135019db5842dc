"""Architecture rules of the registry (registry/domain/__init__.py): the request commits,
so no domain module but the sweeper ends a transaction; response builders live in one
module; the old catch-all service module is gone."""

from __future__ import annotations

import re
from pathlib import Path

import jubako.registry

REGISTRY = Path(jubako.registry.__file__).parent
ENDS_A_TRANSACTION = re.compile(r"\.(commit|rollback)\(|\bbegin\(\)")


def test_no_domain_module_but_the_sweeper_commits() -> None:
    domain = sorted((REGISTRY / "domain").glob("*.py"))
    assert {p.name for p in domain} >= {"versions.py", "uploads.py", "blobs.py", "sweeper.py"}
    offenders = [
        f"{p.name}:{n}: {line.strip()}"
        for p in domain
        if p.name != "sweeper.py"
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if ENDS_A_TRANSACTION.search(line)
    ]
    assert offenders == []


def test_the_sweeper_is_where_the_exception_is() -> None:
    assert ENDS_A_TRANSACTION.search((REGISTRY / "domain" / "sweeper.py").read_text())


def test_route_modules_do_not_import_each_other() -> None:
    routes = REGISTRY / "api" / "routes"
    names = {p.stem for p in routes.glob("*.py")} - {"__init__"}
    crossing = [
        f"{p.name} imports {m}"
        for p in routes.glob("*.py")
        for m in re.findall(r"^\s*from \.(\w+) import", p.read_text(), re.M)
        if m in names
    ]
    assert crossing == []
