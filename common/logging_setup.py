"""Logging for every service (docs/api.md §11): console lines in development, JSON lines in production,
and a rotating file under ``logs/``. Every line carries the current request id."""

from __future__ import annotations

import contextvars
import json
import logging
import logging.handlers
import sys
from datetime import UTC, datetime
from pathlib import Path

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
user_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("user_id", default="-")


CONSOLE_FORMAT = "%(asctime)s %(levelname)-5s %(name)s [%(request_id)s] %(message)s"


class RequestContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


class FormatOnce(logging.Formatter):
    """A formatter shared by several handlers formats each record once: the console and the log
    file (and the file's rotation check) reuse the text. The access log writes a line per
    request, so this is on every request's path."""

    def format(self, record: logging.LogRecord) -> str:
        cached = record.__dict__.get("_formatted")
        # Reused only by the same formatter and while the message is the same objects (a filter
        # of one handler that rewrites the message gets a fresh line).
        if cached is not None and cached[0] is self and cached[1] is record.msg and cached[2] is record.args:
            return cached[3]
        text = self.format_record(record)
        record.__dict__["_formatted"] = (self, record.msg, record.args, text)
        return text

    def format_record(self, record: logging.LogRecord) -> str:
        return super().format(record)


class ConsoleFormatter(FormatOnce):
    def __init__(self) -> None:
        super().__init__(CONSOLE_FORMAT, "%H:%M:%S")


class JsonFormatter(FormatOnce):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format_record(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            entry.update(extra)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


LOG_FILE_MAX_BYTES = 10_000_000


class CountingRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """``RotatingFileHandler`` that keeps count of what it wrote instead of asking the file
    (``tell()``) and formatting the record a second time before every line, as the standard
    rotation check does."""

    def __init__(self, filename: Path, **kwargs: object) -> None:
        super().__init__(filename, **kwargs)  # type: ignore[arg-type]
        self._written = Path(filename).stat().st_size if Path(filename).exists() else 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            line = (len(text) if text.isascii() else len(text.encode(self.encoding or "utf-8", "replace"))) + 1
            if self.maxBytes > 0 and self._written and self._written + line >= self.maxBytes:
                self.doRollover()
            logging.FileHandler.emit(self, record)
            self._written += line
        except Exception:
            self.handleError(record)

    def doRollover(self) -> None:
        super().doRollover()
        self._written = 0


def setup_logging(service: str, level: str = "INFO", fmt: str = "console", log_dir: str | None = None) -> None:
    """Configure the root logger once per process."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(level.upper())
    formatter: logging.Formatter = JsonFormatter(service) if fmt == "json" else ConsoleFormatter()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_dir:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        handlers.append(
            CountingRotatingFileHandler(
                Path(log_dir) / f"{service}.log", maxBytes=LOG_FILE_MAX_BYTES, backupCount=5, encoding="utf-8"
            )
        )
    context_filter = RequestContextFilter()
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(context_filter)
        root.addHandler(handler)
    # uvicorn's own access log is replaced by ours (one line per request with user id and latency).
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
