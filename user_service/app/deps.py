"""user_service's dependency aliases, declared once."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from common.app_state import settings_of
from user_service.app.config import UserSettings


async def user_settings(request: Request) -> UserSettings:
    return settings_of(request)  # type: ignore[return-value]


UserSettingsDep = Annotated[UserSettings, Depends(user_settings)]
