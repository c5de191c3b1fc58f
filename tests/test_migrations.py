"""Alembic migrations: the migrated schema is the models' schema, on SQLite and on PostgreSQL.

If a test here fails after a model changed, generate a revision (see migrations/README.md):
``.venv/bin/alembic -x database_url=sqlite+aiosqlite:////tmp/regen.db revision --autogenerate -m "..."``
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import inspect, text

import common.models  # noqa: F401  (every shared table)
from common.config import REPO_ROOT
from common.database import Base, Database, build_engine
from common.migrations import (
    VERSION_TABLE,
    UnmanagedSchemaError,
    current_revision,
    downgrade_to_base,
    head_revision,
    schema_differences,
    upgrade_to_head,
)

REGENERATE_HINT = "models and migrations differ: generate a revision (migrations/README.md)"


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    reachable_postgres: Any,
) -> Iterator[str]:
    """An empty database of each kind; PostgreSQL is skipped where no server answers."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('migrations') / 'app.db'}"
        return
    if reachable_postgres is None:
        pytest.skip("no PostgreSQL reachable (set TEST_DATABASE_URL)")
    url = reachable_postgres.create_database()
    yield url
    reachable_postgres.drop_database(url)


def _inspect(url: str, fn: Callable[[Any], Any]) -> Any:
    async def _run() -> Any:
        engine = build_engine(url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(fn)
        finally:
            await engine.dispose()

    return asyncio.run(_run())


def _create_all(url: str) -> None:
    """What every service does at start on SQLite (and the launcher once on either database)."""

    async def _run() -> None:
        db = Database(url)
        try:
            await db.create_all()
        finally:
            await db.dispose()

    asyncio.run(_run())


def _tables(url: str) -> set[str]:
    return _inspect(url, lambda conn: set(inspect(conn).get_table_names()))


def test_migrated_schema_equals_the_models_schema(empty_database: str) -> None:
    upgrade_to_head(empty_database)
    assert current_revision(empty_database) == head_revision()
    assert _inspect(empty_database, schema_differences) == [], REGENERATE_HINT
    assert set(Base.metadata.tables) <= _tables(empty_database)


def _catalog(conn: Any) -> set[tuple[str, str, str]]:
    """Every table, index and trigger, including those made by DDL events (search), with the
    definition where the database normalises it (PostgreSQL indexes; SQLite triggers and virtual
    tables, whose SQL is written by hand on both paths)."""
    if conn.dialect.name == "sqlite":
        rows = conn.execute(text("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"))
        catalog = {
            (kind, name, sql if kind == "trigger" or (sql or "").startswith("CREATE VIRTUAL") else "")
            for kind, name, sql in rows
        }
    else:
        rows = conn.execute(
            text(
                "SELECT 'table', tablename, '' FROM pg_tables WHERE schemaname = current_schema() "
                "UNION SELECT 'index', indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
                "UNION SELECT 'trigger', tgname, '' FROM pg_trigger WHERE NOT tgisinternal"
            )
        )
        catalog = {(kind, name, definition) for kind, name, definition in rows}
    return {entry for entry in catalog if not entry[1].startswith(VERSION_TABLE)}


def test_migrated_database_has_the_same_objects_as_create_all(
    empty_database: str, tmp_path_factory: pytest.TempPathFactory, reachable_postgres: Any
) -> None:
    if empty_database.startswith("sqlite"):
        reference = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('reference') / 'app.db'}"
    else:
        reference = reachable_postgres.create_database()

    try:
        _create_all(reference)
        upgrade_to_head(empty_database)
        assert _inspect(empty_database, _catalog) == _inspect(reference, _catalog), REGENERATE_HINT
    finally:
        if not reference.startswith("sqlite"):
            reachable_postgres.drop_database(reference)


def test_upgrade_twice_and_concurrently_is_harmless(empty_database: str) -> None:
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(upgrade_to_head, [empty_database] * 3))
    upgrade_to_head(empty_database)
    assert current_revision(empty_database) == head_revision()


def test_database_made_by_create_all_is_adopted_at_head(empty_database: str) -> None:

    _create_all(empty_database)
    assert current_revision(empty_database) is None
    upgrade_to_head(empty_database)
    assert current_revision(empty_database) == head_revision()


