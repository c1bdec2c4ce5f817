"""The tools' structured results: pydantic models the SDK publishes as each tool's output schema.

They describe the engine's own dicts (mem0's shapes, see :class:`engram.core.AsyncMemory`); a tool
returns the engine's dict as its structured content and the SDK checks it against the model. Keys
the models do not name are allowed through, so a newer engine adding a key breaks no client.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AddResult",
    "Change",
    "DeleteResult",
    "Entity",
    "GraphResult",
    "HistoryEvent",
    "HistoryResult",
    "ListResult",
    "Memory",
    "MemoryHit",
    "Relation",
    "RelationChanges",
    "ResetResult",
    "SearchResult",
    "UpdateResult",
]


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class Memory(_Out):
    """One memory, as ``AsyncMemory.get`` returns it."""

    id: str = Field(description="The memory's id (a UUID).")
    memory: str = Field(description="The remembered text.")
    hash: str | None = Field(None, description="Hash of the text (duplicates share it).")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Metadata stored with the memory.")
    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None
    created_at: str = Field(description="When it was stored, ISO 8601 UTC.")
    updated_at: str | None = Field(None, description="When it last changed, ISO 8601 UTC.")
    archived: bool | None = Field(None, description="True for an archived (superseded or deleted) version.")
    archived_at: str | None = None
    archive_reason: str | None = None


class MemoryHit(Memory):
    """A search result: a memory with its scores."""

    score: float = Field(description="The final score, higher is better.")
    scores: dict[str, float] = Field(
        default_factory=dict, description="Per recall path: dense (cosine), lexical (BM25), entity, graph."
    )


class Relation(_Out):
    """A graph relation ``source -relationship-> destination``."""

    id: str | None = None
    source: str
    relationship: str
    destination: str
    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None
    mentions: int | None = None
    valid_at: str | None = Field(None, description="Since when it held in the world, when known.")
    invalid_at: str | None = Field(None, description="Until when it held in the world, when known.")
    created_at: str | None = None
    expired_at: str | None = Field(
        None, description="When a newer relation contradicted it; null while current."
    )
    memory_ids: list[str] = Field(default_factory=list, description="The memories that stated it.")
    hops: int | None = Field(None, description="Search only: graph distance from the question's entities.")


class Entity(_Out):
    """A graph entity (a person, place, thing...)."""

    id: str
    name: str
    type: str | None = None
    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None
    mentions: int | None = None
    created_at: str | None = None
    updated_at: str | None = None


class Change(_Out):
    """One change ``add_memory`` made."""

    id: str
    memory: str
    event: Literal["ADD", "UPDATE", "DELETE", "NONE"]
    previous_memory: str | None = Field(None, description="The text before an UPDATE.")


class RelationChanges(_Out):
    added: list[Relation] = Field(default_factory=list)
    closed: list[Relation] = Field(default_factory=list, description="Relations a new one contradicted.")


class AddResult(_Out):
    results: list[Change] = Field(description="One entry per memory added, updated or deleted.")
    infer: dict[str, Any] | None = Field(
        None, description="With an LLM: facts extracted, and why the text was stored verbatim if it was."
    )
    relations: RelationChanges | None = Field(
        None, description="With a graph store: relations added and closed."
    )


class SearchResult(_Out):
    results: list[MemoryHit] = Field(description="The best memories first.")
    relations: list[Relation] = Field(default_factory=list, description="Graph relations near the question.")
    missing: dict[str, str] | None = Field(None, description="Recall paths that failed, and why.")


class ListResult(_Out):
    results: list[Memory] = Field(description="Newest first; archived versions last when asked for.")
    relations: list[Relation] | None = None


class UpdateResult(_Out):
    id: str
    memory: str = Field(description="The new text.")
    event: Literal["UPDATE"]
    previous_memory: str = Field(description="The text it replaced (kept in the history).")


class DeleteResult(_Out):
    id: str
    event: Literal["DELETE"]
    message: str


class HistoryEvent(_Out):
    id: str
    memory_id: str
    event: str = Field(description="ADD, UPDATE or DELETE.")
    old_memory: str | None = None
    new_memory: str | None = None
    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None
    actor_id: str | None = None
    role: str | None = None
    created_at: str
    metadata: dict[str, Any] | None = None


class HistoryResult(_Out):
    memory_id: str
    events: list[HistoryEvent] = Field(description="Oldest first.")


class GraphResult(_Out):
    entities: list[Entity]
    relations: list[Relation] = Field(description="Newest first.")


class ResetResult(_Out):
    deleted: int = Field(description="How many memories were deleted.")
    scope: dict[str, str] | None = Field(
        None, description="The scope emptied; null when everything was reset."
    )
    message: str
