"""How to reach S3: the settings the registry's blob store and ``jubako run``'s
``s3://`` inputs and outputs share (``JUBAKO_REGISTRY_S3_*``, docs/configuration.md).

Core, so that ``jubako.batch`` reads them without importing the registry; the registry's
own settings (``registry/config.py``) extend this class with what only it needs (bucket,
prefix, presigning)."""

from __future__ import annotations

from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict


class S3Access(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="JUBAKO_REGISTRY_", extra="ignore")

    s3_endpoint_url: str = ""  # empty: AWS
    s3_region: str = "us-east-1"
    s3_access_key_id: str = ""  # empty: boto3's own chain (AWS_* variables, instance or pod identity)
    s3_secret_access_key: str = ""
    s3_addressing_style: Literal["auto", "path", "virtual"] = "path"
