"""Pieces shared by both app factories: request ids, the access-log line and Prometheus metrics."""

from __future__ import annotations

import logging
import re
import uuid

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

REQUEST_ID_HEADER = "X-Request-ID"
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

access_logger = logging.getLogger("access")

HTTP_REQUESTS = Counter("http_requests_total", "HTTP requests handled", ["service", "method", "route", "status"])
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency",
    ["service", "method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST


def accept_or_make_request_id(incoming: str | None) -> str:
    """Keep a client's request id when it is sane, otherwise make one."""
    if incoming and _SAFE_REQUEST_ID.match(incoming):
        return incoming
    return uuid.uuid4().hex


def record_request(service: str, method: str, route: str, path: str, status: int, seconds: float, user_id: str) -> None:
    HTTP_REQUESTS.labels(service, method, route, str(status)).inc()
    HTTP_LATENCY.labels(service, method, route).observe(seconds)
    access_logger.info(
        "%s %s %s %.1fms user=%s",
        method,
        path,
        status,
        seconds * 1000,
        user_id,
        extra={
            "fields": {
                "method": method,
                "path": path,
                "status": status,
                "latency_ms": round(seconds * 1000, 2),
                "user_id": user_id,
            }
        },
    )


def metrics_payload() -> bytes:
    return generate_latest()
