"""Tags name bentos and models as ``name:version``.

Names are DNS-label-like so they fit Kubernetes object names and labels; versions fit a
label value (63 characters at most). Generated versions sort by creation time.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from .errors import InvalidTag

LATEST = "latest"
NAME_PATTERN = r"[a-z0-9](?:[a-z0-9._-]{0,61}[a-z0-9])?"
VERSION_PATTERN = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62})?"
_NAME = re.compile(NAME_PATTERN)
_VERSION = re.compile(VERSION_PATTERN)


@dataclass(frozen=True, order=True)
class Tag:
    name: str
    version: str = LATEST

    def __str__(self) -> str:
        return f"{self.name}:{self.version}"

    @property
    def is_latest(self) -> bool:
        return self.version == LATEST

    @classmethod
    def parse(cls, text: str) -> Tag:
        """Parse ``name`` or ``name:version``; a bare name means ``name:latest``."""
        name, sep, version = text.strip().partition(":")
        if sep and not version:
            raise InvalidTag(f"invalid tag {text!r}: empty version after ':'")
        tag = cls(name, version or LATEST)
        tag.validate()
        return tag

    def validate(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise InvalidTag(
                f"invalid name {self.name!r}: use 1-63 lowercase letters, digits, '.', '_' or '-',"
                " starting and ending with a letter or digit"
            )
        if not _VERSION.fullmatch(self.version):
            raise InvalidTag(
                f"invalid version {self.version!r}: use 1-63 letters, digits, '.', '_' or '-',"
                " starting with a letter or digit"
            )


def new_version(now: datetime | None = None) -> str:
    """A fresh version: UTC timestamp (sorts by time) plus random bits (no collisions)."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
