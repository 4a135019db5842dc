"""Registry client (httpx only): used by the CLI and the operator's init container."""

from .registry import RegistryClient, RegistryError

__all__ = ["RegistryClient", "RegistryError"]
