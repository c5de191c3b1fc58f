"""Rebuild the search indexes from ``records``: ``python -m mobile_service.app.reindex`` (uses
mobile_service's DATABASE_URL).

- The SQLite full-text tables (``records_search`` and ``records_cjk``): run it after a ``VACUUM``
  of the SQLite file, which may renumber the rowids both tables map. No-op on PostgreSQL.
- ``--embeddings``: every live record is marked pending in the semantic index, so llm_service's
  indexer embeds them all again (after changing provider, or to repair). The records stay
  searchable by their old vectors until each is done; writes go on meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

from common.config import load_settings
from common.database import Database
from common.record_index import store as index_store
from mobile_service.app import crud
from mobile_service.app.config import MobileSettings


async def _run(database_url: str, job: Callable[[AsyncSession], Awaitable[int]]) -> int:
    db = Database(database_url)
    try:
        async with db.session() as session:
            return await job(session)
    finally:
        await db.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mobile_service.app.reindex", description=__doc__.splitlines()[0])
    parser.add_argument("--embeddings", action="store_true", help="also re-embed every record (semantic index)")
    args = parser.parse_args(argv)
    settings = load_settings(MobileSettings, "mobile_service")
    written = asyncio.run(_run(settings.database_url, crud.rebuild_search_index))
    print(f"search index rebuilt; {written} records with CJK text indexed")
    if args.embeddings:
        pending = asyncio.run(_run(settings.database_url, index_store.mark_all_pending))
        print(f"semantic index: {pending} records marked for embedding; llm_service's indexer takes them up")


if __name__ == "__main__":
    main()
