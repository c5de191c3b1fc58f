"""Alembic environment for the shared models (``common.models``), async-friendly.

- ``target_metadata`` is ``common.database.Base.metadata`` after importing ``common.models``
  (which imports every model module), so autogenerate sees every table of every service.
- Called by ``common.migrations`` with an open connection in ``config.attributes["connection"]``
  (the caller holds the schema lock and the transaction); from the ``alembic`` command line it
  opens its own async engine on ``-x database_url=...`` or the configured ``DATABASE_URL``.
- SQLite gets batch mode (ALTER TABLE by copy) so that later revisions work on both databases.
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

import common.models  # noqa: F401  (registers every shared table on Base.metadata)
from common.config import Settings, load_settings
from common.database import Base, UTCDateTime
from common.migrations import include_name

config = context.config
target_metadata = Base.metadata

if config.config_file_name is not None and "connection" not in config.attributes:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    """``-x database_url=...``, else the URL every service would use (env, .env, default)."""
    return context.get_x_argument(as_dictionary=True).get("database_url") or load_settings(Settings).database_url


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    """Write project column types as plain SQLAlchemy types: revisions must not import app code."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def configure_options(dialect_name: str) -> dict[str, Any]:
    return {
        "target_metadata": target_metadata,
        "compare_type": True,
        "render_as_batch": dialect_name == "sqlite",
        "render_item": render_item,
        "include_name": include_name,
    }


def run_migrations_offline() -> None:
    """``alembic upgrade head --sql``: print the SQL instead of running it."""
    url = database_url()
    context.configure(
        url=url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **configure_options(url.split(":", 1)[0].split("+", 1)[0]),
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    context.configure(connection=connection, **configure_options(connection.dialect.name))
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    engine = create_async_engine(database_url(), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
            await connection.commit()
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        do_run_migrations(connection)
    else:
        asyncio.run(run_async_migrations())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
