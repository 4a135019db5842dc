"""Schema migrations through Alembic, driven from code (``jubako registry migrate``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from jubako.errors import JubakoError

MIGRATIONS = Path(__file__).parent / "migrations"


class SchemaOutdated(JubakoError):
    pass


def _config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return cfg


def head() -> str:
    return ScriptDirectory(str(MIGRATIONS)).get_current_head() or ""


def current(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    cfg = _config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def check(engine: Engine) -> None:
    """Raise SchemaOutdated unless the database is at the newest revision."""
    cur, want = current(engine), head()
    if cur != want:
        where = "empty" if cur is None else f"at revision {cur}"
        raise SchemaOutdated(
            f"the registry database ({engine.url.render_as_string()}) is {where}; this registry"
            f" needs revision {want}: run `jubako registry migrate` or start with --migrate"
        )
