"""The runtime's one settings object: flag > environment > config file > bento, and the
errors that name the key (and the file) at fault."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from jubako.errors import ConfigError
from jubako.manifest import ApiSpec, BatchingSpec, BentoManifest, TextSpec
from jubako.runtime_settings import RuntimeSettings, batching, check_config, cpu_plan


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("JUBAKO_CONFIG", "JUBAKO_PORT", "JUBAKO_BATCHING", "JUBAKO_MAX_QUEUE_ITEMS",
                 "JUBAKO_INFLIGHT_TIMEOUT_S", "JUBAKO_LOG_LEVEL", "JUBAKO_NUM_WORKERS"):
        monkeypatch.delenv(name, raising=False)


def manifest() -> BentoManifest:
    text = {"input": TextSpec(), "output": TextSpec()}
    return BentoManifest(
        name="demo", version="v1", created_at=datetime(2026, 11, 1, tzinfo=UTC), service="service:Demo",
        apis=[ApiSpec(name="predict", route="/predict", batchable=True,
                      batching=BatchingSpec(max_batch_size=32, max_latency_ms=50), **text),
              ApiSpec(name="echo", route="/echo", **text)],
        files=[],
    )


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "jubako-runtime.yaml"
    path.write_text(text)
    return path


def test_a_flag_beats_the_environment_which_beats_the_file_which_beats_the_default(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = write(tmp_path, "port: 4000\ninflight_timeout_s: 5\nnum_workers: 3\n")
    assert RuntimeSettings.load().port == 3000
    assert RuntimeSettings.load(cfg).port == 4000
    monkeypatch.setenv("JUBAKO_PORT", "4500")
    s = RuntimeSettings.load(cfg)
    assert (s.port, s.inflight_timeout_s, s.num_workers) == (4500, 5.0, 3)
    assert RuntimeSettings.load(cfg, port=5000, num_workers=None).port == 5000  # None: flag not given
    monkeypatch.setenv("JUBAKO_CONFIG", str(cfg))  # the file named by the environment
    assert RuntimeSettings.load().num_workers == 3


def test_per_api_batching_merges_key_by_key_over_the_bento(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = write(tmp_path, "max_queue_items: 100\nbatching:\n  predict: {max_batch_size: 8, max_latency_ms: 20}\n")
    b = batching(manifest(), RuntimeSettings.load())["predict"]
    assert (b.max_batch_size, b.max_latency_ms, b.max_queue_items) == (32, 50, 16 * 32)  # the bento's
    b = batching(manifest(), RuntimeSettings.load(cfg))["predict"]
    assert (b.max_batch_size, b.max_latency_ms, b.max_queue_items) == (8, 20, 100)
    monkeypatch.setenv("JUBAKO_BATCHING", '{"predict": {"max_latency_ms": 7, "inflight_timeout_s": 9}}')
    got = batching(manifest(), RuntimeSettings.load(cfg))
    b = got["predict"]
    assert (b.max_batch_size, b.max_latency_ms, b.inflight_timeout_s) == (8, 7, 9)  # size still from the file
    assert (got["echo"].max_batch_size, got["echo"].max_queue_items, got["echo"].inflight_timeout_s) == (1, 100, 30)


def test_an_unknown_key_names_itself_and_the_file(tmp_path: Path) -> None:
    cfg = write(tmp_path, "port: 1\nmax_batch: 3\nworkerz: 2\n")
    with pytest.raises(ConfigError, match=rf"config file {cfg}: unknown key\(s\) max_batch, workerz"):
        RuntimeSettings.load(cfg)
    cfg = write(tmp_path, "batching:\n  predict: {max_batch: 3}\n")
    with pytest.raises(ConfigError, match=rf"config file {cfg}: batching.predict.max_batch: Extra inputs"):
        RuntimeSettings.load(cfg)


@pytest.mark.parametrize("text, message", [
    ("port: many\n", "port: Input should be a valid integer"),
    ("log_level: LOUD\n", "log_level: Input should be"),
    ("- port\n", "must be a mapping"),
    ("a: &x 1\nb: *x\n", "aliases are not allowed"),
    ("port: [\n", "not valid YAML"),
])
def test_a_bad_file_is_refused_with_its_path(tmp_path: Path, text: str, message: str) -> None:
    cfg = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as e:
        RuntimeSettings.load(cfg)
    assert str(cfg) in str(e.value)


def test_a_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no-such.yaml"):
        RuntimeSettings.load(tmp_path / "no-such.yaml")


def test_a_bad_variable_names_the_variable_not_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = write(tmp_path, "port: 4000\n")
    monkeypatch.setenv("JUBAKO_PORT", "x")
    with pytest.raises(ConfigError, match=r"^port \(JUBAKO_PORT\): Input should be a valid integer"):
        RuntimeSettings.load(cfg)
    monkeypatch.delenv("JUBAKO_PORT")
    monkeypatch.setenv("JUBAKO_BATCHING", "{bad")
    with pytest.raises(ConfigError, match="JUBAKO_BATCHING: not valid JSON"):
        RuntimeSettings.load(cfg)


def test_a_section_for_an_api_the_bento_lacks_names_it(tmp_path: Path) -> None:
    cfg = write(tmp_path, "batching:\n  predcit: {max_batch_size: 8}\n")
    with pytest.raises(ConfigError, match=r"batching.predcit: the bento demo:v1 has no API 'predcit'"):
        batching(manifest(), RuntimeSettings.load(cfg))


def test_a_non_batchable_api_keeps_batches_of_one(tmp_path: Path) -> None:
    cfg = write(tmp_path, "batching:\n  echo: {max_batch_size: 4}\n")
    with pytest.raises(ConfigError, match="API 'echo' is not batchable"):
        batching(manifest(), RuntimeSettings.load(cfg))


def test_check_config_validates_a_document_like_the_file() -> None:
    check_config({"batching": {"predict": {"max_batch_size": 4}}, "log_level": "debug"}, "spec.config")
    with pytest.raises(ConfigError, match=r"spec.config: unknown key\(s\) nope"):
        check_config({"nope": 1}, "spec.config")
    with pytest.raises(ConfigError, match=r"spec.config: batching.predict.max_batch_size: Input should be greater"):
        check_config({"batching": {"predict": {"max_batch_size": 0}}}, "spec.config")


def test_export_env_hands_device_threads_and_logging_to_code_reading_the_environment(tmp_path: Path) -> None:
    cfg = write(tmp_path, "num_threads: 3\ndevice: cpu\nlog_level: warning\nlog_format: JSON\n")
    env = RuntimeSettings.load(cfg).export_env({})
    assert env["JUBAKO_NUM_THREADS"] == "3" and env["JUBAKO_DEVICE"] == "cpu"
    assert (env["JUBAKO_LOG_LEVEL"], env["JUBAKO_LOG_FORMAT"]) == ("WARNING", "json")
    assert "JUBAKO_NUM_THREADS" not in RuntimeSettings.load().export_env({})  # 0: decided by whoever starts the worker


@pytest.mark.parametrize(("cores", "workers", "threads", "plan"), [
    (1, 0, 0, (1, 1)),
    (2, 0, 0, (2, 1)),     # the measured machine: one single-threaded worker per core
    (4, 0, 0, (4, 1)),
    (8, 0, 0, (8, 1)),
    (32, 0, 0, (8, 4)),    # past MAX_DEFAULT_WORKERS the workers get more threads instead
    (2, 1, 0, (1, 2)),     # --workers given: its threads fill the cores
    (8, 3, 0, (3, 2)),
    (8, 16, 0, (16, 1)),   # more workers than cores: still one thread each
    (8, 0, 2, (4, 2)),     # threads given: as many workers as fill the cores
    (2, 0, 4, (1, 4)),
    (4, 2, 2, (2, 2)),     # both given: kept
    (0, 0, 0, (1, 1)),
])
def test_cpu_plan_is_one_single_threaded_worker_per_core_unless_told(
        cores: int, workers: int, threads: int, plan: tuple[int, int]) -> None:
    assert tuple(cpu_plan(cores, workers, threads)) == plan


def test_the_defaults_leave_workers_to_the_rule_and_spinning_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JUBAKO_NUM_THREADS", raising=False)
    monkeypatch.delenv("JUBAKO_THREAD_SPINNING", raising=False)
    s = RuntimeSettings.load()
    assert (s.num_workers, s.num_threads, s.thread_spinning) == (0, 0, False)
    assert s.export_env({})["JUBAKO_THREAD_SPINNING"] == "0"
    monkeypatch.setenv("JUBAKO_THREAD_SPINNING", "true")
    assert RuntimeSettings.load().export_env({})["JUBAKO_THREAD_SPINNING"] == "1"
