from common.config import Settings


class UserSettings(Settings):
    """user_service keys on top of the shared ones."""

    admin_username: str | None = None
    admin_password: str | None = None
