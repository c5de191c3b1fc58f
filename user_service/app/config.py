"""Settings of user_service: the shared keys plus the first admin's credentials."""

from __future__ import annotations

import re

from pydantic import model_validator

from common.config import Settings

USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{3,32}$")
PASSWORD_MIN, PASSWORD_MAX = 8, 128


class UserSettings(Settings):
    """user_service keys on top of the shared ones."""

    # The first admin, created at start-up when both are set and the username is free.
    admin_username: str | None = None
    admin_password: str | None = None

    @model_validator(mode="after")
    def _check_first_admin(self) -> UserSettings:
        # Fail at start-up with the key to fix, not later with a validation traceback.
        if self.admin_username and not USERNAME_PATTERN.match(self.admin_username):
            raise ValueError("ADMIN_USERNAME must be 3-32 characters of A-Z, a-z, 0-9, '_', '.', '-'")
        if self.admin_password and not PASSWORD_MIN <= len(self.admin_password) <= PASSWORD_MAX:
            raise ValueError(f"ADMIN_PASSWORD must be {PASSWORD_MIN}-{PASSWORD_MAX} characters")
        return self
