"""Admin command line of user_service.

    python -m user_service.cli create-admin --username alice [--password ...]

The password is asked for when not given (never pass it on a shared machine's command line).
It uses the same settings as the service (DATABASE_URL from the environment or the .env files)
and creates the tables when they are missing.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys

from common.config import load_settings
from common.database import Database
from user_service.app.accounts import ensure_admin
from user_service.app.config import PASSWORD_MAX, PASSWORD_MIN, USERNAME_PATTERN, UserSettings


async def _create_admin(username: str, password: str) -> int:
    settings = load_settings(UserSettings, "user_service")
    db = Database(settings.database_url)
    try:
        await db.create_all()
        async with db.session() as session:
            user = await ensure_admin(session, username, password)
    finally:
        await db.dispose()
    if user is None:
        print(f"user {username!r} already exists; nothing changed", file=sys.stderr)
        return 1
    print(f"admin {username!r} created (id {user.id})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m user_service.cli", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create-admin", help="create an admin account")
    create.add_argument("--username", required=True, help="3-32 characters of A-Z, a-z, 0-9, '_', '.', '-'")
    create.add_argument("--password", help=f"{PASSWORD_MIN}-{PASSWORD_MAX} characters; prompted for when omitted")
    args = parser.parse_args(argv)
    if not USERNAME_PATTERN.match(args.username):
        parser.error("username must be 3-32 characters of A-Z, a-z, 0-9, '_', '.', '-'")
    password = args.password or getpass.getpass("Password: ")
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        parser.error(f"password must be {PASSWORD_MIN}-{PASSWORD_MAX} characters")
    return asyncio.run(_create_admin(args.username, password))


if __name__ == "__main__":
    sys.exit(main())
