"""Torch models: a state_dict plus a module factory, or a TorchScript program."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import InvalidBundle, JubakoError
from ..manifest import ModelManifest
from ..store import Bundle, Store
from . import save_files, signatures

WEIGHTS = "weights.pt"
SCRIPT = "model.ts"


def _import_path(factory: Callable[..., Any] | str) -> str:
    if isinstance(factory, str):
        _resolve(factory)  # fail at save time, not at load time
        return factory
    path = f"{factory.__module__}:{factory.__qualname__}"
    if "<locals>" in path or factory.__module__ == "__main__":
        raise JubakoError(
            f"factory {path} is not importable; define it at module level in an importable module"
        )
    return path


def _resolve(path: str) -> Callable[..., Any]:
    module, _, attr = path.partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise JubakoError(f"cannot import model factory {path!r}: {e}") from None
    return obj


def save(
    name: str,
    module: Any,
    *,
    factory: Callable[..., Any] | str | None = None,
    factory_kwargs: dict[str, Any] | None = None,
    torchscript: bool = False,
    example_inputs: tuple[Any, ...] | None = None,
    inputs: list[Any] | None = None,
    outputs: list[Any] | None = None,
    labels: dict[str, str] | None = None,
    metadata: dict[str, Any] | None = None,
    description: str = "",
    version: str | None = None,
    store: Store | None = None,
) -> Bundle[ModelManifest]:
    """Save ``module`` as ``name:version``.

    With ``factory`` (a module-level callable, or its ``"module:attr"`` path) only the
    state_dict is stored and ``factory(**factory_kwargs)`` rebuilds the module at load time.
    With ``torchscript=True`` the module is scripted (or traced from ``example_inputs``) and
    needs no Python code to load.
    """
    import torch

    if torchscript == (factory is not None):
        raise JubakoError("give either factory=... (state_dict) or torchscript=True")
    options: dict[str, Any] = {}
    if factory is not None:
        options = {"factory": _import_path(factory), "factory_kwargs": factory_kwargs or {}}

    def write(dest: Path) -> None:
        if torchscript:
            module.eval()
            program = (
                torch.jit.trace(module, example_inputs)
                if example_inputs is not None
                else torch.jit.script(module)
            )
            torch.jit.save(program, str(dest / SCRIPT))
        else:
            state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
            torch.save(state, dest / WEIGHTS)

    return save_files(
        name,
        write,
        framework="torch",
        framework_version=torch.__version__,
        format="torch.torchscript" if torchscript else "torch.state_dict",
        inputs=signatures(inputs),
        outputs=signatures(outputs),
        options=options,
        labels=labels,
        metadata=metadata,
        description=description,
        version=version,
        store=store,
    )


def load_bundle(bundle: Bundle[ModelManifest]) -> Any:
    """The module in eval mode on the selected device."""
    import torch

    from .. import devices

    device = devices.torch_device()
    fmt = bundle.manifest.format
    if fmt == "torch.torchscript":
        module = torch.jit.load(str(bundle.path / SCRIPT), map_location=device)
    elif fmt == "torch.state_dict":
        opts = bundle.manifest.options
        module = _resolve(opts["factory"])(**opts.get("factory_kwargs", {}))
        state = torch.load(bundle.path / WEIGHTS, map_location=device, weights_only=True)
        module.load_state_dict(state)
    else:
        raise InvalidBundle(f"model {bundle.tag}: unknown torch format {fmt!r}")
    return module.to(device).eval()
