"""Admin command line of user_service.

    python -m user_service.cli create-admin --username alice [--password ...]

The password is asked for when not given (never pass it on a shared machine's command line).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys

from common.config import ensure_root_env, load_settings
from common.database import Database
from user_service.app.accounts import ensure_admin
from user_service.app.config import UserSettings


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
    create.add_argument("--username", required=True)
    create.add_argument("--password", help="8-128 characters; prompted for when omitted")
    args = parser.parse_args(argv)
    ensure_root_env()
    password = args.password or getpass.getpass("Password: ")
    if not 8 <= len(password) <= 128:
        parser.error("password must be 8-128 characters")
    return asyncio.run(_create_admin(args.username, password))


if __name__ == "__main__":
    sys.exit(main())
