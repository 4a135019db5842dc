"""Client-side settings, from environment variables (documented in docs/configuration.md)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="JUBAKO_", extra="ignore")

    home: Path = Field(default_factory=lambda: Path.home() / ".jubako")
    # "auto" picks CUDA when present; "cpu", "cuda" or "cuda:N" force a device.
    device: str = "auto"
    # jubako serve: make a per-bento virtual environment when the bento's requirements are not
    # met here (docs/requirements.md), cached under ``venvs`` (default: $JUBAKO_HOME/venvs).
    install: bool = False
    venvs: Path | None = None


def settings() -> Settings:
    return Settings()


def home() -> Path:
    return settings().home.expanduser()
