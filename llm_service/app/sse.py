"""Server-sent events: the wire format and a response that notices a client leaving.

Starlette's ``StreamingResponse`` only finds out that the client left when its next write fails,
and then leaves the generator suspended. ``EventStreamResponse`` listens for ``http.disconnect``
while the generator waits for the provider, cancels it at once and closes it, so the generator's
cleanup (close the provider stream, store the partial reply) runs promptly and exactly once.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from common.llm_client import ChatStream, StreamPiece

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse_event(event: str, data: Any) -> str:
    """One SSE event with a JSON payload."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def sse_data(data: Any) -> str:
    """One unnamed SSE event (the OpenAI streaming format); ``data`` may be the literal ``[DONE]``."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {payload}\n\n"


async def relay_deltas(stream: ChatStream, parts: list[str]) -> AsyncGenerator[str | StreamPiece, None]:
    """A provider stream as SSE ``delta`` events (their text collected in ``parts``), then its
    last piece (model, usage) as it is."""
    async for piece in stream.pieces():
        if piece.delta:
            parts.append(piece.delta)
            yield sse_event("delta", {"content": piece.delta})
        else:
            yield piece


class EventStreamResponse(Response):
    """``text/event-stream`` from an async generator of already-formatted events, flushed one by one."""

    media_type = "text/event-stream"

    def __init__(self, events: AsyncGenerator[str, None], headers: dict[str, str] | None = None) -> None:
        self.events = events
        self.status_code = 200
        self.background = None
        self.init_headers({**SSE_HEADERS, **(headers or {})})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            async with anyio.create_task_group() as group:

                async def cancel_on_disconnect() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    group.cancel_scope.cancel()

                group.start_soon(cancel_on_disconnect)
                try:
                    async for event in self.events:
                        await send({"type": "http.response.body", "body": event.encode(), "more_body": True})
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                except OSError:
                    pass  # the client went away between two events
                finally:
                    group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self.events.aclose()
