"""What a bento's code needs from PyPI, found where the bento is built.

A static scan (``ast``) of the bundled files lists the top-level modules they import; the
installed distributions that provide them (``importlib.metadata``) are pinned to the versions
installed here. The standard library, the bento's own modules and jubako itself (the runtime
provides it) are left out. Explicit requirement lines of the build config win over inferred
ones for the same distribution.
"""

from __future__ import annotations

import ast
import logging
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import PurePosixPath

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from .errors import ConfigError

log = logging.getLogger("jubako.requirements")
# Provided by whatever runs the bento: never a requirement of the bento itself.
RUNTIME_MODULES = frozenset({"jubako"})
# The extras the shared runtime image installs (images/runtime/Dockerfile: runtime,torch,gpu;
# the CPU variant: runtime,torch,onnx).
RUNTIME_EXTRAS = ("runtime", "torch", "onnx", "gpu")
_IMPORT_ERRORS = frozenset({"ImportError", "ModuleNotFoundError", "Exception", "BaseException"})


class MissingRequirements(ConfigError):
    """Bundled code imports modules that are neither installed nor listed."""


@dataclass(frozen=True)
class Import:
    module: str  # the dotted name as written (absolute imports only)
    path: str  # file, relative to the project root
    line: int
    optional: bool  # under ``try: ... except ImportError`` or ``if TYPE_CHECKING``

    @property
    def top(self) -> str:
        return self.module.partition(".")[0]

    def where(self) -> str:
        return f"{self.path}:{self.line}"


class _Scanner(ast.NodeVisitor):
    def __init__(self, path: str):
        self.path = path
        self.optional = 0
        self.found: list[Import] = []

    def _add(self, module: str, node: ast.stmt) -> None:
        self.found.append(Import(module, self.path, node.lineno, self.optional > 0))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level == 0 and node.module:  # relative imports are the bento's own modules
            self._add(node.module, node)

    def visit_Try(self, node: ast.Try) -> None:
        guarded = any(_catches_import_error(h.type) for h in node.handlers)
        self.optional += guarded
        for stmt in node.body:
            self.visit(stmt)
        self.optional -= guarded
        for stmt in [*node.handlers, *node.orelse, *node.finalbody]:
            self.visit(stmt)

    visit_TryStar = visit_Try

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
        typing_only = name == "TYPE_CHECKING"
        self.optional += typing_only
        for stmt in node.body:
            self.visit(stmt)
        self.optional -= typing_only
        for stmt in node.orelse:
            self.visit(stmt)


def _catches_import_error(expr: ast.expr | None) -> bool:
    if expr is None:
        return True  # a bare except
    names = expr.elts if isinstance(expr, ast.Tuple) else [expr]
    return any(
        (n.id if isinstance(n, ast.Name) else getattr(n, "attr", "")) in _IMPORT_ERRORS for n in names
    )


def scan_source(source: str, path: str) -> list[Import]:
    """The absolute imports of one Python file."""
    try:
        tree = ast.parse(source, filename=path)
    except (SyntaxError, ValueError) as e:
        # Not Python this interpreter reads (a template, Python 2, data named .py): it would
        # fail when imported anyway, and a bento may carry files it never imports.
        line = getattr(e, "lineno", None)
        log.warning(f"{path}:{line}: cannot scan its imports: {getattr(e, 'msg', e)}",
                    extra={"path": path, "line": line})
        return []
    scanner = _Scanner(path)
    scanner.visit(tree)
    return scanner.found


def own_modules(files: Iterable[str]) -> set[str]:
    """Top-level module names the bento itself provides (its root is on ``sys.path``)."""
    names = set()
    for rel in files:
        parts = PurePosixPath(rel).parts
        if len(parts) > 1:
            names.add(parts[0])
        elif rel.endswith(".py"):
            names.add(rel[:-3])
    return names


def parse_lines(lines: Iterable[str], source: str) -> list[Requirement]:
    reqs = []
    for line in lines:
        try:
            reqs.append(Requirement(line))
        except InvalidRequirement as e:
            raise ConfigError(f"{source}: {line!r} is not a requirement: {e}") from None
    return reqs


