"""HTTP routes of user_service (docs/api.md §5). Thin: validate, call ``accounts``, shape the answer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Form, Request, Response, status

from common.deps import AdminUser, CurrentUser, DatabaseDep, RedisDep, SessionDep, client_address
from common.pagination import DEFAULT_LIMIT, Limit, Offset, Page, page_of
from user_service.app import accounts, crud
from user_service.app.deps import UserSettingsDep
from user_service.app.schemas import (
    LoginRequest,
    LogoutRequest,
    PasswordChange,
    RefreshRequest,
    TokenForm,
    TokenPair,
    UserAdminUpdate,
    UserCreate,
    UserRead,
    UserUpdateMe,
)

auth = APIRouter(prefix="/api/v1/auth", tags=["auth"])
users = APIRouter(prefix="/api/v1/users", tags=["users"])


@auth.post("/register", status_code=status.HTTP_201_CREATED, response_model=UserRead)
async def register(data: UserCreate, session: SessionDep) -> UserRead:
    user = await accounts.register_user(session, data)
    return UserRead.model_validate(user)


@auth.post("/token", response_model=TokenPair, summary="Log in with the OAuth2 password form")
async def token(
    form: Annotated[TokenForm, Form()],
    request: Request,
    session: SessionDep,
    redis: RedisDep,
    settings: UserSettingsDep,
) -> TokenPair:
    user = await accounts.authenticate(session, redis, settings, form.username, form.password, client_address(request))
    return accounts.issue_tokens(settings, user)


@auth.post("/login", response_model=TokenPair, summary="Log in with JSON")
async def login(
    data: LoginRequest, request: Request, session: SessionDep, redis: RedisDep, settings: UserSettingsDep
) -> TokenPair:
    user = await accounts.authenticate(session, redis, settings, data.username, data.password, client_address(request))
    return accounts.issue_tokens(settings, user)


@auth.post("/refresh", response_model=TokenPair)
async def refresh(data: RefreshRequest, session: SessionDep, redis: RedisDep, settings: UserSettingsDep) -> TokenPair:
    return await accounts.rotate_refresh_token(session, redis, settings, data.refresh_token)


@auth.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(
    caller: CurrentUser,
    redis: RedisDep,
    settings: UserSettingsDep,
    data: Annotated[LogoutRequest | None, Body()] = None,
) -> Response:
    await accounts.logout(redis, settings, caller, data.refresh_token if data else None)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@users.get("/me", response_model=UserRead)
async def read_me(caller: CurrentUser, db: DatabaseDep) -> Response:
    user = await accounts.read_active_user(db, caller.id)
    # The hot path (every client asks it at start): serialised once, here.
    return Response(user.model_dump_json(), media_type="application/json")


@users.patch("/me", response_model=UserRead)
async def update_me(data: UserUpdateMe, caller: CurrentUser, session: SessionDep) -> UserRead:
    user = await accounts.load_active_user(session, caller.id)
    return UserRead.model_validate(await accounts.update_me(session, user, data))


@users.post("/me/password", status_code=status.HTTP_204_NO_CONTENT)
async def change_password(
    data: PasswordChange, caller: CurrentUser, session: SessionDep, redis: RedisDep, settings: UserSettingsDep
) -> Response:
    user = await accounts.load_active_user(session, caller.id)
    await accounts.change_password(session, redis, settings, user, data.old_password, data.new_password)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@users.get("", response_model=Page[UserRead], summary="List users (admin)")
async def list_users(
    _admin: AdminUser, session: SessionDep, offset: Offset = 0, limit: Limit = DEFAULT_LIMIT
) -> Page[UserRead]:
    rows, total = await crud.list_users(session, offset, limit)
    return page_of(rows, total, offset, limit)


@users.patch("/{user_id}", response_model=UserRead, summary="Change a user's role or active flag (admin)")
async def admin_update_user(
    user_id: str,
    data: UserAdminUpdate,
    _admin: AdminUser,
    session: SessionDep,
    redis: RedisDep,
    settings: UserSettingsDep,
) -> UserRead:
    return UserRead.model_validate(await accounts.admin_update(session, redis, settings, user_id, data))
