"""Logging (docs/api.md §11): console and file get the same line, each record formatted once, and the
log file rotates at its size limit."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from common import logging_setup
from common.logging_setup import CountingRotatingFileHandler, request_id_var, setup_logging


@pytest.fixture
def restore_root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_console_and_file_get_the_same_line_with_the_request_id(
    fmt: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], restore_root_logging: None
) -> None:
    setup_logging("svc", "INFO", fmt, str(tmp_path))
    token = request_id_var.set("req-42")
    try:
        logging.getLogger("access").info(
            "GET /x 200 1.0ms user=%s", "u1", extra={"fields": {"status": 200, "user_id": "u1"}}
        )
    finally:
        request_id_var.reset(token)
    for handler in logging.getLogger().handlers:
        handler.flush()
    console = capsys.readouterr().err.strip().splitlines()[-1]
    in_file = (tmp_path / "svc.log").read_text().strip().splitlines()[-1]
    assert console == in_file
    if fmt == "json":
        entry = json.loads(in_file)
        assert entry["request_id"] == "req-42" and entry["status"] == 200 and entry["service"] == "svc"
    else:
        assert "[req-42]" in in_file and in_file.endswith("GET /x 200 1.0ms user=u1")


def test_two_formatters_never_share_a_cached_line() -> None:
    record = logging.LogRecord("n", logging.INFO, __file__, 1, "hello %s", ("there",), None)
    record.request_id = "r"
    console = logging_setup.ConsoleFormatter()
    json_formatter = logging_setup.JsonFormatter("svc")
    plain = console.format(record)
    assert plain.endswith("hello there")
    assert json.loads(json_formatter.format(record))["message"] == "hello there"
    assert console.format(record) == plain


@contextlib.contextmanager
def logger_writing_to(handler: logging.Handler) -> Iterator[logging.Logger]:
    """A logger of its own that writes only to ``handler`` (closed afterwards)."""
    logger = logging.getLogger(f"handler-test-{id(handler)}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield logger
    finally:
        logger.removeHandler(handler)
        handler.close()


def test_the_log_file_rotates_at_its_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "svc.log"
    path.write_text("x" * 900 + "\n")  # a file left by an earlier run counts
    handler = CountingRotatingFileHandler(path, maxBytes=1000, backupCount=2, encoding="utf-8")
    handler.setFormatter(logging_setup.ConsoleFormatter())
    with logger_writing_to(handler) as logger:
        for n in range(40):
            logger.info("line %02d %s", n, "y" * 60, extra={"request_id": "-"})
    files = sorted(tmp_path.glob("svc.log*"))
    assert [f.name for f in files] == ["svc.log", "svc.log.1", "svc.log.2"]
    assert all(f.stat().st_size <= 1000 for f in files)
    newest = path.read_text().splitlines()
    assert newest[-1].endswith("line 39 " + "y" * 60)
    assert any("line 38 " in f.read_text() for f in files)


def test_a_message_rewritten_between_handlers_is_formatted_again() -> None:
    record = logging.LogRecord("n", logging.INFO, __file__, 1, "token=%s", ("secret",), None)
    record.request_id = "r"
    formatter = logging_setup.ConsoleFormatter()
    assert formatter.format(record).endswith("token=secret")
    record.msg, record.args = "token=%s", ("***",)  # what a redacting filter would do
    assert formatter.format(record).endswith("token=***")


def test_rotation_counts_bytes_of_non_ascii_lines(tmp_path: Path) -> None:
    path = tmp_path / "cjk.log"
    handler = CountingRotatingFileHandler(path, maxBytes=2000, backupCount=3, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(message)s"))
    with logger_writing_to(handler) as logger:
        for n in range(30):
            logger.info("会议纪要%02d%s", n, "周" * 40)
    assert all(f.stat().st_size <= 2000 for f in tmp_path.glob("cjk.log*"))
