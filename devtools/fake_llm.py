"""The project's own OpenAI-protocol upstream: canned, deterministic answers and error injection.

Run: ``python -m devtools.fake_llm --host 127.0.0.1 --port 9100``; point a client at ``/v1``.

Endpoints (any non-empty bearer key is accepted):

- ``GET /health`` → ``{"status": "ok"}``
- ``GET /v1/models``
- ``POST /v1/chat/completions``, with and without ``stream`` (SSE chunks, ``data: [DONE]``, usage in a
  final chunk when ``stream_options.include_usage`` is set; non-stream answers always carry usage)
- ``POST /v1/images/generations`` → ``b64_json`` PNGs of the requested ``size``
- ``POST /v1/embeddings`` → deterministic vectors (``EMBEDDING_DIMENSIONS``, or ``dimensions``) built
  from the text's words and CJK character bigrams, hashed and L2-normalised: texts sharing words
  are near, so retrieval can be tested offline

Answers are derived from the input, so parsing can be tested: a system prompt that asks for tags
gets a comma-separated list of the text's most frequent words, one that asks for a title gets one
quoted line, ``summar…`` gets a short summary, ``polish``/``rewrite`` gets the tidied text; any other
chat gets a canned reply naming what it received. ``[[echo]]`` in the last user message answers
with the JSON list of messages the model was sent (to test the context a caller builds).

Grounded answers: a system message with a ``Sources:`` line followed by ``[n] title`` blocks (each
block's text on the lines below it) takes precedence over the task: the sources are ranked by the
features they share with the last user message (the embeddings' features, stopwords left out) and
the answer is ``From your records: <best source's first sentence> [n]``, plus `` See also [m].`` when
a second source shares a feature; with none, exactly ``I could not find anything about this in your
records.``

Error injection, by markers in the last user message (chat) or the prompt (images):

- ``[[fail:500]]`` / ``[[fail:429]]`` (any status; embeddings: in any input): that status with an OpenAI error body;
  429 carries ``Retry-After: 1``
- ``[[slow:SECONDS]]``: wait that long before answering
- ``[[cut]]`` (streams): a few chunks, then the connection closes without ``[DONE]``
- ``[[drip:SECONDS]]`` (streams): wait that long before each chunk (to test a client leaving mid-answer)
- ``[[flaky:N]]`` (chat, embeddings): the first N calls with exactly this text answer 503, later ones
  succeed (an outage that ends)
- ``[[fail-result:I]]`` (images): fail with 500 only requests whose ``X-Result-Index`` header is ``I``
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import io
import json
import re
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from PIL import Image, ImageDraw
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

MODELS = ("canned-chat", "canned-image", "canned-embedding")
EMBEDDING_DIMENSIONS = 256
CJK_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]+")
DEFAULT_IMAGE_SIZE = (1024, 1024)
MAX_IMAGE_SIDE = 2048
MAX_IMAGES = 10
CUT_AFTER_CHUNKS = 3
RETRY_AFTER_SECONDS = 1

FAIL_RE = re.compile(r"\[\[fail:(\d{3})\]\]")
SLOW_RE = re.compile(r"\[\[slow:(\d+(?:\.\d+)?)\]\]")
DRIP_RE = re.compile(r"\[\[drip:(\d+(?:\.\d+)?)\]\]")
FAIL_RESULT_RE = re.compile(r"\[\[fail-result:(\d+)\]\]")
FLAKY_RE = re.compile(r"\[\[flaky:(\d+)\]\]")
# Calls seen per text carrying a ``[[flaky:N]]`` marker (this process's memory).
_flaky_calls: Counter[str] = Counter()
MARKER_RE = re.compile(r"\[\[[a-z-]+(?::[^\]]*)?\]\]")
WORD_RE = re.compile(r"[^\W\d_][\w'-]*", re.UNICODE)
STOPWORDS = frozenset(
    [
        "the",
        "a",
        "an",
        "and",
        "or",
        "but",
        "of",
        "to",
        "in",
        "on",
        "at",
        "for",
        "with",
        "from",
        "by",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "it",
        "this",
        "that",
        "these",
        "those",
        "as",
        "i",
        "you",
        "he",
        "she",
        "we",
        "they",
        "my",
        "your",
        "our",
        "their",
        "me",
        "us",
        "them",
        "not",
        "no",
        "so",
        "if",
        "then",
        "than",
        "too",
        "very",
        "can",
        "will",
        "just",
        "have",
        "has",
        "had",
        "do",
        "does",
        "did",
        "about",
        "into",
        "over",
        "after",
        "before",
        "again",
        "more",
        "most",
        "some",
        "such",
        "only",
        "own",
        "same",
        "also",
    ]
)
# Grounded answers leave these out of the overlap: question words on top of the stopwords, and CJK
# function characters (a feature made only of them, e.g. 哪里 or 我的, matches nothing).
QUESTION_STOPWORDS = STOPWORDS | {"what", "which", "who", "whom", "whose", "how", "when", "where", "why", "am"}
CJK_STOP_CHARS = frozenset("的了在是我你他她它们吗呢吧啊呀哪里儿什么怎和与或有这那个一不也就都")
SOURCES_HEADER = "Sources:"
SOURCE_START_RE = re.compile(r"\[(\d+)\](?:[ \t](.*))?")
SENTENCE_RE = re.compile(r".*?(?:[.!?](?=\s|$)|[。！？])")
SNIPPET_CHARS = 200
NO_ANSWER = "I could not find anything about this in your records."


# ---------------------------------------------------------------------------- helpers


def openai_error(
    status: int, message: str, err_type: str = "api_error", headers: dict[str, str] | None = None
) -> Response:
    body = {"error": {"message": message, "type": err_type, "param": None, "code": str(status)}}
    return JSONResponse(body, status_code=status, headers=headers)


def authorised(request: Request) -> bool:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(key.strip())


def unauthorised() -> Response:
    return openai_error(401, "Missing bearer API key", "invalid_request_error")


def text_of(content: Any) -> str:
    """A message's text: a plain string or the text parts of a content list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def count_tokens(text: str) -> int:
    """A deterministic stand-in for a tokenizer: about four characters per token."""
    return max(1, len(text) // 4) if text else 0


def flaky_failure(text: str) -> Response | None:
    """``[[flaky:N]]``: the first N calls with this exact text fail with 503, later ones succeed
    (an outage that ends, for retry tests)."""
    match = FLAKY_RE.search(text)
    if not match:
        return None
    key = hashlib.sha256(text.encode()).hexdigest()
    _flaky_calls[key] += 1
    if _flaky_calls[key] > int(match.group(1)):
        return None
    return openai_error(503, f"Injected outage (call {_flaky_calls[key]} of {match.group(1)})", "server_error")


def injected_failure(text: str) -> Response | None:
    match = FAIL_RE.search(text)
    if not match:
        return flaky_failure(text)
    status = int(match.group(1))
    if status == 429:
        return openai_error(
            429, "Rate limit reached (injected)", "rate_limit_exceeded", {"Retry-After": str(RETRY_AFTER_SECONDS)}
        )
    return openai_error(
        status, f"Injected failure {status}", "server_error" if status >= 500 else "invalid_request_error"
    )


async def injected_delay(text: str) -> None:
    match = SLOW_RE.search(text)
    if match:
        await asyncio.sleep(float(match.group(1)))


def clean(text: str) -> str:
    return " ".join(MARKER_RE.sub(" ", text).split())


def keywords(text: str, limit: int = 5) -> list[str]:
    words = [w.lower() for w in WORD_RE.findall(clean(text))]
    candidates = [w for w in words if len(w) > 3 and w not in STOPWORDS]
    counts = Counter(candidates)
    first_seen = {w: i for i, w in reversed(list(enumerate(candidates)))}
    return sorted(counts, key=lambda w: (-counts[w], first_seen[w]))[:limit]


# ---------------------------------------------------------------------------- canned answers


def detect_task(instructions: str) -> str:
    lowered = instructions.lower()
    if "tag" in lowered:
        return "tags"
    if "title" in lowered:
        return "title"
    if "summar" in lowered:
        return "summarize"
    if "polish" in lowered or "rewrite" in lowered:
        return "polish"
    return "chat"


def canned_answer(messages: list[dict[str, Any]]) -> str:
    user_texts = [text_of(m.get("content")) for m in messages if m.get("role") == "user"]
    last_user = user_texts[-1] if user_texts else ""
    if "[[echo]]" in last_user:
        return json.dumps([{"role": m.get("role"), "content": text_of(m.get("content"))} for m in messages])
    sources = prompt_sources(messages)
    if sources:
        return grounded_answer(last_user, sources)
    # Only the first system message says what the task is (later ones may carry the user's data).
    instructions = next((text_of(m.get("content")) for m in messages if m.get("role") == "system"), "")
    task = detect_task(instructions) if instructions else "chat"
    text = clean(last_user)
    words = text.split()
    if task == "tags":
        return ", ".join(keywords(text)) or "general"
    if task == "title":
        title = " ".join(words[:6]).rstrip(".,;:!?") or "Untitled"
        return f'"{title[:1].upper()}{title[1:]}"'
    if task == "summarize":
        summary = " ".join(words[:30])
        return f"Summary: {summary}{'…' if len(words) > 30 else ''}" if summary else "Summary: (empty)"
    if task == "polish":
        polished = text[:1].upper() + text[1:]
        return polished if polished.endswith((".", "!", "?")) or not polished else polished + "."
    snippet = " ".join(words[:12])
    return f"This is a canned reply from the development upstream. You said: {snippet}. ({len(messages)} messages received.)"


# ---------------------------------------------------------------------------- grounded answers


@dataclass(frozen=True)
class Source:
    """One ``[n] title`` block of a prompt's ``Sources:`` section."""

    number: int
    title: str
    text: str


def parse_sources(content: str) -> list[Source]:
    """The numbered blocks after the first ``Sources:`` line (a later one may be part of a record's text)."""
    lines = content.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == SOURCES_HEADER), None)
    if start is None:
        return []
    blocks: list[tuple[int, str, list[str]]] = []
    for line in lines[start + 1 :]:
        match = SOURCE_START_RE.fullmatch(line)
        if match:
            blocks.append((int(match.group(1)), (match.group(2) or "").strip(), []))
        elif blocks:
            blocks[-1][2].append(line)
    return [Source(number, title, "\n".join(body)) for number, title, body in blocks]


