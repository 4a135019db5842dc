"""The runtime's one settings object: flags > ``JUBAKO_*`` environment > config file > bento.

``jubako serve``, ``jubako runtime proxy|worker`` and ``python -m jubako.runtime`` all
build a :class:`RuntimeSettings` with :meth:`RuntimeSettings.load`: the flags given on the
command line, then the environment, then the YAML file named by ``--config`` or
``JUBAKO_CONFIG`` (read with the project's safe loader), then the defaults below. Per-API
batching falls back to what the bento recorded (``@jubako.api(max_batch_size=...)``).
A file key is the field's name, its variable ``JUBAKO_`` + the name in capitals; every
key is in the table of docs/configuration.md (tests/core/test_configuration_doc.py keeps
the two in step). An unknown key in the file is an error that names it and the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from jubako import safeyaml
from jubako.errors import ConfigError
from jubako.manifest import BentoManifest

CONFIG_ENV = "JUBAKO_CONFIG"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
NON_BATCHABLE_LATENCY_MS = 10_000.0  # a non-batchable API's default latency budget
NON_BATCHABLE_QUEUE = 64  # and its default queue bound, in requests


class ApiSettings(BaseModel):
    """One API's section under ``batching:``; unset keys come from the top level or the bento."""

    model_config = ConfigDict(extra="forbid")

    max_batch_size: int | None = Field(None, ge=1)
    max_latency_ms: float | None = Field(None, gt=0)
    max_queue_items: int | None = Field(None, ge=1)
    max_inflight_per_worker: int | None = Field(None, ge=1)
    inflight_timeout_s: float | None = Field(None, gt=0)


# The file being read while RuntimeSettings.load builds an object (its third source); and
# whether a document is being checked on its own (no environment), as check_config does.
_FILE: ContextVar[Mapping[str, Any] | None] = ContextVar("jubako_runtime_config_file", default=None)
_ALONE: ContextVar[bool] = ContextVar("jubako_runtime_config_alone", default=False)


class _FileSource(PydanticBaseSettingsSource):
    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ hands over the whole file

    def __call__(self) -> dict[str, Any]:
        return dict(_FILE.get() or {})


