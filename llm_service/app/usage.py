"""Token usage per user: one row per provider call, totals by day and model (docs/api.md §7)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from common.database import Database
from common.llm_client import Usage
from common.models.usage import LLMUsage
from llm_service.app.schemas import UsageReport, UsageRow, UsageTotals

logger = logging.getLogger(__name__)


async def record_usage(db: Database, owner_id: str, model: str, kind: str, usage: Usage) -> None:
    """Store one call's counts. A failure is logged, never raised: the user already has the answer."""
    now = datetime.now(UTC)
    row = LLMUsage(
        owner_id=owner_id,
        model=model[:128],
        kind=kind[:32],
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
        estimated=usage.estimated,
        day=now.strftime("%Y-%m-%d"),
        created_at=now,
    )
    try:
        async with db.session() as session:
            session.add(row)
            await session.commit()
    except Exception:
        logger.exception("could not record LLM usage for %s (%s)", owner_id, kind)


async def usage_report(db: Database, owner_id: str, days: int) -> UsageReport:
    """The owner's totals per (day, model) over the last ``days`` days, newest day first."""
    since = (datetime.now(UTC) - timedelta(days=days - 1)).strftime("%Y-%m-%d")
    query = (
        select(
            LLMUsage.day,
            LLMUsage.model,
            func.count(LLMUsage.id),
            func.coalesce(func.sum(LLMUsage.prompt_tokens), 0),
            func.coalesce(func.sum(LLMUsage.completion_tokens), 0),
            func.coalesce(func.sum(LLMUsage.total_tokens), 0),
        )
        .where(LLMUsage.owner_id == owner_id, LLMUsage.day >= since)
        .group_by(LLMUsage.day, LLMUsage.model)
        .order_by(LLMUsage.day.desc(), LLMUsage.model)
    )
    async with db.session() as session:
        rows = (await session.execute(query)).all()
    by_day = [
        UsageRow(
            day=day,
            model=model,
            requests=int(requests),
            prompt_tokens=int(prompt),
            completion_tokens=int(completion),
            total_tokens=int(total),
        )
        for day, model, requests, prompt, completion, total in rows
    ]
    totals = UsageTotals(
        requests=sum(r.requests for r in by_day),
        prompt_tokens=sum(r.prompt_tokens for r in by_day),
        completion_tokens=sum(r.completion_tokens for r in by_day),
        total_tokens=sum(r.total_tokens for r in by_day),
    )
    return UsageReport(since=since, totals=totals, by_day=by_day)
