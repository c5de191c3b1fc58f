"""common.redaction.redact_url: a URL fit for logs and the console, whatever form its password takes."""

from __future__ import annotations

import pytest

from common.redaction import redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:hunter2@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("rediss://default:hunter2@cache:6380/1", "rediss://default:***@cache:6380/1"),
        ("redis://alice@cache:6379/0", "redis://alice@cache:6379/0"),
        ("redis://u:pa@ss@cache/0", "redis://u:***@cache/0"),
        ("redis://cache:6379/0?password=hunter2&db=2", "redis://cache:6379/0?password=***&db=2"),
    ],
)
def test_the_password_is_hidden(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert "hunter2" not in redact_url(url)
