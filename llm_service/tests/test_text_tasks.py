"""Text tasks: the shapes mobile_service relies on, prompt files re-read when changed."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from common.errors import ServiceUnavailable
from llm_service.app.config import PROMPTS_DIR
from llm_service.app.prompts import PromptStore
from llm_service.app.text_tasks import parse_tags, parse_title

NOTE = "Gardening diary: the tomatoes need water, the tomatoes need sun, basil grows next to the tomatoes."


def run(client: TestClient, headers: dict[str, str], task: str, text: str = NOTE, **extra: Any) -> Any:
    return client.post(f"/api/v1/text/{task}", json={"text": text, **extra}, headers=headers)


def test_each_task_answers_in_its_shape(client: TestClient, auth_headers: Callable[..., dict[str, str]]) -> None:
    me = auth_headers()
    tags = run(client, me, "tags").json()["result"]
    assert isinstance(tags, list) and tags[0] == "tomatoes"
    assert all(t == t.strip().lower() and "#" not in t for t in tags) and len(set(tags)) == len(tags)

    title = run(client, me, "title").json()["result"]
    assert isinstance(title, str) and "\n" not in title and title.startswith("Gardening diary")
    assert not title.startswith('"')

    summary = run(client, me, "summarize", language="English").json()["result"]
    assert isinstance(summary, str) and "tomatoes" in summary and not summary.lower().startswith("summary:")

    polished = run(client, me, "polish", text="the  meeting is on monday").json()["result"]
    assert polished == "The meeting is on monday."


def test_unknown_task_and_bad_bodies(client: TestClient, auth_headers: Callable[..., dict[str, str]]) -> None:
    me = auth_headers()
    unknown = run(client, me, "translate")
    assert unknown.status_code == 404 and unknown.json()["code"] == "not_found"
    assert run(client, me, "tags", text="").status_code == 422
    assert client.post("/api/v1/text/tags", json={"text": NOTE}).status_code == 401
    assert run(client, me, "tags", text="x" * 100_001).status_code == 413
    failed = run(client, me, "summarize", text="note [[fail:500]]")
    assert failed.status_code == 502 and failed.json()["code"] == "upstream_error"


def test_prompt_file_is_reread_when_it_changes(
    llm_app_factory: Callable[..., Any], auth_headers: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    prompts = tmp_path / "prompts"
    shutil.copytree(PROMPTS_DIR, prompts)
    me = auth_headers()
    with TestClient(llm_app_factory(prompts_dir=str(prompts))) as c:
        before = run(c, me, "summarize").json()["result"]
        assert "tomatoes" in before
        time.sleep(0.01)
        # The fake upstream answers by what the system prompt asks: now a title instead of a summary.
        (prompts / "summarize.txt").write_text("Write a title for the note, one line.")
        # The file is checked at most once a second (PROMPTS_CHECK_SECONDS): the edit shows within that.
        deadline = time.monotonic() + 5
        after = run(c, me, "summarize").json()["result"]
        while after == before and time.monotonic() < deadline:
            time.sleep(0.2)
            after = run(c, me, "summarize").json()["result"]
        assert after != before and after.startswith('"Gardening diary')


def test_prompt_file_is_checked_at_most_once_per_interval(tmp_path: Path) -> None:
    now = [100.0]
    (tmp_path / "tags.txt").write_text("first version\n")
    store = PromptStore(tmp_path, check_seconds=1.0, clock=lambda: now[0])
    assert store.get("tags") == "first version"
    (tmp_path / "tags.txt").write_text("second version, longer")
    now[0] += 0.5
    assert store.get("tags") == "first version"  # within the interval: the cached text, no disk access
    (tmp_path / "tags.txt").unlink()
    assert store.get("tags") == "first version"
    now[0] += 1.0
    with pytest.raises(ServiceUnavailable):  # checked again: the file is gone
        store.get("tags")
    (tmp_path / "tags.txt").write_text("third version")
    assert store.get("tags") == "third version"
    now[0] += 5
    assert store.get("tags") == "third version"  # unchanged file: stat-ed, not re-read


@pytest.mark.parametrize(
    ("answer", "tags"),
    [
        ("Tags: #Work, Meeting , work; Q3 plans\n- Budget.", ["work", "meeting", "q3 plans", "budget"]),
        ("1. travel\n2. japan\n3. food", ["travel", "japan", "food"]),
        ("旅行，日本、美食", ["旅行", "日本", "美食"]),
        (", , ", []),
    ],
)
def test_tags_are_normalised(answer: str, tags: list[str]) -> None:
    assert parse_tags(answer, max_tags=10, max_chars=32) == tags


def test_tags_are_bounded() -> None:
    answer = ", ".join(f"tag{i}" for i in range(30)) + ", " + "y" * 50
    parsed = parse_tags(answer, max_tags=20, max_chars=32)
    assert len(parsed) == 20 and all(len(t) <= 32 for t in parsed)


@pytest.mark.parametrize(
    ("answer", "title"),
    [
        ('"A Day at the Beach."', "A Day at the Beach"),
        ("Title: Weekly review\nSecond line", "Weekly review"),
        ("\n\n# Heading title\n", "Heading title"),
        ("「京都之旅」", "京都之旅"),
    ],
)
def test_title_is_one_clean_line(answer: str, title: str) -> None:
    assert parse_title(answer, max_chars=200) == title