class RuntimeSettings(BaseSettings):
    """Every runtime knob; the table in docs/configuration.md says what each does."""

    # extra="ignore": the JUBAKO_ prefix is shared with the client's and the registry's
    # variables; unknown keys of a file or of flags are refused by load() instead
    model_config = SettingsConfigDict(env_prefix="JUBAKO_", extra="ignore")

    # --- processes and addresses
    bento: str | None = None
    port: int = Field(3000, ge=1, le=65535)
    workers: str = ""  # the proxy's worker addresses, host:port[,host:port...]
    num_workers: int = Field(0, ge=0)  # 0: the CPU rule, cpu_plan() below
    # proxy processes `jubako serve` starts on the one port (SO_REUSEPORT), each owning
    # num_workers / num_proxies workers (docs/runtime.md, "Several proxies")
    num_proxies: int = Field(1, ge=1)
    reuse_port: bool = False  # the proxy binds with SO_REUSEPORT (what serve sets for several)
    worker_port: int = Field(7000, ge=1, le=65535)
    worker_http_port: int = Field(7001, ge=1, le=65535)
    num_threads: int = Field(0, ge=0)  # 0: the CPU rule (serve), the library default (a pod)
    # let idle intra-op threads spin-wait for work (onnxruntime's allow_spinning, OpenMP's
    # OMP_WAIT_POLICY for torch): off, a spinning thread takes the core the proxy needs
    thread_spinning: bool = False
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:[0-9]+)?)$")
    # --- batching: per API, then these defaults for every API, then the bento
    batching: dict[str, ApiSettings] = Field(default_factory=dict)
    max_queue_items: int | None = Field(None, ge=1)
    max_inflight_per_worker: int = Field(2, ge=1)
    # --- timeouts and limits of the proxy
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
    max_body_bytes: int = Field(64 << 20, ge=1)
    max_url_bytes: int = Field(8 << 10, ge=64)
    max_header_bytes: int = Field(64 << 10, ge=256)
    resolve_interval: float = Field(2.0, gt=0)
    # the path prefix the proxy is reached under (an ingress routing /v1 to it): the APIs,
    # docs and probes answer under it; the probes and /metrics also at the root
    root_path: str = Field("", pattern=r"^(/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)*/?$")
    # --- logging and metrics
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["auto", "json", "text"] = "auto"
    metrics_latency_buckets: list[float] = Field(default_factory=lambda: list(LATENCY_BUCKETS), min_length=1)
    termination_log: Path = Path("/dev/termination-log")

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.lower() if isinstance(v, str) else v

    @field_validator("metrics_latency_buckets")
    @classmethod
    def _increasing(cls, v: list[float]) -> list[float]:
        if any(b <= a for a, b in zip(v, v[1:], strict=False)) or v[0] <= 0:
            raise ValueError("must be positive and increasing")
        return v

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        if _ALONE.get():
            return (init_settings,)
        return init_settings, env_settings, _FileSource(settings_cls)

    @property
    def root(self) -> str:
        return self.root_path.rstrip("/")

    @classmethod
    def load(cls, config: str | Path | None = None, **flags: Any) -> RuntimeSettings:
        """Flags (those not None) > environment > the file ``config`` (else ``$JUBAKO_CONFIG``)
        > defaults; a ConfigError names the key, and the file when it came from there."""
        path = config or os.environ.get(CONFIG_ENV) or None
        data = read_file(Path(path)) if path else {}
        given = {k: v for k, v in flags.items() if v is not None}
        unknown = sorted(set(given) - set(cls.model_fields))
        if unknown:
            raise TypeError(f"RuntimeSettings.load: unknown flags {unknown}")
        token = _FILE.set(data)
        try:
            return cls(**given)
        except SettingsError as e:  # a variable that does not parse (the JSON of a dict or list)
            field = str(e).split('"')[1] if str(e).count('"') >= 2 else "?"
            raise ConfigError(f"JUBAKO_{field.upper()}: not valid JSON ({e.__cause__ or e})") from None
        except ValidationError as e:  # the file was checked alone: this is a variable or a flag
            raise ConfigError(_describe(e)) from None
        finally:
            _FILE.reset(token)

    def export_env(self, env: dict[str, str] | None = None) -> dict[str, str]:
        """The settings code outside the runtime reads from the environment (the device and
        threads of ``jubako.models.load``, the log setup): into ``env`` (default os.environ)."""
        env = os.environ if env is None else env  # type: ignore[assignment]
        assert env is not None
        env["JUBAKO_DEVICE"] = self.device
        env["JUBAKO_LOG_LEVEL"] = self.log_level
        env["JUBAKO_LOG_FORMAT"] = self.log_format
        env["JUBAKO_TERMINATION_LOG"] = str(self.termination_log)
        if self.num_threads:
            env["JUBAKO_NUM_THREADS"] = str(self.num_threads)
        env["JUBAKO_THREAD_SPINNING"] = "1" if self.thread_spinning else "0"
        return env


ProxySettings = RuntimeSettings  # the proxy's name for it before there was one object


# The CPU rule (docs/runtime.md, "CPU defaults"; measured by bench/runtime/defaults.py):
# one single-threaded worker per core beats fewer workers with more intra-op threads on
# both the light and the heavy benchmark model, up to this many workers; past it each
# worker gets more threads instead (every worker holds its own copy of the models).
MAX_DEFAULT_WORKERS = 8


class CpuPlan(NamedTuple):
    workers: int
    threads: int  # intra-op threads per worker (inter-op is always 1)


