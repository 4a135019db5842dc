"""What a running registry holds: settings, database, storage, metrics, failure counts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from .config import Settings
from .metrics import Metrics
from .ratelimit import FailureLimiter
from .storage import Storage


@dataclass
class Registry:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    storage: Storage
    metrics: Metrics
    spool_dir: Path  # where streamed-through parts are spooled before they are stored
    auth_failures: FailureLimiter  # failed token checks and logins (brute-force protection)