def prompt_sources(messages: list[dict[str, Any]]) -> list[Source]:
    """The sources of the first system message that has any: only such a prompt asks for a grounded answer."""
    for message in messages:
        if message.get("role") == "system":
            sources = parse_sources(text_of(message.get("content")))
            if sources:
                return sources
    return []


def is_stop_feature(feature: str) -> bool:
    """Stopwords and CJK features made only of function characters say nothing about the topic."""
    return feature in QUESTION_STOPWORDS or all(c in CJK_STOP_CHARS for c in feature)


def topic_features(text: str) -> set[str]:
    """The embeddings' features of a text without the stopwords, so overlap means a shared topic."""
    return {f for f in embedding_features(text) if not is_stop_feature(f)}


def first_sentence(text: str) -> str:
    """A source's first sentence (at most ``SNIPPET_CHARS`` characters), whitespace collapsed, to quote it."""
    collapsed = " ".join(text.split())
    match = SENTENCE_RE.match(collapsed)
    return (match.group(0) if match else collapsed)[:SNIPPET_CHARS]


def grounded_answer(question: str, sources: list[Source]) -> str:
    """Cite the source sharing most features with the question (ties: prompt order), and a runner-up."""
    wanted = topic_features(question)
    scored = [(len(wanted & topic_features(f"{s.title}\n{s.text}")), s) for s in sources]
    relevant = [s for score, s in sorted(scored, key=lambda pair: -pair[0]) if score > 0]
    if not relevant:
        return NO_ANSWER
    best = relevant[0]
    answer = f"From your records: {first_sentence(best.text or best.title)} [{best.number}]"
    return f"{answer} See also [{relevant[1].number}]." if len(relevant) > 1 else answer


