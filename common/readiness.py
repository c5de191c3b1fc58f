"""``GET /ready`` for every service, FastAPI and Flask alike: run each dependency's probe,
report ``ok`` or the error, and answer 503 when any failed (docs/api.md §11)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

from pydantic import BaseModel


class ReadyBody(BaseModel):
    """``GET /ready``: each dependency's check, ``ok`` or ``error: ...``."""

    status: Literal["ok", "degraded"]
    checks: dict[str, str]


READY_RESPONSES: dict[int | str, dict[str, Any]] = {
    503: {"model": ReadyBody, "description": "A dependency is down: its check says which"}
}


def _failure(exc: Exception) -> str:
    return f"error: {type(exc).__name__}: {str(exc)[:200]}"


def readiness(checks: dict[str, str]) -> tuple[dict[str, Any], int]:
    """The body and status of ``/ready`` for these checks."""
    ok = all(value == "ok" for value in checks.values())
    return {"status": "ok" if ok else "degraded", "checks": checks}, 200 if ok else 503


async def check_all(probes: Mapping[str, Callable[[], Awaitable[Any]]]) -> tuple[dict[str, Any], int]:
    checks: dict[str, str] = {}
    for name, probe in probes.items():
        try:
            await probe()
            checks[name] = "ok"
        except Exception as exc:  # a readiness probe reports, it never raises
            checks[name] = _failure(exc)
    return readiness(checks)


def check_all_sync(probes: Mapping[str, Callable[[], Any]]) -> tuple[dict[str, Any], int]:
    """The same for a WSGI app (web_service)."""
    checks: dict[str, str] = {}
    for name, probe in probes.items():
        try:
            probe()
            checks[name] = "ok"
        except Exception as exc:  # a readiness probe reports, it never raises
            checks[name] = _failure(exc)
    return readiness(checks)
