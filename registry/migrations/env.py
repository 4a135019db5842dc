"""Alembic environment: the connection comes from registry.migrate (no alembic.ini needed)."""

from alembic import context
from jubako.registry.db.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # plain `alembic` command line: use the configured URL
    from sqlalchemy import create_engine

    engine = create_engine(config.get_main_option("sqlalchemy.url"))
    connection = engine.connect()

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
