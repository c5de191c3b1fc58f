"""Schema migrations (Alembic) for the shared models: the production path for schema changes (docs/api.md §3).

``upgrade_to_head(database_url)`` brings a database to the newest revision. It holds the same
schema lock as ``Database.create_all`` (an advisory lock on PostgreSQL, a file lock on SQLite), so
several processes or replicas running it at once, or a service creating tables meanwhile, do not
race. A database whose tables were made by ``create_all`` before it had migrations (no
``alembic_version`` table) is adopted: stamped at head when it equals the models, else refused with
the command to run. Run it from a shell or a compose prestart step with ``python -m common.migrations``.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import logging
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from common.config import REPO_ROOT, Settings, load_settings
from common.database import (
    PG_SCHEMA_LOCK_ID,
    SQLITE_SCHEMA_UPGRADES,
    Base,
    _acquire_file_lock,
    _sqlite_path,
    build_engine,
)

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = REPO_ROOT / "migrations"
VERSION_TABLE = "alembic_version"

# Schema objects made by DDL events beside the models, not in ``Base.metadata``: records' full-text
# search (SQLite: FTS5 tables ``records_search`` and ``records_cjk`` with their shadow tables, the
# owner numbers ``records_search_owners``, and revision 0001's ``records_fts``; PostgreSQL: GIN
# index ``ix_records_search``). Revisions create them by hand; model comparisons skip them
# (tests/test_migrations.py still checks that they exist after migrating).
UNMODELLED_NAME_PREFIXES: tuple[str, ...] = ("records_search", "records_fts", "records_cjk")
UNMODELLED_NAMES: frozenset[str] = frozenset({"ix_records_search", VERSION_TABLE})


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Alembic ``include_name`` hook: leave unmodelled objects out of comparisons and autogenerate."""
    if type_ in ("table", "index") and name:
        return name not in UNMODELLED_NAMES and not name.startswith(UNMODELLED_NAME_PREFIXES)
    return True


class UnmanagedSchemaError(RuntimeError):
    """The database has tables but no migration history, and they differ from the models."""


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config for ``migrations/``; with ``connection``, env.py runs on it."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def schema_differences(connection: Connection) -> list[Any]:
    """What autogenerate would change to make the database match the models (empty: they match)."""
    import common.models  # noqa: F401  (registers every shared table)

    context = MigrationContext.configure(connection, opts={"compare_type": True, "include_name": include_name})
    return list(compare_metadata(context, Base.metadata))


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _upgrade(connection: Connection) -> None:
    config = alembic_config(connection)
    tables = set(inspect(connection).get_table_names())
    if VERSION_TABLE not in tables and tables & set(Base.metadata.tables):
        diffs = schema_differences(connection)
        if diffs:
            raise UnmanagedSchemaError(
                "the database has tables made without migrations and they differ from the models "
                f"({len(diffs)} differences, e.g. {diffs[0]!r}); bring it to a known revision and stamp it: "
                "`.venv/bin/alembic -x database_url=... stamp <revision>`"
            )
        logger.info("database tables predate migrations and match the models: stamping head")
        command.stamp(config, "head")
        if connection.dialect.name == "sqlite":
            # What create_all would have upgraded (the search index) before the stamp.
            for upgrade in SQLITE_SCHEMA_UPGRADES:
                upgrade(connection)
    command.upgrade(config, "head")


def _downgrade_to_base(connection: Connection) -> None:
    command.downgrade(alembic_config(connection), "base")


async def _run_locked(database_url: str, step: Callable[[Connection], Any]) -> Any:
    engine = build_engine(database_url)
    lock = None
    try:
        if engine.dialect.name == "sqlite":
            path = _sqlite_path(database_url)
            lock_path = (path.parent if path else Path(tempfile.gettempdir())) / ".schema.lock"
            lock = await asyncio.to_thread(_acquire_file_lock, lock_path)
        async with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                await conn.execute(text(f"SELECT pg_advisory_xact_lock({PG_SCHEMA_LOCK_ID})"))
            return await conn.run_sync(step)
    finally:
        if lock is not None:
            fcntl.flock(lock, fcntl.LOCK_UN)
            lock.close()
        await engine.dispose()


async def upgrade_to_head_async(database_url: str) -> None:
    """Migrate ``database_url`` to the newest revision (from inside a running event loop)."""
    await _run_locked(database_url, _upgrade)


def upgrade_to_head(database_url: str) -> None:
    """Migrate ``database_url`` to the newest revision; safe to call from several processes at once."""
    asyncio.run(upgrade_to_head_async(database_url))


def downgrade_to_base(database_url: str) -> None:
    """Undo every revision (drops the shared tables): for tests and throwaway databases."""
    asyncio.run(_run_locked(database_url, _downgrade_to_base))


def current_revision(database_url: str) -> str | None:
    """The revision the database is at, or None when it has no migration history."""
    return asyncio.run(_run_locked(database_url, _current_revision))


def main(argv: list[str] | None = None) -> int:
    """``python -m common.migrations``: the prestart step (migrate the configured DATABASE_URL)."""
    parser = argparse.ArgumentParser(
        prog="python -m common.migrations",
        description="Bring the database (DATABASE_URL from the environment or .env) to the newest schema revision.",
    )
    parser.add_argument("--database-url", help="override DATABASE_URL")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    url = args.database_url or load_settings(Settings).database_url
    try:
        upgrade_to_head(url)
    except UnmanagedSchemaError as exc:
        logger.error("%s", exc)
        return 1
    logger.info("database is at revision %s (head)", current_revision(url))
    return 0


if __name__ == "__main__":
    sys.exit(main())