def reply_chunks(answer: str) -> list[str]:
    """Split an answer into word-sized deltas, keeping the whitespace so they join back exactly."""
    return re.findall(r"\S+\s*|\s+", answer) or [""]


# ---------------------------------------------------------------------------- chat completions


async def chat_completions(request: Request) -> Response:
    if not authorised(request):
        return unauthorised()
    try:
        body = await request.json()
        messages = body["messages"]
    except Exception:
        messages = None
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        return openai_error(400, "Body must be JSON with a non-empty 'messages' list", "invalid_request_error")
    model = str(body.get("model") or MODELS[0])
    last_user = next((text_of(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
    await injected_delay(last_user)
    failure = injected_failure(last_user)
    if failure is not None:
        return failure
    answer = canned_answer(messages)
    prompt_tokens = sum(count_tokens(text_of(m.get("content"))) for m in messages)
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": count_tokens(answer),
        "total_tokens": prompt_tokens + count_tokens(answer),
    }
    completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())
    if not body.get("stream"):
        return JSONResponse(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": answer},
                        "finish_reason": "stop",
                        "logprobs": None,
                    }
                ],
                "usage": usage,
            }
        )
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    chunks = reply_chunks(answer)
    drip_match = DRIP_RE.search(last_user)
    drip = float(drip_match.group(1)) if drip_match else 0.0
    if "[[cut]]" in last_user:
        return CutStream(completion_id, created, model, chunks[:CUT_AFTER_CHUNKS])

    def chunk(delta: dict[str, Any], finish: str | None = None, with_usage: bool = False) -> str:
        payload: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [] if with_usage else [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }
        if include_usage:
            payload["usage"] = usage if with_usage else None
        return f"data: {json.dumps(payload)}\n\n"

    async def events() -> AsyncIterator[str]:
        yield chunk({"role": "assistant", "content": ""})
        for piece in chunks:
            await asyncio.sleep(drip)
            yield chunk({"content": piece})
        yield chunk({}, finish="stop")
        if include_usage:
            yield chunk({}, with_usage=True)
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


