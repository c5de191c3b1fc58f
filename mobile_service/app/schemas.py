"""Request and response schemas of mobile_service, one per direction (docs/api.md §6)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from common.errors import error_responses_with

# docs/api.md §6 limits (the contract, so constants rather than settings).
TITLE_MAX_CHARS = 200
CONTENT_MAX_CHARS = 100_000
MAX_TAGS = 20
TAG_MAX_CHARS = 32
# Record versions stay exact in every JSON parser (JavaScript's safe integers).
MAX_VERSION = 2**53 - 1
MAX_ATTACHMENTS = 50
PAGE_MAX = 100


def no_nul(value: str) -> str:
    """NUL cannot be stored in PostgreSQL text (and breaks full-text queries): refuse it."""
    if "\x00" in value:
        raise ValueError("text must not contain NUL characters")
    return value


Text = Annotated[str, AfterValidator(no_nul)]
Title = Annotated[Text, Field(max_length=TITLE_MAX_CHARS)]
Content = Annotated[Text, Field(max_length=CONTENT_MAX_CHARS)]
Summary = Annotated[Text, Field(max_length=CONTENT_MAX_CHARS)]
ImageId = Annotated[Text, Field(min_length=1, max_length=36)]
RawTag = Annotated[Text, Field(max_length=256)]


def normalise_tags(tags: list[str]) -> list[str]:
    """Trimmed, lower-case, unique (first occurrence wins), empty ones dropped; limits of docs/api.md §6 enforced."""
    seen: dict[str, None] = {}
    for raw in tags:
        tag = raw.strip().lower()
        if not tag:
            continue
        if len(tag) > TAG_MAX_CHARS:
            raise ValueError(f"a tag has at most {TAG_MAX_CHARS} characters")
        seen.setdefault(tag, None)
    if len(seen) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} tags")
    return list(seen)


def unique_ids(ids: list[str]) -> list[str]:
    return list(dict.fromkeys(ids))


class _RecordFields(BaseModel):
    @field_validator("tags", check_fields=False)
    @classmethod
    def _tags(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else normalise_tags(value)

    @field_validator("attachments", check_fields=False)
    @classmethod
    def _attachments(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else unique_ids(value)


class RecordCreate(_RecordFields):
    model_config = ConfigDict(extra="forbid")
    id: uuid.UUID | None = Field(
        default=None, description="Client-made UUID (offline clients); repeating a create is idempotent"
    )
    title: Title = ""
    content: Content = ""
    tags: Annotated[list[RawTag], Field(max_length=200)] = []
    pinned: StrictBool = False
    attachments: Annotated[list[ImageId], Field(max_length=MAX_ATTACHMENTS)] = []

    @model_validator(mode="after")
    def _not_blank(self) -> RecordCreate:
        # docs/api.md §6: an empty body would make a blank record nobody asked for.
        if not self.title.strip() and not self.content.strip():
            raise ValueError("A record needs a title or content")
        return self


class RecordUpdate(_RecordFields):
    model_config = ConfigDict(extra="forbid")
    version: int | None = Field(
        default=None, ge=1, le=MAX_VERSION, description="The version this change is based on (or If-Match)"
    )
    title: Title | None = None
    content: Content | None = None
    tags: Annotated[list[RawTag], Field(max_length=200)] | None = None
    pinned: StrictBool | None = None
    summary: Summary | None = None
    attachments: Annotated[list[ImageId], Field(max_length=MAX_ATTACHMENTS)] | None = None

    def changes(self) -> dict[str, Any]:
        """The fields the client sent (``null`` clears only ``summary``)."""
        sent = self.model_dump(exclude_unset=True, exclude={"version"})
        return {k: v for k, v in sent.items() if v is not None or k == "summary"}


class RecordRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    title: str
    content: str
    tags: list[str]
    pinned: bool
    visibility: Literal["private", "public"]
    slug: str | None
    summary: str | None
    attachments: list[str]
    version: int
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None


class RecordUpdated(RecordRead):
    """PATCH's answer: the record, marked when a stale change was merged into a newer version."""

    merged: bool = Field(
        default=False,
        exclude_if=lambda value: not value,
        description="Present (true) only when the change was based on an older version and merged (§16)",
    )


class Match(BaseModel):
    score: float = Field(description="semantic: cosine similarity of the best chunk; hybrid: the fused rank score")
    snippet: str = Field(description="The part of the record that matched")


class RecordListItem(RecordRead):
    """A record in a list; semantic and hybrid searches add how it matched."""

    match: Match | None = Field(
        default=None, exclude_if=lambda value: value is None, description="Only with q and mode=semantic|hybrid"
    )


class RelatedRecord(BaseModel):
    record: RecordRead
    score: float


class RelatedRecords(BaseModel):
    data: list[RelatedRecord]


class PublicRecord(BaseModel):
    """What anyone may see of a published record: no owner, no id, no sync state."""

    model_config = ConfigDict(from_attributes=True)
    slug: str
    title: str
    content: str
    summary: str | None
    tags: list[str]
    attachments: list[str]
    created_at: datetime
    updated_at: datetime


