"""docs/configuration.md is the one place for settings: every settings field is listed there."""

from pathlib import Path

import pytest
from jubako.operator.config import OperatorSettings
from jubako.registry.config import Settings as RegistrySettings
from jubako.runtime.settings import ProxySettings
from pydantic_settings import BaseSettings

from jubako.config import Settings as ClientSettings

DOC = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()


@pytest.mark.parametrize("settings", [ClientSettings, RegistrySettings, OperatorSettings, ProxySettings])
def test_every_setting_is_documented(settings: type[BaseSettings]) -> None:
    prefix = settings.model_config["env_prefix"]
    missing = [
        f"{prefix}{name}".upper()
        for name in settings.model_fields
        if f"{prefix}{name}".upper() not in DOC
    ]
    assert not missing, f"add to docs/configuration.md: {missing}"
