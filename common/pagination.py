"""Paging for every list endpoint: one bounded ``offset``/``limit`` pair and one page shape.

``offset`` is capped so that a huge value (``?offset=100000000000000000000``) is a 422, not a
500 from the database driver (SQLite and PostgreSQL take a 64-bit OFFSET; Python ints do not
stop there). ``limit`` is 1-100 (docs/api.md §6); above is a 422, never silently clamped.

    from common.pagination import DEFAULT_LIMIT, Limit, Offset, Page, page_of

    @router.get("/things", response_model=Page[ThingRead])
    async def list_things(offset: Offset = 0, limit: Limit = DEFAULT_LIMIT) -> Page[ThingRead]:
        rows, total = ...
        return page_of(rows, total, offset, limit)

The page is fastcrud's shape: ``{data, total_count, has_more, offset, limit}``. A hand-written
query is paged by ``paginate`` (its count and its page); fastcrud's ``get_multi`` pages its own;
the records list, the hot path, runs its two compiled statements itself (``mobile_service.crud``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Generic, TypeVar

import orjson
from fastapi import Query
from pydantic import BaseModel
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

MAX_OFFSET = 1_000_000_000
MAX_LIMIT = 100
DEFAULT_LIMIT = 20

Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Items to skip (0 to 1,000,000,000)")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page (1 to 100)")]

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a list: the items, the total count and whether more follow."""

    data: list[T]
    total_count: int
    has_more: bool
    offset: int
    limit: int


def page_of(rows: Sequence[T], total: int, offset: int, limit: int) -> Page[T]:
    """Wrap ``rows`` (already the page) in the page shape; more follow when the rows seen so far
    (``offset + len(rows)``) are fewer than ``total``."""
    return Page(data=list(rows), total_count=total, has_more=offset + len(rows) < total, offset=offset, limit=limit)


def page_json(rows: list[dict[str, Any]], total: int, offset: int, limit: int) -> bytes:
    """``page_of(...)`` as JSON, written by orjson straight from ``rows`` that hold exactly the
    item model's fields, in its order, with values of its types (a compiled hot read's rows):
    the same bytes pydantic writes (datetimes in UTC end in ``Z``), without building a model per
    row and validating what the database just gave (the records list; bench/README.md)."""
    page = {
        "data": rows,
        "total_count": total,
        "has_more": offset + len(rows) < total,
        "offset": offset,
        "limit": limit,
    }
    return orjson.dumps(page, option=orjson.OPT_UTC_Z)


async def paginate(session: AsyncSession, stmt: Select[Any], offset: int, limit: int) -> tuple[list[Any], int]:
    """(this page's rows, the total) of an ordered ``select``: one count over the same filters,
    then the page itself."""
    total = await session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery()))
    rows = await session.execute(stmt.offset(offset).limit(limit))
    return list(rows.scalars()), int(total or 0)
