"""A small real upstream for the forwarding tests, run as its own process:
``python -m mobile_service.tests.forward_upstream --port N``.

- ``/api/v1/images/upload``: counts the body bytes as they arrive and answers their count and sha256;
  ``GET /control/received`` tells how many bytes the current upload has delivered so far, and
  ``GET /control/abandoned`` how many uploads ended in a disconnect before their last byte.
- ``/api/v1/chat/stream``: SSE; sends event 0, then each next event only after
  ``POST /control/next`` (so a test can prove events arrive one by one, never buffered).
- ``/api/v1/text/slow``: answers after ``?seconds=`` (default 5).
- ``/api/v1/text/{summarize,tags,title,polish}``: canned results in llm_service's contract shape
  (401 without a bearer token), so mobile_service's AI actions can be tested end to end.
- ``/api/v1/chat/endless``: SSE that never ends on its own; when its client goes away it counts
  that in ``GET /control/disconnects`` (so a test can prove the proxy closed its connection).
- ``/api/v1/chat/ticks?count=&every=``: SSE, ``count`` events ``every`` seconds apart.
- ``/api/v1/images/slow`` and ``/api/v1/usage``: a slow answer on a short-timeout route; a usage stub.
- ``/api/v1/text/summarize`` with ``[[fail:429]]`` in the text: 429 with ``Retry-After: 7``.
- ``/api/v1/models/echo``: echoes method, path, query, headers and body size; answers with
  hop-by-hop and repeated headers of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
from typing import Any

import uvicorn

STATE: dict[str, Any] = {"received": 0, "next": None, "disconnects": 0, "abandoned_uploads": 0}
TEXT_RESULTS: dict[str, Any] = {
    "/api/v1/text/summarize": "A short summary.",
    "/api/v1/text/tags": ["Meeting", "budget", "meeting"],
    "/api/v1/text/title": "Budget meeting\nsecond line",
    "/api/v1/text/polish": "",
}


async def _json(send: Any, status: int, payload: Any, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), *(headers or [])],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _read_all(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _sse_start(send: Any) -> None:
    headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})


async def _endless(receive: Any, send: Any) -> None:
    """Send an event every 50 ms until the client goes away, then count the disconnect."""

    async def events() -> None:
        index = 0
        while True:
            event = f"event: delta\ndata: {json.dumps({'index': index})}\n\n".encode()
            await send({"type": "http.response.body", "body": event, "more_body": True})
            index += 1
            await asyncio.sleep(0.05)

    await _read_all(receive)
    await _sse_start(send)
    sender = asyncio.create_task(events())
    while (await receive())["type"] != "http.disconnect":
        pass
    sender.cancel()
    STATE["disconnects"] += 1


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                STATE["next"] = asyncio.Event()
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    if path == "/health":
        await _json(send, 200, {"status": "ok"})
    elif path == "/control/received":
        await _json(send, 200, {"received": STATE["received"]})
    elif path == "/control/abandoned":
        await _json(send, 200, {"abandoned": STATE["abandoned_uploads"]})
    elif path == "/control/next":
        STATE["next"].set()
        await _json(send, 200, {"ok": True})
    elif path == "/api/v1/images/upload":
        STATE["received"] = 0
        digest = hashlib.sha256()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                STATE["abandoned_uploads"] += 1
                return
            chunk = message.get("body", b"")
            STATE["received"] += len(chunk)
            digest.update(chunk)
            if not message.get("more_body"):
                break
        await _json(send, 201, {"size": STATE["received"], "sha256": digest.hexdigest()})
    elif path == "/api/v1/chat/stream":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")],
            }
        )
        for index in range(3):
            event = f"event: delta\ndata: {json.dumps({'index': index})}\n\n".encode()
            await send({"type": "http.response.body", "body": event, "more_body": True})
            if index < 2:
                await STATE["next"].wait()
                STATE["next"].clear()
        await send({"type": "http.response.body", "body": b"event: done\ndata: {}\n\n"})
    elif path == "/control/disconnects":
        await _json(send, 200, {"disconnects": STATE["disconnects"]})
    elif path == "/api/v1/usage":
        await _json(send, 200, {"usage": "stub"})
    elif path == "/api/v1/chat/endless":
        await _endless(receive, send)
    elif path == "/api/v1/chat/ticks":
        query = dict(part.split("=", 1) for part in scope["query_string"].decode().split("&") if "=" in part)
        await _sse_start(send)
        for index in range(int(query.get("count", "3"))):
            await asyncio.sleep(float(query.get("every", "0.1")))
            event = f"event: delta\ndata: {json.dumps({'index': index})}\n\n".encode()
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"event: done\ndata: {}\n\n"})
    elif path in ("/api/v1/text/slow", "/api/v1/images/slow"):
        query = dict(part.split("=", 1) for part in scope["query_string"].decode().split("&") if "=" in part)
        await asyncio.sleep(float(query.get("seconds", "5")))
        await _json(send, 200, {"result": "late"})
    elif path in TEXT_RESULTS:
        body = json.loads(await _read_all(receive) or b"{}")
        authorization = dict(scope["headers"]).get(b"authorization", b"")
        if not authorization.startswith(b"Bearer "):
            await _json(send, 401, {"detail": "Not authenticated", "code": "not_authenticated", "request_id": "-"})
            return
        if "[[fail:429]]" in body.get("text", ""):
            error = {"detail": "Rate limit exceeded", "code": "rate_limited", "request_id": "-"}
            await _json(send, 429, error, [(b"retry-after", b"7")])
            return
        result = TEXT_RESULTS[path]
        if path.endswith("/polish"):
            result = body["text"].upper()
        await _json(send, 200, {"result": result})
    elif path == "/api/v1/models/echo":
        body = await _read_all(receive)
        headers: dict[str, list[str]] = {}
        for key, value in scope["headers"]:
            headers.setdefault(key.decode("latin-1"), []).append(value.decode("latin-1"))
        payload = {
            "method": scope["method"],
            "path": scope["path"],
            "query": scope["query_string"].decode(),
            "headers": headers,
            "body_size": len(body),
        }
        extra = [
            (b"connection", b"x-upstream-hop"),
            (b"x-upstream-hop", b"1"),
            (b"keep-alive", b"timeout=5"),
            (b"set-cookie", b"a=1; Path=/"),
            (b"set-cookie", b"b=2; Path=/"),
            (b"x-upstream", b"echo"),
        ]
        await _json(send, 200, payload, extra)
    else:
        await _json(send, 404, {"detail": "Not Found"})


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
