"""Many rows in one statement (registry/db/bulk.py): COPY on PostgreSQL, multi-row INSERT
on SQLite and for a few rows. Both give the same rows back, hostile text included (COPY's
text format gives tab, newline, carriage return and backslash a meaning), NULL and
booleans; and a row that breaks a constraint fails the whole COPY, as an INSERT would."""

from __future__ import annotations

from pathlib import Path

import pytest
from jubako.registry.db.bulk import COPY_FROM, _copy_text, insert_rows
from sqlalchemy import Boolean, Column, Integer, MetaData, String, Table, create_engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

HOSTILE = ["plain.py", "tab\there", "new\nline", "cr\rhere", "back\\slash", "\\N", "ünï/路径.txt", "end\\"]


def table() -> tuple[MetaData, Table]:
    md = MetaData()
    t = Table("bulk_probe", md, Column("id", Integer, primary_key=True), Column("path", String(200), unique=True),
              Column("note", String(50), nullable=True), Column("done", Boolean))
    return md, t


def rows(n: int) -> list[dict[str, object]]:
    return [{"id": i, "path": f"{HOSTILE[i % len(HOSTILE)]}-{i}", "note": None if i % 3 else f"n{i}",
             "done": i % 2 == 0} for i in range(n)]


def test_copy_text_escapes_what_copy_gives_a_meaning() -> None:
    assert [_copy_text(v) for v in ("a\tb", "a\nb", "a\rb", "a\\b", None, True, False, 7)] == [
        "a\\tb", "a\\nb", "a\\rb", "a\\\\b", "\\N", "t", "f", "7"]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_rows_come_back_as_given(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("pg_url") if backend == "postgres" else f"sqlite:///{tmp_path / 'db.sqlite'}"
    engine = create_engine(url)
    md, t = table()
    md.create_all(engine)
    want = rows(COPY_FROM * 3)  # over the COPY threshold
    with Session(engine) as db, db.begin():
        insert_rows(db, t, want)
        insert_rows(db, t, [])
    with Session(engine) as db:
        got = [dict(r._mapping) for r in db.execute(select(t).order_by(t.c.id))]
    assert got == want
    # a duplicate among many rows fails the statement, and the transaction inserts nothing
    with pytest.raises(IntegrityError), Session(engine) as db, db.begin():
        insert_rows(db, t, [{**r, "id": r["id"] + 10_000} for r in rows(COPY_FROM * 2)])
    with Session(engine) as db:
        assert db.execute(select(t.c.id).where(t.c.id >= 10_000)).first() is None
    engine.dispose()
