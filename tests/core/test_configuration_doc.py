"""docs/configuration.md is the one place for settings: every settings field is listed there."""

import json
import re
from pathlib import Path
from typing import Any

import pytest
from jubako.operator.config import OperatorSettings
from jubako.registry.config import Settings as RegistrySettings
from pydantic_settings import BaseSettings

from jubako import safeyaml
from jubako.config import Settings as ClientSettings
from jubako.runtime_settings import ApiSettings, RuntimeSettings, check_config, read_file

DOC = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()


@pytest.mark.parametrize("settings", [ClientSettings, RegistrySettings, OperatorSettings, RuntimeSettings])
def test_every_setting_is_documented(settings: type[BaseSettings]) -> None:
    prefix = settings.model_config["env_prefix"]
    missing = [
        f"{prefix}{name}".upper()
        for name in settings.model_fields
        if f"{prefix}{name}".upper() not in DOC
    ]
    assert not missing, f"add to docs/configuration.md: {missing}"


def runtime_rows() -> dict[str, list[str]]:
    section = DOC.split("## Runtime (", 1)[1].split("\n## ", 1)[0]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines() if line.startswith("| `")]
    return {r[0].strip("`"): r[1:] for r in rows}


def _default(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return json.dumps(list(value))
    return str(value)


def test_the_runtime_table_is_the_settings_model() -> None:
    """One row per key of the runtime config file, with its variable and its default."""
    rows = runtime_rows()
    keys = set(RuntimeSettings.model_fields) | {f"batching.<api>.{k}" for k in ApiSettings.model_fields}
    assert set(rows) == keys, f"docs/configuration.md lacks {keys - set(rows)}, lists unknown {set(rows) - keys}"
    for name, field in RuntimeSettings.model_fields.items():
        env, _flag, default, _meaning = rows[name]
        assert env == f"`JUBAKO_{name.upper()}`", name
        value = field.get_default(call_default_factory=True)
        if value is None:
            assert default.startswith("none"), name
        elif value == "":
            assert default == "empty", name
        else:
            assert default.startswith(f"`{_default(value)}`"), (name, default, _default(value))


def test_the_example_config_files_are_valid() -> None:
    example = re.search(r"```yaml\n# jubako-runtime.yaml\n(.*?)```", DOC, re.S)
    assert example is not None
    check_config(safeyaml.load(example.group(1)), "the example")
    files = list((Path(__file__).resolve().parents[2] / "examples").glob("*/jubako-runtime.yaml"))
    assert files
    for path in files:
        assert read_file(path)
