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
    return openai.OpenAI(base_url=base_url, api_key="k", max_retries=0, **kw)


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


# A prompt of the shape llm_service sends: the instructions mention a "title", so only the
# Sources branch's precedence keeps the fake from answering with the title task.
SOURCES_INSTRUCTIONS = "Answer only from the sources; each starts with [n] and its record title. Cite them as [n]."
RECORDS = [
    ("Garden", "Planted tomatoes in the garden.\n  They grow   fast."),
    ("Coffee", "Bought coffee beans at the corner roaster. Twelve euros a bag."),
    ("Car", "The car needs new tyres before winter."),
]
NO_ANSWER = "I could not find anything about this in your records."


def sources_prompt(question: str, records: list[tuple[str, str]]) -> list[dict[str, str]]:
    blocks = "\n".join(f"[{n}] {title}\n{text}" for n, (title, text) in enumerate(records, start=1))
    return [
        {"role": "system", "content": f"{SOURCES_INSTRUCTIONS}\nSources:\n{blocks}"},
        {"role": "user", "content": "an earlier question about tomatoes"},
        {"role": "assistant", "content": "an earlier answer"},
        {"role": "user", "content": question},
    ]


def answer(fake_llm_url: str, messages: list[dict[str, str]]) -> str:
    with sdk(fake_llm_url) as client:
        return client.chat.completions.create(model="m", messages=messages).choices[0].message.content or ""


def test_sources_answer_cites_the_best_matching_source(fake_llm_url: str) -> None:
    reply = answer(fake_llm_url, sources_prompt("Where did I buy my coffee beans?", RECORDS))
    assert reply == "From your records: Bought coffee beans at the corner roaster. [2]"


def test_second_relevant_source_is_cited_as_see_also(fake_llm_url: str) -> None:
    reply = answer(fake_llm_url, sources_prompt("Do the tomatoes in the garden need coffee?", RECORDS))
    assert reply == "From your records: Planted tomatoes in the garden. [1] See also [2]."


def test_no_relevant_source_gives_the_no_answer_sentence(fake_llm_url: str) -> None:
    # Only stopwords ("what", "is", "the", "in", "my") are shared with the records.
    reply = answer(fake_llm_url, sources_prompt("What is the weather like in my city?", RECORDS))
    assert reply == NO_ANSWER
    assert "[" not in reply


def test_streamed_sources_answer_matches_the_plain_one(fake_llm_url: str) -> None:
    messages = sources_prompt("Do the tomatoes in the garden need coffee?", RECORDS)
    with sdk(fake_llm_url) as client:
        plain = client.chat.completions.create(model="m", messages=messages)
        chunks = list(
            client.chat.completions.create(
                model="m",
                messages=messages,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert (
        streamed
        == plain.choices[0].message.content
        == "From your records: Planted tomatoes in the garden. [1] See also [2]."
    )
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == plain.usage.completion_tokens


def test_chinese_question_cites_the_chinese_source(fake_llm_url: str) -> None:
    records = [
        ("周末计划", "周六去爬山，晚上看电影。"),
        ("购物清单", "咖啡豆在街角的烘焙店买，每袋六十元。之后再买牛奶。"),
        ("读书", "今天读完了一本小说。"),
    ]
    assert answer(fake_llm_url, sources_prompt("咖啡豆在哪里买", records)) == (
        "From your records: 咖啡豆在街角的烘焙店买，每袋六十元。 [2]"
    )
    # Shared function characters (我, 的, 在, 哪里) alone do not make a source relevant.
    assert answer(fake_llm_url, sources_prompt("我的护照在哪里", records)) == NO_ANSWER


def test_prompt_without_sources_keeps_the_canned_answer(fake_llm_url: str) -> None:
    assert (
        answer(
            fake_llm_url, [{"role": "system", "content": "Suggest tags"}, {"role": "user", "content": "cats cats dogs"}]
        )
        == "cats, dogs"
    )
    # A "Sources:" line with no [n] block is not a grounded prompt: the title task still answers.
    title_prompt = [
        {"role": "system", "content": "Suggest a title\nSources:\n"},
        {"role": "user", "content": "a trip to the sea"},
    ]
    assert answer(fake_llm_url, title_prompt) == '"A trip to the sea"'
    chat = answer(fake_llm_url, [{"role": "user", "content": "hello [1] there"}])
    assert (
        chat
        == "This is a canned reply from the development upstream. You said: hello [1] there. (1 messages received.)"
    )
    with sdk(fake_llm_url) as client, pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="m", messages=sources_prompt("coffee [[fail:500]]", RECORDS))
