"""llm_service's dependency aliases, declared once."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from common.app_state import State, extra_of, settings_of
from common.deps import CurrentUser, DatabaseDep, RedisDep, TokenUser
from common.llm_client import LLMClient
from common.rate_limit import enforce
from common.record_index.vectors import VectorIndex
from llm_service.app.ask import AskService
from llm_service.app.chat import ChatService
from llm_service.app.chat_store import ChatStore
from llm_service.app.config import LLMSettings
from llm_service.app.indexer import RecordIndexer
from llm_service.app.prompts import PromptStore
from llm_service.app.retrieval import Retrieval

RATE_WINDOW_SECONDS = 60


class LLMState(State):
    """llm_service's lifespan State: the common keys plus the provider client, the prompts, the
    per-process cache of owners' vectors and the record indexer (None when switched off)."""

    llm: LLMClient
    prompts: PromptStore
    vectors: VectorIndex
    indexer: RecordIndexer | None


async def llm_settings(request: Request) -> LLMSettings:
    return settings_of(request)  # type: ignore[return-value]


async def llm_client(request: Request) -> LLMClient:
    return extra_of(request, "llm")


async def prompt_store(request: Request) -> PromptStore:
    return extra_of(request, "prompts")


LLMSettingsDep = Annotated[LLMSettings, Depends(llm_settings)]
LLMDep = Annotated[LLMClient, Depends(llm_client)]
PromptsDep = Annotated[PromptStore, Depends(prompt_store)]


async def chat_store(redis: RedisDep, settings: LLMSettingsDep) -> ChatStore:
    return ChatStore(
        redis,
        settings.chat_ttl_seconds,
        max_sessions=settings.chat_max_sessions_per_user,
        max_messages=settings.chat_max_messages_per_session,
    )


ChatStoreDep = Annotated[ChatStore, Depends(chat_store)]


async def rate_limited_user(user: CurrentUser, redis: RedisDep, settings: LLMSettingsDep) -> TokenUser:
    """The caller, counted against the per-user limit of calls that reach the provider (429 beyond)."""
    await enforce(
        redis, f"rl:llm:{user.id}", settings.llm_rate_limit_per_minute, RATE_WINDOW_SECONDS, "LLM calls per user"
    )
    return user


LLMUser = Annotated[TokenUser, Depends(rate_limited_user)]


async def search_limited_user(user: CurrentUser, redis: RedisDep, settings: LLMSettingsDep) -> TokenUser:
    """The caller, counted against the (higher) per-user limit of query embeddings (429 beyond)."""
    await enforce(
        redis,
        f"rl:index:{user.id}",
        settings.index_search_rate_limit_per_minute,
        RATE_WINDOW_SECONDS,
        "searches of the record index per user",
    )
    return user


SearchUser = Annotated[TokenUser, Depends(search_limited_user)]


async def retrieval(request: Request, llm: LLMDep, db: DatabaseDep, settings: LLMSettingsDep) -> Retrieval:
    return Retrieval(db, llm, settings, extra_of(request, "vectors"))


RetrievalDep = Annotated[Retrieval, Depends(retrieval)]


async def ask_service(retrieval: RetrievalDep, llm: LLMDep, db: DatabaseDep, settings: LLMSettingsDep) -> AskService:
    return AskService(retrieval, llm, db, settings.ask_max_source_chars)


AskServiceDep = Annotated[AskService, Depends(ask_service)]


async def chat_service(
    store: ChatStoreDep,
    llm: LLMDep,
    db: DatabaseDep,
    prompts: PromptsDep,
    settings: LLMSettingsDep,
    retrieval: RetrievalDep,
) -> ChatService:
    return ChatService(store, llm, db, prompts, settings, retrieval)


ChatServiceDep = Annotated[ChatService, Depends(chat_service)]
