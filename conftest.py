"""Test fixtures shared by every service's tests and the end-to-end tests.

- A real Redis: ``TEST_REDIS_URL`` if set, else one answering on 127.0.0.1:6379, else a
  ``redis-server`` (or fakeredis's TCP server) that this run starts. Each run uses its own
  database number and flushes it first.
- A real SQLite file per test module; with ``TEST_DATABASE_URL`` (a PostgreSQL server, e.g.
  ``postgresql+asyncpg://postgres@127.0.0.1:5432/test``) a throwaway database of its own on that
  server per test module, dropped afterwards, so concurrent runs never collide.
- ``make_settings`` builds a service's settings for in-process apps; ``issue_token`` mints real
  tokens with ``common.security``; ``launch_suite`` runs ``python main.py`` on free ports.
- ``s3_server``: moto's S3 server on loopback; ``TEST_IMAGE_STORAGE=s3`` runs image_service's
  tests on it instead of local disk.

Each lives in a module of ``tests/fixtures/``, loaded here; helpers tests share are modules of
``tests/`` (``auth``, ``accounts``, ``sse``, ``waiting``, ``redis_server``, ``s3_server``, ``fuzz_support``).
"""

from __future__ import annotations

import pytest

pytest_plugins = [
    "tests.fixtures.redis_db",
    "tests.fixtures.databases",
    "tests.fixtures.settings",
    "tests.fixtures.launcher",
    "tests.fixtures.s3",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # End-to-end tests run last: the quick in-process tests fail fast first.
    items.sort(key=lambda item: 1 if item.get_closest_marker("e2e") else 0)
