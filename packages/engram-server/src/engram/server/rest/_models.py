"""Request and response bodies. Requests refuse unknown fields; responses allow extra fields (the
engine may add keys, e.g. ``"infer"`` or ``"missing"``) so clients must ignore what they do not know."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "ID_PATTERN",
    "MAX_ID",
    "MAX_LIMIT",
    "MAX_MESSAGES",
    "MAX_QUERY",
    "MAX_TEXT",
    "AddRequest",
    "AddResponse",
    "DeleteAllResponse",
    "DeleteResponse",
    "GraphResponse",
    "HealthResponse",
    "HistoryEventOut",
    "ImportRequest",
    "ImportResponse",
    "MemoryList",
    "MemoryOut",
    "MessageIn",
    "MessageResponse",
    "SearchRequest",
    "SearchResponse",
    "UpdateRequest",
    "UpdateResponse",
]

MAX_ID = 256  # user_id / agent_id / run_id / memory id: the engine's own bound
MAX_TEXT = 100_000  # characters in one message or one memory's text
MAX_QUERY = 10_000  # characters in a search query
MAX_MESSAGES = 1_000  # messages in one add
MAX_LIMIT = 10_000  # the engine's bound on limit / top_k
ID_PATTERN = r"^[^\x00-\x1f\x7f]+$"  # the engine's scope ids: no control characters

ScopeId = Annotated[
    str | None,
    Field(
        default=None,
        min_length=1,
        max_length=MAX_ID,
        pattern=ID_PATTERN,
        description="A scope id (no control characters).",
    ),
]
Metadata = Annotated[
    dict[str, Any] | None,
    Field(default=None, description="JSON object stored with the memory (finite numbers, 64-bit integers)."),
]


class _Request(BaseModel):
    # strict: 0 is not false and "3" is not 3 in a JSON body.
    model_config = ConfigDict(extra="forbid", strict=True)


class _Response(BaseModel):
    model_config = ConfigDict(extra="allow")


class MessageIn(_Request):
    """One conversation turn."""

    role: Literal["user", "assistant", "system", "tool"] = "user"
    content: str = Field(max_length=MAX_TEXT)
    name: str | None = Field(
        default=None, max_length=MAX_ID, description="Who said it; kept as metadata.speaker."
    )
    time: str | float | None = Field(
        default=None,
        description="When it was said: ISO 8601 text or POSIX seconds; kept as metadata.message_time.",
    )
    metadata: Metadata = None


class AddRequest(_Request):
    """``POST /memories``: mem0's body. At least one of user_id, agent_id, run_id."""

    messages: str | Annotated[list[MessageIn], Field(min_length=1, max_length=MAX_MESSAGES)] = Field(
        description="A string (one user message) or a list of messages."
    )
    user_id: ScopeId = None
    agent_id: ScopeId = None
    run_id: ScopeId = None
    metadata: Metadata = None
    infer: bool = Field(
        default=True,
        description="With an LLM configured, extract facts and decide ADD/UPDATE/DELETE/NONE; false stores verbatim.",
    )
    memory_type: Literal["procedural"] | None = Field(
        default=None,
        description="'procedural' summarises an agent's run into one memory (needs agent_id and an LLM).",
    )

    @model_validator(mode="after")
    def _short_text(self) -> AddRequest:
        if isinstance(self.messages, str) and len(self.messages) > MAX_TEXT:
            raise ValueError(f"messages: at most {MAX_TEXT} characters")
        return self


class SearchRequest(_Request):
    """``POST /search``. The scope comes from user_id / agent_id / run_id, or (mem0's newer style)
    from top-level ``user_id`` / ``agent_id`` / ``run_id`` keys inside ``filters``."""

    query: str = Field(max_length=MAX_QUERY)
    user_id: ScopeId = None
    agent_id: ScopeId = None
    run_id: ScopeId = None
    filters: dict[str, Any] | None = Field(
        default=None, description="Metadata filter (engram's filter syntax)."
    )
    limit: int | None = Field(
        default=None, ge=1, le=MAX_LIMIT, description="At most this many results (default 10)."
    )
    top_k: int | None = Field(default=None, ge=1, le=MAX_LIMIT, description="mem0's name for limit.")
    threshold: float | None = Field(
        default=None, allow_inf_nan=False, description="Drop results scoring below this."
    )
    include_archived: bool = Field(
        default=False, description="Rank archived versions with the active memories."
    )

    @model_validator(mode="after")
    def _one_limit(self) -> SearchRequest:
        if self.limit is not None and self.top_k is not None and self.limit != self.top_k:
            raise ValueError("give limit or top_k, not two different values")
        return self


class UpdateRequest(_Request):
    """``PUT /memories/{memory_id}``: new text, metadata merged in, or both."""

    text: str | None = Field(default=None, min_length=1, max_length=MAX_TEXT, description="The new text.")
    metadata: Metadata = None

    @model_validator(mode="after")
    def _something(self) -> UpdateRequest:
        if self.text is None and self.metadata is None:
            raise ValueError("give text, metadata or both")
        return self


class ImportRequest(_Request):
    """``POST /import``: a file's text in one of ``engram import``'s formats."""

    content: str = Field(
        description="The file's text: engram JSON lines (what GET /export returns) or LoCoMo JSON."
    )
    format: Literal["auto", "jsonl", "locomo"] = "auto"
    user_id: ScopeId = None
    agent_id: ScopeId = None
    run_id: ScopeId = None


# -- responses -----------------------------------------------------------------------------------


class MemoryOut(_Response):
    id: str
    memory: str
    hash: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: str | None = None
    updated_at: str | None = None
    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None


class MemoryList(_Response):
    results: list[MemoryOut]
    relations: list[dict[str, Any]] | None = None


class ScoredOut(MemoryOut):
    score: float
    scores: dict[str, float] = Field(default_factory=dict)


class SearchResponse(_Response):
    results: list[ScoredOut]
    relations: list[dict[str, Any]] = Field(default_factory=list)
    missing: dict[str, str] | None = None


class ChangeOut(_Response):
    id: str
    memory: str
    event: Literal["ADD", "UPDATE", "DELETE", "NONE"]
    previous_memory: str | None = None


class AddResponse(_Response):
    results: list[ChangeOut]


class UpdateResponse(_Response):
    id: str
    memory: str
    event: Literal["UPDATE"]
    previous_memory: str
    message: str


class DeleteResponse(_Response):
    id: str
    event: Literal["DELETE"]
    message: str


class DeleteAllResponse(_Response):
    deleted: int
    message: str


class MessageResponse(_Response):
    message: str


class HistoryEventOut(_Response):
    id: str
    memory_id: str
    event: str
    old_memory: str | None = None
    new_memory: str | None = None
    created_at: str


class GraphResponse(_Response):
    entities: list[dict[str, Any]]
    relations: list[dict[str, Any]]


class ImportResponse(_Response):
    format: Literal["jsonl", "locomo"]
    imported: int
    skipped: int
    scopes: list[dict[str, Any]]
    warnings: list[str]


class HealthResponse(_Response):
    status: Literal["ok"]
    version: str
    auth: bool
