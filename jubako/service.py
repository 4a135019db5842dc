"""Declaring a service: a class whose methods are APIs.

    @jubako.service(name="mlp", models=["mlp:latest"])
    class MLP:
        def __init__(self):                 # runs once per worker, loads models
            self.net = jubako.models.load("mlp")

        @jubako.api(batchable=True, max_batch_size=64, max_latency_ms=20)
        def predict(self, x: Tensor[np.float32, (None, 16)]) -> Tensor[np.float32, (None, 4)]:
            ...

Methods may be sync or async. The class is not instantiated at build time, only
inspected, so building a bento needs neither the models nor a GPU.

``static="web"`` declares a folder of static web content (a small UI for the model), next
to the APIs it calls: the bento carries it and the proxy serves it under ``/ui/``. It sits
on the service rather than in ``jubako.yaml`` because the page belongs to the service's
APIs, and it is resolved against the module defining the class (like ``Path(__file__)``),
so it means the same whatever folder the build runs from.
"""

from __future__ import annotations

import inspect
import os
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ServiceDefinitionError
from .io import IOSpec, spec_for
from .manifest import ApiSpec, BatchingSpec
from .tags import NAME_PATTERN, Tag

API_MARK = "__jubako_api__"
DEFAULT_MAX_BATCH_SIZE = 64
DEFAULT_MAX_LATENCY_MS = 50.0


@dataclass(frozen=True)
class ApiOptions:
    name: str | None = None
    batchable: bool = False
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    max_latency_ms: float = DEFAULT_MAX_LATENCY_MS


@dataclass
class Api:
    name: str
    func: Callable[..., Any]
    input_type: Any
    output_type: Any
    input: IOSpec
    output: IOSpec
    batchable: bool
    max_batch_size: int
    max_latency_ms: float
    is_async: bool
    doc: str = ""

    @property
    def route(self) -> str:
        return f"/{self.name}"

    def spec(self) -> ApiSpec:
        batching = (
            BatchingSpec(max_batch_size=self.max_batch_size, max_latency_ms=self.max_latency_ms)
            if self.batchable
            else None
        )
        return ApiSpec(
            name=self.name,
            route=self.route,
            input=self.input,
            output=self.output,
            batchable=self.batchable,
            batching=batching,
            is_async=self.is_async,
            doc=self.doc,
        )


@dataclass
class Service:
    name: str
    cls: type
    apis: dict[str, Api]
    models: list[Tag] = field(default_factory=list)
    static: str | None = None  # the static content folder as declared
    static_dir: Path | None = None  # ... resolved against the module defining the class

    def create(self) -> Any:
        """Instantiate the user's class (loads its models); done once per worker."""
        return self.cls()

    def __repr__(self) -> str:
        return f"<jubako.Service {self.name} apis={list(self.apis)}>"


def api(
    func: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    batchable: bool = False,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    max_latency_ms: float = DEFAULT_MAX_LATENCY_MS,
) -> Any:
    """Mark a method as an API. ``max_batch_size`` counts items, not requests."""
    if max_batch_size < 1:
        raise ServiceDefinitionError(f"max_batch_size must be >= 1, got {max_batch_size}")
    if max_latency_ms <= 0:
        raise ServiceDefinitionError(f"max_latency_ms must be > 0, got {max_latency_ms}")
    options = ApiOptions(name, batchable, max_batch_size, max_latency_ms)

    def mark(f: Callable[..., Any]) -> Callable[..., Any]:
        setattr(f, API_MARK, options)
        return f

    return mark(func) if func is not None else mark


def _build_api(attr: str, func: Callable[..., Any], options: ApiOptions, service: str) -> Api:
    name = options.name or attr
    where = f"{service}.{name}"
    hints = typing.get_type_hints(func, include_extras=True)
    params = [p for p in inspect.signature(func).parameters.values() if p.name != "self"]
    if len(params) != 1:
        raise ServiceDefinitionError(
            f"{where}: an API takes exactly one input parameter (got {len(params)})"
        )
    param = params[0]
    in_type = hints.get(param.name, inspect.Parameter.empty)
    out_type = hints.get("return", inspect.Parameter.empty)
    return Api(
        name=name,
        func=func,
        input_type=in_type,
        output_type=out_type,
        input=spec_for(in_type, batchable=options.batchable, where=f"{where}({param.name})"),
        output=spec_for(out_type, batchable=options.batchable, where=f"{where} return"),
        batchable=options.batchable,
        max_batch_size=options.max_batch_size,
        max_latency_ms=options.max_latency_ms,
        is_async=inspect.iscoroutinefunction(func),
        doc=inspect.getdoc(func) or "",
    )


def _static_dir(c: type, static: Any, service: str) -> Path:
    """Where the declared static folder is; whether it exists is checked by the build only
    (a worker imports the service from a bento that keeps the files elsewhere)."""
    if not isinstance(static, (str, os.PathLike)):
        raise ServiceDefinitionError(f"{service}: static must name a folder, not {type(static).__name__}")
    text = os.fspath(static)
    if not text:
        raise ServiceDefinitionError(f"{service}: static is empty; name a folder such as 'web'")
    if "\0" in text:
        raise ServiceDefinitionError(f"{service}: static holds a NUL byte")
    if Path(text).is_absolute():
        raise ServiceDefinitionError(
            f"{service}: static={text!r} must be relative to the service's module, so the project builds anywhere")
    module = sys.modules.get(c.__module__)
    file = getattr(module, "__file__", None)
    return (Path(file).resolve().parent if file else Path.cwd()) / text


def service(
    cls: type | None = None, *, name: str | None = None, models: list[str] | None = None,
    static: str | os.PathLike[str] | None = None,
) -> Any:
    """Turn a class into a :class:`Service`; its ``@api`` methods become its APIs.

    ``static`` names a folder of static web content, relative to the module defining the
    class, that the bento carries and the proxy serves under ``/ui/``."""

    def wrap(c: type) -> Service:
        svc_name = name or c.__name__.lower().replace("_", "-")
        if not __import__("re").fullmatch(NAME_PATTERN, svc_name):
            raise ServiceDefinitionError(f"invalid service name {svc_name!r}")
        apis: dict[str, Api] = {}
        for attr, member in inspect.getmembers(c, inspect.isfunction):
            options = getattr(member, API_MARK, None)
            if options is None:
                continue
            a = _build_api(attr, member, options, svc_name)
            if a.name in apis:
                raise ServiceDefinitionError(f"{svc_name}: two APIs named {a.name!r}")
            apis[a.name] = a
        if not apis:
            raise ServiceDefinitionError(f"{svc_name}: no method is marked with @jubako.api")
        static_dir = None if static is None else _static_dir(c, static, svc_name)
        return Service(svc_name, c, apis, [Tag.parse(m) for m in models or []],
                       None if static is None else os.fspath(static), static_dir)

    return wrap(cls) if cls is not None else wrap
