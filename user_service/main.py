"""user_service — accounts, login, tokens and roles (docs/api.md §5), on :8001.

Owns the ``users`` table. Issues access/refresh JWTs that every other service verifies locally
with ``common.security``; revocations go to Redis where every service sees them at once.
Run: ``python user_service/main.py`` (or through the launcher, ``python main.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastapi import FastAPI

from common.app_factory import create_app, serve
from common.app_state import State
from common.config import load_settings
from user_service.app.accounts import ensure_admin
from user_service.app.config import UserSettings
from user_service.app.routes import auth, users

SERVICE = "user_service"


async def _create_first_admin(state: State) -> None:
    settings: UserSettings = state["settings"]  # type: ignore[assignment]
    if settings.admin_username and settings.admin_password and state["db"] is not None:
        async with state["db"].session() as session:
            await ensure_admin(session, settings.admin_username, settings.admin_password)


def build_app(settings: UserSettings | None = None, **factory_kwargs: object) -> FastAPI:
    settings = settings or load_settings(UserSettings, SERVICE)
    return create_app(
        settings,
        title="user_service",
        description="Accounts, login, tokens and roles.",
        routers=[auth, users],
        on_startup=[_create_first_admin],
        **factory_kwargs,  # type: ignore[arg-type]
    )


if __name__ == "__main__":
    settings = load_settings(UserSettings, SERVICE)
    serve(build_app(settings), settings)