# ---------------------------------------------------------------- history (docs/api.md §16)

RevisionKind = Literal["version", "stale_edit"]


class RevisionListItem(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    revision: int = Field(description="Numbered per record, oldest 1")
    version: int = Field(
        description="version: the record's version in this state; stale_edit: the version it was based on"
    )
    kind: RevisionKind = Field(
        description="version: a state the record had; stale_edit: an edit sent against an older version, kept as sent"
    )
    title: str
    created_at: datetime = Field(
        description="When it was kept: the change that replaced it, or the stale edit's arrival"
    )
    device: str | None = Field(description="X-Device of the change that made this state (or sent the stale edit)")


class RevisionRead(RevisionListItem):
    content: str
    tags: list[str]


class DiffLine(BaseModel):
    op: Literal["context", "delete", "add"]
    text: str = Field(description="The line with its newline (the last line of a text may have none)")


class DiffHunk(BaseModel):
    old_start: int
    old_lines: int
    new_start: int
    new_lines: int
    lines: list[DiffLine]


class DiffSide(BaseModel):
    revision: int | None = Field(description="None: the record as it is now")
    version: int
    title: str
    tags: list[str]


class RevisionDiff(BaseModel):
    old: DiffSide = Field(description="The revision asked for")
    new: DiffSide = Field(description="What it is compared with (against=current|<rev>)")
    unified: str = Field(description="The content's unified diff (empty when equal)")
    hunks: list[DiffHunk] = Field(description="The same changes, line by line, for colouring")


class TrashItem(BaseModel):
    id: str
    title: str = Field(description="The title before the delete")
    tags: list[str]
    version: int
    deleted_at: datetime
    purge_after: datetime = Field(description="From then on the record may be purged (RECORD_TRASH_DAYS)")
    revision: int | None = Field(description="The revision holding the state before the delete")


class ConflictSide(BaseModel):
    version: int | None
    title: str
    content: str
    tags: list[str]


class ConflictHunk(BaseModel):
    field: str = Field(description="title, content, tags, or a field without history (pinned, summary, attachments)")
    base_line: int | None = Field(description="content: where the hunk starts in the base (1-based)")
    base: Any = Field(description="The base's part (null when the base is unknown or the field has no history)")
    theirs: Any = Field(description="The record's part now")
    yours: Any = Field(description="The part sent")


class ConflictKept(BaseModel):
    theirs: int | None = Field(description="The revision holding the record's state")
    yours: int | None = Field(description="The revision holding the edit as sent (null when it changed no text)")


class ConflictInfo(BaseModel):
    base: ConflictSide | None = Field(description="The text at the version the change was based on, if still kept")
    theirs: ConflictSide
    yours: ConflictSide
    hunks: list[ConflictHunk]
    kept: ConflictKept


class ConflictBody(BaseModel):
    """409 of a stale PATCH: docs/api.md §4's error shape with the current record and the conflict."""

    detail: Any
    code: str
    request_id: str
    record: RecordRead
    conflict: ConflictInfo | None


# ---------------------------------------------------------------- sync


class SyncChange(BaseModel):
    id: str
    op: Literal["upsert", "delete"]
    version: int
    record: RecordRead


class SyncChanges(BaseModel):
    changes: list[SyncChange]
    cursor: str
    has_more: bool


class SyncPush(BaseModel):
    """Items stay loosely typed here so that one bad item gets its own error, not a 422 for all."""

    changes: Annotated[list[Any], Field(max_length=10_000)]


class PushItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: uuid.UUID
    op: Literal["upsert", "delete"]
    base_version: int | None = Field(default=None, ge=0, le=MAX_VERSION)
    fields: dict[str, Any] = {}


class PushResult(BaseModel):
    id: str | None
    status: Literal["applied", "merged", "conflict", "error"]
    record: RecordRead | None = None
    detail: Any = None
    conflict: ConflictInfo | None = Field(
        default=None, exclude_if=lambda value: value is None, description="With a conflict of a stale upsert (§16)"
    )


class SyncPushResults(BaseModel):
    results: list[PushResult]


# ---------------------------------------------------------------- AI actions

AiTask = Literal["summarize", "tags", "title", "polish"]


class AiResult(BaseModel):
    task: AiTask
    result: str | list[str]
    applied: bool
    record: RecordRead | None = None


# ---------------------------------------------------------------------------- OpenAPI error answers

ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Well-formed but unusable input: NUL in text, a malformed If-Match or sync cursor (bad_request)",
    409: "The record changed since the version sent (conflict): read it again and retry",
    413: "Body, text or sync batch over its limit (payload_too_large)",
    429: "llm_service's rate limit; see Retry-After (rate_limited)",
    502: "llm_service or its provider failed (upstream_error)",
    503: "Redis, the database or llm_service is unavailable; the detail says which (service_unavailable)",
    504: "llm_service timed out (upstream_timeout)",
}

error_responses = error_responses_with(ERROR_DESCRIPTIONS)