class CutStream:
    """An SSE response that sends a few chunks and then drops the connection (no ``[DONE]``)."""

    def __init__(self, completion_id: str, created: int, model: str, chunks: list[str]) -> None:
        self.payloads = [
            {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
            }
            for piece in chunks
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for payload in self.payloads:
            await send(
                {"type": "http.response.body", "body": f"data: {json.dumps(payload)}\n\n".encode(), "more_body": True}
            )
            await asyncio.sleep(0.01)
        # Returning without the final body message makes the server close the connection mid-stream.


# ---------------------------------------------------------------------------- images


def parse_size(size: Any) -> tuple[int, int] | None:
    if size in (None, "", "auto"):
        return DEFAULT_IMAGE_SIZE
    match = re.fullmatch(r"(\d{1,5})x(\d{1,5})", str(size))
    if not match:
        return None
    width, height = int(match.group(1)), int(match.group(2))
    if not (1 <= width <= MAX_IMAGE_SIDE and 1 <= height <= MAX_IMAGE_SIDE):
        return None
    return width, height


def canned_png(prompt: str, index: int, size: tuple[int, int]) -> bytes:
    """A deterministic PNG: a colour from the prompt's hash, a band and a frame from the index."""
    digest = hashlib.sha256(f"{prompt}\x00{index}".encode()).digest()
    image = Image.new("RGB", size, (digest[0], digest[1], digest[2]))
    draw = ImageDraw.Draw(image)
    width, height = size
    draw.rectangle((0, height // 3, width, 2 * height // 3), fill=(digest[3], digest[4], digest[5]))
    draw.rectangle((0, 0, width - 1, height - 1), outline=(255 - digest[0], 255 - digest[1], 255 - digest[2]))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


async def image_generations(request: Request) -> Response:
    if not authorised(request):
        return unauthorised()
    try:
        body = await request.json()
        prompt = str(body["prompt"])
        n = int(body.get("n") or 1)
    except Exception:
        return openai_error(400, "Body must be JSON with a 'prompt'", "invalid_request_error")
    size = parse_size(body.get("size"))
    if size is None or not 1 <= n <= MAX_IMAGES:
        return openai_error(
            400, f"'size' must be WxH (each side 1-{MAX_IMAGE_SIDE}) and 'n' 1-{MAX_IMAGES}", "invalid_request_error"
        )
    await injected_delay(prompt)
    failure = injected_failure(prompt)
    if failure is not None:
        return failure
    result_index = request.headers.get("x-result-index")
    if result_index is not None and any(m == result_index.strip() for m in FAIL_RESULT_RE.findall(prompt)):
        return openai_error(500, f"Injected failure for result {result_index}", "server_error")
    offset = int(result_index) if result_index and result_index.strip().isdigit() else 0
    images = await asyncio.to_thread(lambda: [canned_png(prompt, offset + i, size) for i in range(n)])
    data = [{"b64_json": base64.b64encode(png).decode(), "revised_prompt": clean(prompt)} for png in images]
    return JSONResponse({"created": int(time.time()), "data": data})


# ---------------------------------------------------------------------------- embeddings


def embedding_features(text: str) -> list[str]:
    """Lower-cased words, and the characters and character bigrams of CJK runs (no spaces there)."""
    cleaned = clean(text).lower()
    features = [w for w in WORD_RE.findall(CJK_RE.sub(" ", cleaned))]
    for run in CJK_RE.findall(cleaned):
        features += list(run) + [run[i : i + 2] for i in range(len(run) - 1)]
    return features


def embed_text(text: str, dimensions: int) -> list[float]:
    """A hashed bag of features, each adding ±1 to one coordinate, then L2-normalised."""
    vector = [0.0] * dimensions
    for feature in embedding_features(text):
        digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
        slot = int.from_bytes(digest[:4], "big") % dimensions
        vector[slot] += 1.0 if digest[4] & 1 else -1.0
    norm = sum(v * v for v in vector) ** 0.5
    return [round(v / norm, 6) for v in vector] if norm else vector


async def embeddings(request: Request) -> Response:
    if not authorised(request):
        return unauthorised()
    body = await request.json()
    raw = body.get("input") if isinstance(body, dict) else None
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        return openai_error(400, "'input' must be a string or a non-empty list of strings", "invalid_request_error")
    joined = "\n".join(texts)
    failure = injected_failure(joined)
    if failure is not None:
        return failure
    await injected_delay(joined)
    dimensions = body.get("dimensions") or EMBEDDING_DIMENSIONS
    if not isinstance(dimensions, int) or not 1 <= dimensions <= 4096:
        return openai_error(400, "'dimensions' must be an integer from 1 to 4096", "invalid_request_error")
    tokens = sum(count_tokens(t) for t in texts)
    data = [{"object": "embedding", "index": i, "embedding": embed_text(t, dimensions)} for i, t in enumerate(texts)]
    return JSONResponse(
        {
            "object": "list",
            "data": data,
            "model": body.get("model") or "canned-embedding",
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


# ---------------------------------------------------------------------------- app


async def health(_request: Request) -> Response:
    return JSONResponse({"status": "ok", "service": "fake_llm"})


async def models(request: Request) -> Response:
    if not authorised(request):
        return unauthorised()
    created = 1_700_000_000
    data = [{"id": m, "object": "model", "created": created, "owned_by": "devtools"} for m in MODELS]
    return JSONResponse({"object": "list", "data": data})


def build_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/health", health),
            Route("/v1/models", models),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/images/generations", image_generations, methods=["POST"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
        ]
    )


app = build_app()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devtools.fake_llm", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    args = parser.parse_args(argv)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
