"""Rebuild the SQLite search tables (``records_search`` and ``records_cjk``) from ``records``:
``python -m mobile_service.app.reindex`` (uses mobile_service's DATABASE_URL). Run it after a
``VACUUM`` of the SQLite file, which may renumber the rowids both tables map. No-op on PostgreSQL.
"""

from __future__ import annotations

import asyncio

from common.config import load_settings
from common.database import Database
from mobile_service.app import crud
from mobile_service.app.config import MobileSettings


async def rebuild(database_url: str) -> int:
    db = Database(database_url)
    try:
        async with db.session() as session:
            return await crud.rebuild_search_index(session)
    finally:
        await db.dispose()


def main() -> None:
    settings = load_settings(MobileSettings, "mobile_service")
    written = asyncio.run(rebuild(settings.database_url))
    print(f"search index rebuilt; {written} records with CJK text indexed")


if __name__ == "__main__":
    main()
