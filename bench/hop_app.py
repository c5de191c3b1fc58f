"""One inter-service hop: an app built by the common factory whose endpoint verifies the caller's
token locally and then calls user_service's ``GET /api/v1/users/me`` through ``ServiceClient``
with the same token (the pattern mobile_service uses for llm_service). ``/auth`` is the auth path
alone (no upstream call), to tell the two costs apart.

Run: ``uvicorn bench.hop_app:build_app --factory`` with USER_SERVICE_URL set."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from common.app_factory import create_app
from common.app_state import client_of
from common.config import Settings, load_settings
from common.deps import CurrentUser

router = APIRouter()


@router.get("/auth")
async def auth_only(caller: CurrentUser) -> dict[str, str]:
    """The auth path alone: JWT verification and the revocation check (one Redis MGET)."""
    return {"id": caller.id}


@router.get("/hop")
async def hop(caller: CurrentUser, request: Request) -> JSONResponse:
    upstream = await client_of(request, "user_service").request("GET", "/api/v1/users/me", token=caller.token)
    return JSONResponse(upstream.json(), status_code=upstream.status_code)


def build_app() -> FastAPI:
    settings = load_settings(Settings, None, service_name="bench_hop")
    return create_app(settings, title="bench hop", routers=[router], use_database=False, upstreams=["user_service"])
