"""Request and response schemas of user_service, one per direction."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints

Username = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{3,32}$")]
Password = Annotated[str, Field(min_length=8, max_length=128)]
DisplayName = Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)]


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: Username
    password: Password
    email: EmailStr | None = None
    display_name: DisplayName | None = None


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    username: str
    email: str | None
    display_name: str | None
    role: str
    is_active: bool
    created_at: datetime
    updated_at: datetime


class UserUpdateMe(BaseModel):
    model_config = ConfigDict(extra="forbid")
    display_name: DisplayName | None = None
    email: EmailStr | None = None


class UserAdminUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["user", "admin"] | None = None
    is_active: bool | None = None


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    old_password: Annotated[str, Field(max_length=128)]
    new_password: Password


# Login inputs are capped (not pattern-checked): a wrong-but-short name still gets the one
# "incorrect username or password" answer, an oversized one a 422 before any hashing.
LoginName = Annotated[str, Field(min_length=1, max_length=64)]
LoginPassword = Annotated[str, Field(min_length=1, max_length=128)]


class LoginRequest(BaseModel):
    username: LoginName
    password: LoginPassword


class TokenForm(BaseModel):
    """The OAuth2 password form of ``POST /auth/token`` (the fields of FastAPI's
    ``OAuth2PasswordRequestForm``, with length caps)."""

    # Not nullable: a form cannot say "null" (the fields are optional with defaults instead).
    grant_type: Annotated[str, Field(pattern=r"^password$")] = "password"
    username: LoginName
    password: LoginPassword
    scope: Annotated[str, Field(max_length=1024)] = ""
    client_id: Annotated[str, Field(max_length=256)] = ""
    client_secret: Annotated[str, Field(max_length=256)] = ""


class RefreshRequest(BaseModel):
    refresh_token: Annotated[str, Field(min_length=1, max_length=4096)]


class LogoutRequest(BaseModel):
    refresh_token: Annotated[str, Field(max_length=4096)] | None = None


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
