"""Runtime settings: the bento's batching, overridden by environment, overridden by flags.

Every knob is listed in docs/runtime.md (one table); keep the two in step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

import orjson
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from jubako.errors import ConfigError
from jubako.manifest import BentoManifest


class ProxySettings(BaseSettings):
    """The proxy's own knobs, from ``JUBAKO_*`` environment variables (docs/configuration.md)."""

    model_config = SettingsConfigDict(env_prefix="JUBAKO_", extra="ignore")

    max_body_bytes: int = Field(64 << 20, ge=1)
    resolve_interval: float = Field(2.0, gt=0)
    # a batch a worker has not answered after this long (or the API's latency budget, if
    # longer) fails its requests with 504 and the connection to that worker is dropped:
    # a wedged or partitioned worker must not hold requests or batch slots forever
    inflight_timeout_s: float = Field(30.0, gt=0)
    # the HTTP server's defences (runtime/http.py): a client must send a request's headers
    # within http_header_timeout_s of its first byte (else 408), a keep-alive connection
    # with nothing in flight is closed after http_idle_timeout_s, and a URL or header block
    # past its cap is refused (414 / 431) before it is buffered any further
    http_header_timeout_s: float = Field(10.0, gt=0)
    http_idle_timeout_s: float = Field(60.0, gt=0)
    max_url_bytes: int = Field(8 << 10, ge=64)
    max_header_bytes: int = Field(64 << 10, ge=256)
    # the path prefix the proxy is reached under (an ingress routing /v1 to it): the APIs,
    # docs and probes answer under it; the probes and /metrics also at the root
    root_path: str = Field("", pattern=r"^(/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)*/?$")

    @property
    def root(self) -> str:
        return self.root_path.rstrip("/")

    @classmethod
    def load(cls) -> ProxySettings:
        try:
            return cls()
        except ValidationError as e:
            err = e.errors()[0]
            raise ConfigError(f"JUBAKO_{str(err['loc'][0]).upper()}: {err['msg']}") from None


NON_BATCHABLE_LATENCY_MS = 10_000.0  # a non-batchable API's default latency budget
NON_BATCHABLE_QUEUE = 64  # and its default queue bound, in requests

_FIELDS = {"max_batch_size", "max_latency_ms", "max_queue_items", "max_inflight_per_worker"}


@dataclass(frozen=True)
class Batching:
    max_batch_size: int
    max_latency_ms: float
    max_queue_items: int
    max_inflight_per_worker: int


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} must be an integer") from None
    if value < 1:
        raise ConfigError(f"{name} must be >= 1")
    return value


def batching(manifest: BentoManifest, overrides: str | None = None) -> dict[str, Batching]:
    """Per API: the bento's settings (a non-batchable API: batches of one request, a
    10 s budget, 64 queued), then ``JUBAKO_BATCHING`` (JSON), then
    ``JUBAKO_MAX_INFLIGHT_PER_WORKER`` / ``JUBAKO_MAX_QUEUE_ITEMS`` as defaults for all."""
    raw = overrides if overrides is not None else os.environ.get("JUBAKO_BATCHING", "")
    try:
        parsed: Any = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError as e:
        raise ConfigError(f"JUBAKO_BATCHING is not valid JSON: {e}") from None
    if not isinstance(parsed, dict):
        raise ConfigError('JUBAKO_BATCHING must be a JSON object like {"predict": {"max_batch_size": 32}}')
    inflight = _int_env("JUBAKO_MAX_INFLIGHT_PER_WORKER", 2)
    out: dict[str, Batching] = {}
    names = {a.name for a in manifest.apis}
    for name in parsed:
        if name not in names:
            raise ConfigError(f"JUBAKO_BATCHING: the bento has no API {name!r} (it has {sorted(names)})")
    for api in manifest.apis:
        over = parsed.get(api.name, {})
        if not isinstance(over, dict) or set(over) - _FIELDS:
            raise ConfigError(f"JUBAKO_BATCHING[{api.name!r}]: known keys are {sorted(_FIELDS)}")
        if api.batchable and api.batching is not None:
            b = Batching(api.batching.max_batch_size, api.batching.max_latency_ms, 0, inflight)
            queue_default = 16 * api.batching.max_batch_size
        else:
            # not batchable: one request per call, under the same admission, deadline and
            # bounded queue as a batchable API (the bento records no budget for it)
            if "max_batch_size" in over and over["max_batch_size"] != 1:
                raise ConfigError(f"JUBAKO_BATCHING: API {api.name!r} is not batchable (max_batch_size is 1)")
            b = Batching(1, NON_BATCHABLE_LATENCY_MS, 0, inflight)
            queue_default = NON_BATCHABLE_QUEUE
        try:
            b = replace(b, **over)
        except TypeError as e:
            raise ConfigError(f"JUBAKO_BATCHING[{api.name!r}]: {e}") from None
        if b.max_batch_size < 1 or b.max_latency_ms <= 0 or b.max_inflight_per_worker < 1:
            raise ConfigError(f"JUBAKO_BATCHING[{api.name!r}]: sizes must be >= 1 and latency > 0")
        queue = b.max_queue_items or _int_env("JUBAKO_MAX_QUEUE_ITEMS", queue_default)
        out[api.name] = replace(b, max_queue_items=queue)
    return out


def parse_workers(value: str) -> list[tuple[str, int]]:
    """``host:port[,host:port...]``; each host is resolved again and again (DNS)."""
    out = []
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        host, sep, port = part.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ConfigError(f"worker address {part!r} must look like host:port")
        out.append((host.strip("[]"), int(port)))
    if not out:
        raise ConfigError("no worker address given (--workers host:port,... or JUBAKO_WORKERS)")
    return out
