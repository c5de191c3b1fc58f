"""mobile_service's dependency aliases, declared once."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from common.api_clients import ServiceClient
from common.app_state import client_of, settings_of
from mobile_service.app.config import MobileSettings
from mobile_service.app.history import HistoryPolicy


async def mobile_settings(request: Request) -> MobileSettings:
    return settings_of(request)  # type: ignore[return-value]


async def history_policy(request: Request) -> HistoryPolicy:
    return HistoryPolicy.from_settings(settings_of(request))  # type: ignore[arg-type]


async def llm_service(request: Request) -> ServiceClient:
    return client_of(request, "llm_service")


MobileSettingsDep = Annotated[MobileSettings, Depends(mobile_settings)]
LlmServiceDep = Annotated[ServiceClient, Depends(llm_service)]
HistoryPolicyDep = Annotated[HistoryPolicy, Depends(history_policy)]
