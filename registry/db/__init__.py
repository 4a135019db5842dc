"""Registry metadata: SQLAlchemy models and sessions; the schema is owned by Alembic."""