def cpu_plan(cores: int, workers: int = 0, threads: int = 0) -> CpuPlan:
    """Workers and intra-op threads for ``cores`` CPUs; ``workers`` / ``threads`` given (> 0)
    are kept and the other is derived from them, so the workers' threads fill the cores."""
    cores = max(1, cores)
    if not workers:
        workers = max(1, min(cores // (threads or 1), MAX_DEFAULT_WORKERS))
    if not threads:
        threads = max(1, cores // workers)
    return CpuPlan(workers, threads)


def read_file(path: Path) -> dict[str, Any]:
    """The config file's mapping, checked on its own: unknown keys and bad values are
    errors naming the file and the key."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"config file {path}: {e.strerror}") from None
    try:
        data = safeyaml.load(raw)
    except (yaml.YAMLError, ValueError) as e:
        raise ConfigError(f"config file {path}: not valid YAML: {e}") from None
    if data is None:
        return {}
    check_config(data, f"config file {path}")
    return data  # type: ignore[no-any-return]


def check_config(data: Any, where: str) -> None:
    """Validate a config document as the runtime would read it (the operator's spec.config)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: must be a mapping of keys")
    unknown = sorted(str(k) for k in set(data) - set(RuntimeSettings.model_fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (docs/configuration.md lists them)")
    token = _ALONE.set(True)
    try:
        RuntimeSettings.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_describe(e, where)) from None
    finally:
        _ALONE.reset(token)


def _describe(e: ValidationError, where: str | None = None) -> str:
    """Every problem on one line: ``where: key: why`` for a file (``where``), else the
    variable to look at (a flag of the same name is the other place it can come from)."""
    problems = []
    for err in e.errors():
        loc = [str(p) for p in err["loc"]]
        key = ".".join(loc) or "settings"
        problems.append(f"{where}: {key}: {err['msg']}" if where
                        else f"{key} (JUBAKO_{loc[0].upper() if loc else ''}): {err['msg']}")
    return "; ".join(problems)


@dataclass(frozen=True)
class Batching:
    """One API's batching as the proxy runs it: every value resolved."""

    max_batch_size: int
    max_latency_ms: float
    max_queue_items: int
    max_inflight_per_worker: int
    inflight_timeout_s: float = 30.0


def batching(manifest: BentoManifest, settings: RuntimeSettings | None = None) -> dict[str, Batching]:
    """Per API: ``batching.<api>`` of the settings, then their top-level defaults
    (``max_queue_items``, ``max_inflight_per_worker``, ``inflight_timeout_s``), then the
    bento (a non-batchable API: batches of one request, a 10 s budget, 64 queued)."""
    s = settings if settings is not None else RuntimeSettings.load()
    names = {a.name for a in manifest.apis}
    for name in s.batching:
        if name not in names:
            raise ConfigError(f"batching.{name}: the bento {manifest.tag} has no API {name!r} (it has {sorted(names)})")
    out: dict[str, Batching] = {}
    for api in manifest.apis:
        over = s.batching.get(api.name, ApiSettings())
        if api.batchable and api.batching is not None:
            size, latency = api.batching.max_batch_size, api.batching.max_latency_ms
            queue_default = None
        else:
            # not batchable: one request per call, under the same admission, deadline and
            # bounded queue as a batchable API (the bento records no budget for it)
            if over.max_batch_size not in (None, 1):
                raise ConfigError(f"batching.{api.name}.max_batch_size: API {api.name!r} is not batchable (it is 1)")
            size, latency, queue_default = 1, NON_BATCHABLE_LATENCY_MS, NON_BATCHABLE_QUEUE
        size = over.max_batch_size or size
        out[api.name] = Batching(
            max_batch_size=size,
            max_latency_ms=over.max_latency_ms or latency,
            max_queue_items=over.max_queue_items or s.max_queue_items or queue_default or 16 * size,
            max_inflight_per_worker=over.max_inflight_per_worker or s.max_inflight_per_worker,
            inflight_timeout_s=over.inflight_timeout_s or s.inflight_timeout_s,
        )
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
