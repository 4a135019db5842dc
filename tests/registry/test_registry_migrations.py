"""Migrations build the schema from empty, and it matches the models (no drift)."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from jubako.registry import migrate
from jubako.registry.db.models import Base
from sqlalchemy import create_engine


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_migrations_up_from_empty_match_models(db: str, tmp_path: Path, request) -> None:  # type: ignore[no-untyped-def]
    url = request.getfixturevalue("pg_url") if db == "postgres" else f"sqlite:///{tmp_path}/m.db"
    engine = create_engine(url)
    assert migrate.current(engine) is None
    with pytest.raises(migrate.SchemaOutdated, match="jubako registry migrate"):
        migrate.check(engine)
    migrate.upgrade(engine)
    migrate.check(engine)
    assert migrate.current(engine) == migrate.head()
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": False}), Base.metadata
        )
    assert diff == []
    engine.dispose()
