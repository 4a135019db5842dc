"""Many rows into one table in the request's transaction.

A push of a bento with 30 000 files inserts 30 000 file rows and up to 30 000 blob-upload
rows. Through psycopg2's executemany (SQLAlchemy pages it into multi-row INSERTs) that is
~0.6-0.8 s of Python formatting per 30 000 rows on PostgreSQL; ``COPY ... FROM STDIN`` takes
~0.08 s (bench/README.md, "Many files in one push"). SQLite and small batches keep the
plain multi-row INSERT.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

COPY_FROM = 200  # rows: fewer go through INSERT (COPY's fixed cost is a round trip or two)


def insert_rows(db: Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` (each with the same keys) into ``table``, in ``db``'s transaction."""
    if not rows:
        return
    conn = db.connection()
    if conn.dialect.name != "postgresql" or conn.dialect.driver != "psycopg2" or len(rows) < COPY_FROM:
        db.execute(insert(table), list(rows))
        return
    columns = list(rows[0])
    buf = io.StringIO()
    for row in rows:
        buf.write("\t".join(_copy_text(row[c]) for c in columns))
        buf.write("\n")
    buf.seek(0)
    quote = conn.dialect.identifier_preparer.quote
    sql = f"COPY {quote(table.name)} ({', '.join(quote(c) for c in columns)}) FROM STDIN"
    dbapi = conn.dialect.dbapi
    try:
        with conn.connection.dbapi_connection.cursor() as cur:  # type: ignore[union-attr]
            cur.copy_expert(sql, buf)
    except dbapi.Error as e:  # type: ignore[union-attr]
        # what an INSERT would raise: IntegrityError for a duplicate, and so on
        raise DBAPIError.instance(sql, None, e, dbapi.Error, dialect=conn.dialect) from e


_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value: Any) -> str:
    """One value in COPY's text format."""
    if value is None:
        return "\\N"
    if value is True or value is False:
        return "t" if value else "f"
    return str(value).translate(_ESCAPES)