def test_unmanaged_tables_that_differ_from_the_models_are_refused(empty_database: str) -> None:
    async def _make_foreign_users_table() -> None:
        engine = build_engine(empty_database)
        try:
            async with engine.begin() as conn:
                await conn.execute(text("CREATE TABLE users (id VARCHAR(36) PRIMARY KEY, nickname TEXT)"))
        finally:
            await engine.dispose()

    asyncio.run(_make_foreign_users_table())
    with pytest.raises(UnmanagedSchemaError, match="stamp"):
        upgrade_to_head(empty_database)
    assert VERSION_TABLE not in _tables(empty_database)


def test_downgrade_to_base_removes_every_shared_table(empty_database: str) -> None:
    upgrade_to_head(empty_database)
    downgrade_to_base(empty_database)
    assert not (set(Base.metadata.tables) & _tables(empty_database))
    assert current_revision(empty_database) is None


def test_prestart_command_migrates_the_configured_database(empty_database: str) -> None:
    env = {**os.environ, "DATABASE_URL": empty_database}
    done = subprocess.run(
        [sys.executable, "-m", "common.migrations"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert current_revision(empty_database) == head_revision()
    assert "head" in done.stderr


def test_every_revision_is_on_one_line_of_history() -> None:
    from alembic.script import ScriptDirectory

    from common.migrations import alembic_config

    script = ScriptDirectory.from_config(alembic_config())
    assert len(script.get_heads()) == 1, "several heads: merge them with `alembic merge heads`"


def test_revision_0002_moves_sqlite_search_to_owner_ranged_ids_and_back(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from alembic import command

    from common.migrations import _run_locked, alembic_config

    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('search-revision') / 'app.db'}"
    asyncio.run(_run_locked(url, lambda conn: command.upgrade(alembic_config(conn), "0001")))
    rows = [
        ("a" * 8 + f"-0000-4000-8000-00000000000{n}", owner, title)
        for n, (owner, title) in enumerate(
            [("owner-1", "paper lantern"), ("owner-2", "lantern of owner 2"), ("owner-1", "no match")]
        )
    ]

    def insert(conn: Any) -> None:
        for record_id, owner, title in rows:
            conn.execute(
                text(
                    "INSERT INTO records (id, owner_id, title, content, tags, pinned, visibility, attachments, "
                    "version, change_seq, created_at, updated_at) VALUES "
                    "(:id, :owner, :title, '', '[]', 0, 'private', '[]', 1, :seq, '2026-12-01', '2026-12-01')"
                ),
                {"id": record_id, "owner": owner, "title": title, "seq": record_id[-1]},
            )

    asyncio.run(_run_locked(url, insert))
    upgrade_to_head(url)

    def owners_of_matches(conn: Any) -> list[tuple[str, str]]:
        found = conn.execute(
            text(
                "SELECT o.owner_id, r.title FROM records_search s "
                "JOIN records_search_owners o ON s.rowid / 4294967296 = o.number "
                "JOIN records r ON r.rowid = s.rowid % 4294967296 WHERE records_search MATCH 'lantern' ORDER BY 1"
            )
        )
        return [tuple(row) for row in found]

    assert _inspect(url, owners_of_matches) == [("owner-1", "paper lantern"), ("owner-2", "lantern of owner 2")]
    assert not {t for t in _tables(url) if t.startswith("records_fts")}
    asyncio.run(_run_locked(url, lambda conn: command.downgrade(alembic_config(conn), "0001")))
    assert "records_fts" in _tables(url) and "records_search" not in _tables(url)


def test_revision_0004_adds_record_history_beside_existing_records_and_back(empty_database: str) -> None:
    from alembic import command

    from common.migrations import _run_locked, alembic_config

    asyncio.run(_run_locked(empty_database, lambda conn: command.upgrade(alembic_config(conn), "0003")))

    def insert(conn: Any) -> None:
        conn.execute(
            text(
                "INSERT INTO records (id, owner_id, title, content, tags, pinned, visibility, attachments, "
                "version, change_seq, created_at, updated_at) VALUES ('r-1', 'owner-1', 't', 'c', '[]', false, "
                "'private', '[]', 4, 7, '2026-12-01', '2026-12-01')"
            )
        )
        conn.execute(text("INSERT INTO record_change_counters (id, value) VALUES ('owner-1', 7)"))

    asyncio.run(_run_locked(empty_database, insert))
    upgrade_to_head(empty_database)

    def history_columns(conn: Any) -> tuple[Any, ...]:
        record = conn.execute(text("SELECT text_version, device FROM records WHERE id = 'r-1'")).one()
        purged = conn.execute(text("SELECT purged_seq FROM record_change_counters")).scalar_one()
        return (*record, purged, "record_revisions" in inspect(conn).get_table_names())

    # An older record's text start is unknown (NULL): only its current version is a merge base.
    assert _inspect(empty_database, history_columns) == (None, None, 0, True)
    asyncio.run(_run_locked(empty_database, lambda conn: command.downgrade(alembic_config(conn), "0003")))
    columns = _inspect(empty_database, lambda conn: {c["name"] for c in inspect(conn).get_columns("records")})
    assert {"text_version", "device"}.isdisjoint(columns) and "record_revisions" not in _tables(empty_database)
    assert _inspect(empty_database, lambda conn: conn.execute(text("SELECT count(*) FROM records")).scalar_one()) == 1


def _made_old_then_started(url: str, *old_statements: str) -> None:
    """A SQLite file made by ``create_all``, turned back into an older schema by
    ``old_statements``, then started on as every service does: it must equal the models again."""
    from common.migrations import _run_locked

    _create_all(url)

    def make_it_old(conn: Any) -> None:
        for statement in old_statements:
            conn.execute(text(statement))

    asyncio.run(_run_locked(url, make_it_old))
    assert _inspect(url, schema_differences) != []
    _create_all(url)  # what every service does at start on SQLite
    assert _inspect(url, schema_differences) == [], REGENERATE_HINT


def test_a_sqlite_file_made_before_record_history_gets_its_columns_at_start(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    _made_old_then_started(
        f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('history-columns') / 'app.db'}",
        "DROP INDEX ix_records_tombstones",
        "ALTER TABLE records DROP COLUMN text_version",
        "ALTER TABLE records DROP COLUMN device",
        "ALTER TABLE record_change_counters DROP COLUMN purged_seq",
    )


def _index_columns(conn: Any) -> dict[str, list[str]]:
    return {index["name"]: index["column_names"] for index in inspect(conn).get_indexes("records")}


def test_revision_0005_puts_id_at_the_end_of_the_listing_indexes_and_back(empty_database: str) -> None:
    from alembic import command

    from common.migrations import _run_locked, alembic_config

    upgrade_to_head(empty_database)
    indexes = _inspect(empty_database, _index_columns)
    assert indexes["ix_records_owner_updated"] == ["owner_id", "deleted_at", "updated_at", "id"]
    assert indexes["ix_records_owner_pinned_updated"] == ["owner_id", "pinned", "updated_at", "id"]
    asyncio.run(_run_locked(empty_database, lambda conn: command.downgrade(alembic_config(conn), "0004")))
    indexes = _inspect(empty_database, _index_columns)
    assert indexes["ix_records_owner_updated"] == ["owner_id", "deleted_at", "updated_at"]
    assert indexes["ix_records_owner_pinned_updated"] == ["owner_id", "pinned", "updated_at"]


def test_a_sqlite_file_made_before_revision_0005_gets_its_listing_indexes_at_start(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('listing-indexes') / 'app.db'}"
    _made_old_then_started(
        url,
        "DROP INDEX ix_records_owner_updated",
        "CREATE INDEX ix_records_owner_updated ON records (owner_id, deleted_at, updated_at)",
        "DROP INDEX ix_records_owner_pinned_updated",
        "CREATE INDEX ix_records_owner_pinned_updated ON records (owner_id, pinned, updated_at)",
    )
    indexes = _inspect(url, _index_columns)
    assert indexes["ix_records_owner_updated"] == ["owner_id", "deleted_at", "updated_at", "id"]
    assert indexes["ix_records_owner_pinned_updated"] == ["owner_id", "pinned", "updated_at", "id"]