@dataclass
class Environment:
    """The installed distributions to infer from (injectable for tests)."""

    providers: Mapping[str, list[str]]  # top-level module -> distributions
    version: Callable[[str], str]
    files: Callable[[str], Iterable[str]] | None = None  # distribution -> its files (posix)

    @classmethod
    def current(cls) -> Environment:
        def files(dist: str) -> list[str]:
            return [str(f) for f in metadata.files(dist) or []]

        return cls(metadata.packages_distributions(), metadata.version, files)


def _provides(files: Iterable[str], module: str) -> bool:
    """Whether ``files`` hold ``module`` or one of its parents below the top level."""
    parts = module.split(".")
    prefixes = ["/".join(parts[:depth]) for depth in range(len(parts), 1, -1)]
    return any(f == p + ".py" or f.startswith(p + "/") for f in files for p in prefixes)


def infer(
    imports: Iterable[Import], own: set[str], explicit: list[str], env: Environment | None = None
) -> list[str]:
    """Pinned ``name==version`` lines for the third-party distributions ``imports`` need.

    Distributions named by an explicit line are left out (the explicit line wins). Raises
    :class:`MissingRequirements` listing every non-optional import that is neither installed
    nor listed.
    """
    env = env or Environment.current()
    listed = {canonicalize_name(r.name) for r in parse_lines(explicit, "python.requirements")}
    pins: dict[str, str] = {}
    missing: dict[str, Import] = {}
    for imp in imports:
        top = imp.top
        if top in sys.stdlib_module_names or top in own or top in RUNTIME_MODULES or top == "__main__":
            continue
        dists = env.providers.get(top, [])
        if not dists:
            # Not installed here: fine when listed explicitly (under the same name) or optional.
            if not imp.optional and canonicalize_name(top) not in listed:
                missing.setdefault(top, imp)
            continue
        dists = sorted(set(dists))
        if len(dists) > 1 and env.files is not None:
            # A namespace package (google.*): the submodule says which distribution it is.
            files = env.files
            dists = [d for d in dists if _provides(files(d), imp.module)] or dists
        for dist in dists:
            if canonicalize_name(dist) not in listed and canonicalize_name(dist) != "jubako":
                pins[canonicalize_name(dist)] = f"{dist}=={env.version(dist)}"
    if missing:
        lines = ", ".join(f"{m} ({imp.where()})" for m, imp in sorted(missing.items()))
        raise MissingRequirements(
            f"the bundled code imports modules that are neither installed nor listed in"
            f" python.requirements: {lines}; install them here or add their distributions to"
            " python.requirements"
        )
    return [pins[k] for k in sorted(pins)]


def resolved(explicit: list[str], inferred: list[str]) -> list[str]:
    """The requirement lines a bento needs: explicit ones, then inferred ones they do not name."""
    named = {canonicalize_name(r.name) for r in parse_lines(explicit, "python.requirements")}
    rest = [line for line in inferred if canonicalize_name(Requirement(line).name) not in named]
    return [*explicit, *rest]


def runtime_provided(dist: str = "jubako", extras: Iterable[str] = RUNTIME_EXTRAS) -> set[str]:
    """Canonical names of the distributions the runtime image installs.

    Walks the installed metadata of ``dist`` with the image's extras, then of each requirement
    (installed ones only: what is not installed here cannot be walked further).
    """
    extras = set(extras)
    seen: set[str] = {canonicalize_name(dist)}
    todo: list[tuple[str, set[str]]] = [(dist, extras)]
    while todo:
        name, wanted = todo.pop()
        try:
            lines = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for line in lines:
            req = Requirement(line)
            envs = [{"extra": e} for e in (wanted or {""})]
            if req.marker and not any(req.marker.evaluate(e) for e in envs):
                continue
            key = canonicalize_name(req.name)
            if key not in seen:
                seen.add(key)
                todo.append((req.name, set()))
    return seen
