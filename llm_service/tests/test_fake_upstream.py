"""The project's OpenAI-protocol upstream (devtools/fake_llm.py) and the shared client's images
call, through the real SDK over HTTP."""

from __future__ import annotations

import asyncio
import base64
import io

import httpx
import openai
import pytest
from PIL import Image

from common.errors import RateLimited, UpstreamError, UpstreamTimeout
from common.llm_client import LLMClient


def sdk(base_url: str, **kw: object) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key="k", max_retries=0, **kw)  # type: ignore[arg-type]


def test_health_models_and_key_required(fake_llm_url: str) -> None:
    assert httpx.get(fake_llm_url.removesuffix("/v1") + "/health").json()["status"] == "ok"
    assert httpx.get(f"{fake_llm_url}/models").status_code == 401
    with sdk(fake_llm_url) as client:
        assert [m.id for m in client.models.list().data] == ["canned-chat", "canned-image", "canned-embedding"]


def test_answers_are_deterministic_and_streams_carry_usage(fake_llm_url: str) -> None:
    messages = [{"role": "system", "content": "Suggest tags"}, {"role": "user", "content": "cats cats dogs birds"}]
    with sdk(fake_llm_url) as client:
        first = client.chat.completions.create(model="m", messages=messages)
        again = client.chat.completions.create(model="m", messages=messages)
        assert first.choices[0].message.content == again.choices[0].message.content == "cats, dogs, birds"
        chunks = list(
            client.chat.completions.create(
                model="m", messages=messages, stream=True, stream_options={"include_usage": True}
            )
        )
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "cats, dogs, birds"
        assert chunks[-1].choices == [] and chunks[-1].usage is not None
        with pytest.raises(openai.APIConnectionError):
            list(
                client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": "a b c d e [[cut]]"}], stream=True
                )
            )


def test_images_are_real_pngs_of_the_requested_size(fake_llm_url: str) -> None:
    with sdk(fake_llm_url) as client:
        result = client.images.generate(prompt="a red fox [[fail-result:1]]", n=2, size="64x48")
        images = [Image.open(io.BytesIO(base64.b64decode(item.b64_json or ""))) for item in result.data or []]
        assert [(i.format, i.size) for i in images] == [("PNG", (64, 48))] * 2
        client.images.generate(prompt="a red fox [[fail-result:1]]", extra_headers={"X-Result-Index": "0"})
        with pytest.raises(openai.InternalServerError):
            client.images.generate(prompt="a red fox [[fail-result:1]]", extra_headers={"X-Result-Index": "1"})
        with pytest.raises(openai.BadRequestError):
            client.images.generate(prompt="too big", size="9000x9000")


def test_shared_client_maps_provider_failures(fake_llm_url: str) -> None:
    async def scenario() -> None:
        llm = LLMClient(base_url=fake_llm_url, api_key="k", timeout=1.0, max_retries=0)
        try:
            [png] = await llm.generate_images("a boat", size="32x32")
            assert Image.open(io.BytesIO(base64.b64decode(png))).size == (32, 32)
            for prompt, error in (
                ("[[fail:500]]", UpstreamError),
                ("[[fail:429]]", RateLimited),
                ("[[slow:3]]", UpstreamTimeout),
            ):
                with pytest.raises(error):
                    await llm.generate_images(prompt)
            with pytest.raises(RateLimited) as limited:
                await llm.chat([{"role": "user", "content": "[[fail:429]]"}])
            assert limited.value.headers["Retry-After"] == "1"
        finally:
            await llm.aclose()

    asyncio.run(scenario())
