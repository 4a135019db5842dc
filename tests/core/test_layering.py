"""Dependencies point one way (docs/architecture.md): the core package ``jubako/`` knows no
server. Only the CLI (``jubako/cli``, where each component registers its commands) may
import ``jubako.runtime``, ``jubako.registry`` or ``jubako.operator``; everything else in
``jubako/`` -- the worker link in ``jubako/workers`` included -- imports none of them, not
even inside a function. The edges still to remove are listed by name, so that a new one
fails here and a removed one must be taken off the list."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "jubako"
SERVERS = ("jubako.runtime", "jubako.registry", "jubako.operator")

# Core modules that still reach into a server package, and what they use: none left (the
# runtime's settings moved to jubako/runtime_settings.py for jubako run's batching).
STILL_TO_MOVE: set[tuple[str, str]] = set()


def server_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        found.update(n for n in names if any(n == s or n.startswith(s + ".") for s in SERVERS))
    return found


def test_core_imports_no_server_package() -> None:
    edges = set()
    for path in CORE.rglob("*.py"):
        rel = path.relative_to(CORE).as_posix()
        if rel.startswith("cli/"):
            continue
        edges.update((rel, name) for name in server_imports(path))
    assert edges == STILL_TO_MOVE


def test_the_worker_link_and_the_batch_pool_are_core_only() -> None:
    for rel in ("workers/wire.py", "workers/link.py", "workers/spawn.py", "workers/executor.py",
                "workers/staging.py", "batch/workers.py", "batch/inprocess.py"):
        assert server_imports(CORE / rel) == set(), rel
