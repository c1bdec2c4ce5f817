"""Data types shared by the engine and every provider."""

from __future__ import annotations

import hashlib
import re
import unicodedata
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from .errors import InvalidInputError, InvalidMessageError, InvalidScopeError

if TYPE_CHECKING:  # numpy is needed only by providers; importing engram.core stays light
    import numpy as np

__all__ = [
    "Entity",
    "Event",
    "GraphBatch",
    "HistoryEvent",
    "LLMResponse",
    "MemoryItem",
    "Message",
    "Relation",
    "Scope",
    "ScoredMemory",
    "SearchMode",
    "VectorQuery",
    "WriteBatch",
    "content_hash",
    "entity_key",
    "normalize_messages",
    "parse_time",
    "relation_key",
    "utcnow",
]

SCOPE_FIELDS: tuple[str, ...] = ("user_id", "agent_id", "run_id")
_ID_RE = re.compile(r"[^\x00-\x1f\x7f]{1,256}")  # used with fullmatch: "$" would accept a trailing newline
ROLES = frozenset({"user", "assistant", "system", "tool"})
SearchMode = Literal["dense", "lexical", "hybrid"]


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def parse_time(value: Any) -> datetime:
    """Parse a datetime, an ISO 8601 string or POSIX seconds into an aware UTC datetime.

    Naive datetimes and strings without an offset are taken as UTC.

    Raises:
        ValueError: the value is none of those.
    """
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(float(value), UTC)
        except (OverflowError, OSError) as exc:  # out of range for time_t / datetime
            raise ValueError(f"not a time: {value!r} ({exc})") from None
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        dt = datetime.fromisoformat(text)
    else:
        raise ValueError(f"not a time: {value!r}")
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def content_hash(text: str) -> str:
    """Hex MD5 of the UTF-8 text: the exact-duplicate key (not a security hash, as in mem0)."""
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


@dataclass(frozen=True, slots=True)
class Scope:
    """Whose memory: any combination of ``user_id``, ``agent_id`` and ``run_id``, at least one set.

    A memory belongs to the scope it was written in. A query scope matches every memory whose
    fields equal each field the query sets (fields left ``None`` match anything), so
    ``Scope(user_id="alice")`` sees Alice's memories from every agent and run.

    Raises:
        InvalidScopeError: no field set, or an id that is empty, longer than 256 characters,
            not a string, or holds control characters.
    """

    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None

    def __post_init__(self) -> None:
        if self.user_id is None and self.agent_id is None and self.run_id is None:
            raise InvalidScopeError("a scope needs at least one of user_id, agent_id or run_id")
        for name in SCOPE_FIELDS:
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not _ID_RE.fullmatch(value)):
                raise InvalidScopeError(
                    f"{name} must be a non-empty string of at most 256 characters without "
                    f"control characters, got {value!r}"
                )

    @classmethod
    def of(cls, user_id: str | None = None, agent_id: str | None = None, run_id: str | None = None) -> Scope:
        """Build a scope; same as the constructor, named for readability at call sites."""
        return cls(user_id=user_id, agent_id=agent_id, run_id=run_id)

    def items(self) -> list[tuple[str, str]]:
        """The fields that are set, as ``(name, value)`` pairs in user, agent, run order."""
        return [(n, v) for n in SCOPE_FIELDS if (v := getattr(self, n)) is not None]

    def matches(self, user_id: str | None, agent_id: str | None, run_id: str | None) -> bool:
        """Whether a memory written with these ids is visible in this scope."""
        return (
            (self.user_id is None or self.user_id == user_id)
            and (self.agent_id is None or self.agent_id == agent_id)
            and (self.run_id is None or self.run_id == run_id)
        )

    @property
    def kind(self) -> str:
        """``"user"``, ``"agent"``, ``"run"`` or a ``+``-joined combination, for telemetry and logs."""
        return "+".join(n.removesuffix("_id") for n, _ in self.items())


@dataclass(slots=True)
class Message:
    """One conversation turn.

    Attributes:
        role: ``"user"``, ``"assistant"``, ``"system"`` or ``"tool"``.
        content: the text.
        name: the speaker's name, when known (``"Caroline"``).
        time: when the turn was said, aware UTC, when known.
        metadata: this turn's own metadata, merged over the call's ``metadata`` when stored.
    """

    role: str
    content: str
    name: str | None = None
    time: datetime | None = None
    metadata: dict[str, Any] | None = None


def normalize_messages(messages: Any) -> list[Message]:
    """Accept a string, one message (mapping or :class:`Message`) or a list of them.

    A mapping needs ``content`` (a string) and may give ``role`` (default ``"user"``), ``metadata``
    (a mapping for this turn alone), ``name``
    and a time as ``time``, ``timestamp`` or ``created_at`` (datetime, ISO 8601 or POSIX seconds).

    Raises:
        InvalidMessageError: anything else, or an empty list.
    """
    if isinstance(messages, str | Message | Mapping):
        messages = [messages]
    if not isinstance(messages, Sequence) or isinstance(messages, bytes):
        raise InvalidMessageError(
            f"messages must be a string, a message mapping or a list of them, got {type(messages).__name__}"
        )
    if not messages:
        raise InvalidMessageError("messages is empty: nothing to remember")
    out: list[Message] = []
    for i, m in enumerate(messages):
        if isinstance(m, str):
            out.append(Message("user", m))
        elif isinstance(m, Message):  # dataclasses do not check types: validate like a mapping
            if not isinstance(m.content, str):
                raise InvalidMessageError(f"message {i}: 'content' must be a string, got {type(m.content).__name__}")
            if not isinstance(m.role, str) or m.role not in ROLES:
                raise InvalidMessageError(f"message {i}: unknown role {m.role!r}; expected one of {sorted(ROLES)}")
            if m.name is not None and not isinstance(m.name, str):
                raise InvalidMessageError(f"message {i}: 'name' must be a string")
            if m.time is not None and not isinstance(m.time, datetime):
                raise InvalidMessageError(f"message {i}: 'time' must be a datetime")
            out.append(m)
        elif isinstance(m, Mapping):
            content = m.get("content")
            role = m.get("role", "user")
            if not isinstance(content, str):
                raise InvalidMessageError(f"message {i}: 'content' must be a string, got {type(content).__name__}")
            if not isinstance(role, str) or role not in ROLES:  # an unhashable role must not raise TypeError
                raise InvalidMessageError(f"message {i}: unknown role {role!r}; expected one of {sorted(ROLES)}")
            name = m.get("name")
            if name is not None and not isinstance(name, str):
                raise InvalidMessageError(f"message {i}: 'name' must be a string")
            raw_time = m.get("time", m.get("timestamp", m.get("created_at")))
            try:
                when = parse_time(raw_time) if raw_time is not None else None
            except ValueError as exc:
                raise InvalidMessageError(f"message {i}: bad time {raw_time!r}: {exc}") from None
            meta = m.get("metadata")
            if meta is not None and not isinstance(meta, Mapping):
                raise InvalidMessageError(f"message {i}: 'metadata' must be a mapping")
            out.append(Message(role, content, name, when, dict(meta) if meta is not None else None))
        else:
            raise InvalidMessageError(f"message {i}: expected a string or a mapping, got {type(m).__name__}")
    return out


class Event(StrEnum):
    """What a change did to a memory."""

    ADD = "ADD"
    UPDATE = "UPDATE"
    DELETE = "DELETE"
    NONE = "NONE"


@dataclass(slots=True)
class MemoryItem:
    """One stored memory.

    Attributes:
        id: UUID string.
        memory: the text remembered.
        hash: :func:`content_hash` of ``memory``.
        user_id, agent_id, run_id: the scope it was written in.
        metadata: JSON-compatible mapping (caller's keys plus ``role``, ``speaker``, ``message_time``).
        created_at, updated_at: aware UTC; ``updated_at`` is ``None`` until the first update.
        embedding: ``(dims,)`` float32, L2-normalised; set on writes, usually ``None`` on reads.
        archived_at, archive_reason: set on an archived version (an old text kept after an
            UPDATE, ``"superseded"``, or a DELETE, ``"deleted"``); ``None`` on active memories.
        access_count, last_accessed_at: how many times search has returned it as a rehearsed
            result and when last (aware UTC), with decay on (see :mod:`engram.core._decay`);
            kept by stores with the ``"rehearsal"`` capability, ``0`` / ``None`` elsewhere.
    """

    id: str
    memory: str
    hash: str
    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime | None = None
    embedding: np.ndarray | None = None
    archived_at: datetime | None = None
    archive_reason: str | None = None
    access_count: int = 0
    last_accessed_at: datetime | None = None

    @property
    def scope(self) -> Scope:
        return Scope(self.user_id, self.agent_id, self.run_id)

    def to_dict(self) -> dict[str, Any]:
        """The mem0-shaped mapping: ids, text, hash, metadata, ISO 8601 times (no embedding);
        ``access_count`` and ``last_accessed_at`` only once the memory has been rehearsed."""
        d: dict[str, Any] = {
            "id": self.id,
            "memory": self.memory,
            "hash": self.hash,
            "metadata": self.metadata,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
        }
        for name in SCOPE_FIELDS:
            if (v := getattr(self, name)) is not None:
                d[name] = v
        if self.archived_at is not None:
            d["archived"] = True
            d["archived_at"] = self.archived_at.isoformat()
            d["archive_reason"] = self.archive_reason
        if self.access_count or self.last_accessed_at is not None:
            d["access_count"] = self.access_count
            d["last_accessed_at"] = self.last_accessed_at.isoformat() if self.last_accessed_at else None
        return d


@dataclass(slots=True)
class ScoredMemory:
    """A search hit.

    Attributes:
        item: the memory.
        score: the final score; higher is better. Its scale depends on the path: cosine
            similarity in [-1, 1] for dense, BM25 (>= 0) for lexical, the fusion's scale for hybrid.
        scores: the per-path scores that led to it (``{"dense": 0.71, "lexical": 7.2}``).
    """

    item: MemoryItem
    score: float
    scores: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class VectorQuery:
    """One vector-store search.

    Attributes:
        scope: only memories visible in this scope are considered (applied inside the store).
        embedding: ``(dims,)`` float32 query vector, needed for ``dense`` and ``hybrid``.
        text: the query text, needed for ``lexical`` and ``hybrid``; any string is valid.
        filters: parsed metadata filter, or ``None``.
        limit: at most this many hits, best first.
        mode: ``"dense"`` (cosine), ``"lexical"`` (BM25) or ``"hybrid"`` (both, fused).
        archived: search the archived versions instead of the active memories (stores with the
            ``"archive"`` capability; others return ``[]``).
    """

    scope: Scope
    embedding: np.ndarray | None = None
    text: str | None = None
    filters: Any = None
    limit: int = 10
    mode: SearchMode = "dense"
    archived: bool = False


@dataclass(slots=True)
class HistoryEvent:
    """One change to one memory, as the audit history keeps it.

    Attributes:
        id: UUID of the event.
        memory_id: the memory changed.
        event: ADD, UPDATE or DELETE.
        old_memory / new_memory: the text before and after (``None`` where there is none).
        user_id, agent_id, run_id: the memory's scope.
        actor_id: who caused it (speaker name, API caller), when known.
        role: the message role that led to it, when known.
        created_at: when the change happened, aware UTC.
        metadata: extra details (reason, source).
    """

    id: str
    memory_id: str
    event: Event
    old_memory: str | None
    new_memory: str | None
    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None
    actor_id: str | None = None
    role: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "memory_id": self.memory_id,
            "event": str(self.event),
            "old_memory": self.old_memory,
            "new_memory": self.new_memory,
            "user_id": self.user_id,
            "agent_id": self.agent_id,
            "run_id": self.run_id,
            "actor_id": self.actor_id,
            "role": self.role,
            "created_at": self.created_at.isoformat(),
            "metadata": self.metadata,
        }


@dataclass(slots=True)
class WriteBatch:
    """Changes a vector store applies together, atomically where the store allows.

    Applied in this order: ``deletes``, ``archive``, ``upserts``; so archiving a memory and
    upserting its new text under the same id in one batch keeps the old version in the archive.

    Attributes:
        upserts: memories to insert or replace (the active version, by id), each with its
            ``embedding`` set.
        deletes: ids to purge: the active version and every archived version (unknown ids are ignored).
        archive: ``(memory id, reason)`` pairs: the active version leaves the active set and is
            kept, with its embedding, as an archived version (``reason`` is ``"superseded"`` or
            ``"deleted"``). Stores with the ``"archive"`` capability only; unknown ids are ignored.
        events: history events for these changes; a store that also keeps history (see
            :class:`~engram.core.HistoryStore`) writes them in the same transaction, others ignore them.
    """

    upserts: list[MemoryItem] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    events: list[HistoryEvent] = field(default_factory=list)
    archive: list[tuple[str, str]] = field(default_factory=list)


_KEY_PUNCT = re.compile(r"^[\W_]+|[\W_]+$")
_SPACES = re.compile(r"[\s_]+")


def entity_key(name: str) -> str:
    """The resolution key of an entity name: NFKC, case-folded, runs of spaces and underscores made
    one space, punctuation trimmed from both ends. ``"Alice"``, ``" alice "`` and ``"ALICE."`` share
    the key ``"alice"``; ``"New_York"`` and ``"new york"`` share ``"new york"``.

    Raises:
        InvalidInputError: the name has no letter or digit left (an empty key).
    """
    key = _KEY_PUNCT.sub("", _SPACES.sub(" ", unicodedata.normalize("NFKC", str(name)).casefold()).strip())
    if not key:
        raise InvalidInputError(f"an entity name needs a letter or a digit, got {name!r}")
    return key


def relation_key(name: str) -> str:
    """A relation name in the graph's form: lower snake case (``"Lives In"`` -> ``"lives_in"``).

    Raises:
        InvalidInputError: nothing is left of the name.
    """
    key = "_".join(re.findall(r"[^\W_]+", unicodedata.normalize("NFKC", str(name)).casefold()))
    if not key:
        raise InvalidInputError(f"a relation name needs a letter or a digit, got {name!r}")
    return key


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


def _new_id() -> str:
    return str(uuid.uuid4())


@dataclass(slots=True)
class Entity:
    """A node of the graph: a person, place, organisation, thing or idea named in a scope.

    Entities are resolved inside their exact scope (the three ids as written): two entities of one
    scope never share a :attr:`key`.

    Attributes:
        name: the name as first written (``"Alice"``).
        type: a lower-case kind (``"person"``, ``"place"``, ``"organization"``, ...; ``"entity"``
            when unknown).
        user_id / agent_id / run_id: the scope the entity belongs to.
        embedding: the name's embedding (dims floats), used for resolution and entity recall.
        id: a UUID string.
        key: :func:`entity_key` of the name (filled in when left empty).
        mentions: how many times extraction has named it.
        created_at / updated_at: aware UTC.
    """

    name: str
    type: str = "entity"
    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None
    embedding: list[float] | None = None
    id: str = field(default_factory=_new_id)
    key: str = ""
    mentions: int = 1
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime | None = None

    def __post_init__(self) -> None:
        if not self.key:
            self.key = entity_key(self.name)

    @property
    def scope(self) -> Scope:
        return Scope(self.user_id, self.agent_id, self.run_id)

    def to_dict(self) -> dict[str, Any]:
        """The API's mapping: ids, name, type, scope, mentions, ISO 8601 times (no embedding)."""
        return {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "user_id": self.user_id,
            "agent_id": self.agent_id,
            "run_id": self.run_id,
            "mentions": self.mentions,
            "created_at": self.created_at.isoformat(),
            "updated_at": _iso(self.updated_at),
        }


@dataclass(slots=True)
class Relation:
    """A directed edge ``source -relation-> destination`` between two entities of one scope.

    Four times, all aware UTC: ``valid_at`` / ``invalid_at`` bound when the fact held in the world
    (``None``: unknown or open); ``created_at`` / ``expired_at`` bound when engram held it as
    current (``expired_at`` is set when a newer relation contradicted it; ``None`` while current).
    A contradicted relation is closed, never deleted, so questions about the past stay answerable.

    Attributes:
        source / destination: the entity names (as the entities spell them).
        relation: the predicate in :func:`relation_key` form (``"lives_in"``).
        user_id / agent_id / run_id: the scope.
        id: a UUID string.
        source_id / destination_id: the entity ids.
        mentions: how many times extraction has stated it.
        memory_ids: the memories written by the ``add`` calls that stated it (its provenance);
            deleting all of them deletes the relation.
    """

    source: str
    relation: str
    destination: str
    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None
    mentions: int = 1
    valid_at: datetime | None = None
    invalid_at: datetime | None = None
    created_at: datetime = field(default_factory=utcnow)
    expired_at: datetime | None = None
    id: str = field(default_factory=_new_id)
    source_id: str = ""
    destination_id: str = ""
    memory_ids: list[str] = field(default_factory=list)

    @property
    def current(self) -> bool:
        """Whether engram still holds it as true (not contradicted)."""
        return self.expired_at is None

    @property
    def scope(self) -> Scope:
        return Scope(self.user_id, self.agent_id, self.run_id)

    def holds_at(self, when: datetime) -> bool:
        """Whether the fact held in the world at ``when``: ``valid_at <= when < invalid_at``, an
        unknown bound counting as open."""
        return (self.valid_at is None or self.valid_at <= when) and (self.invalid_at is None or when < self.invalid_at)

    def triple(self) -> str:
        """``"source -relation-> destination"``, for prompts and logs."""
        return f"{self.source} -{self.relation}-> {self.destination}"

    def to_dict(self, hops: int | None = None) -> dict[str, Any]:
        """The API's mapping: mem0's ``source`` / ``relationship`` / ``destination`` plus the ids,
        scope, mentions, provenance and four times (ISO 8601), and ``hops`` when given."""
        d: dict[str, Any] = {
            "id": self.id,
            "source": self.source,
            "relationship": self.relation,
            "destination": self.destination,
            "user_id": self.user_id,
            "agent_id": self.agent_id,
            "run_id": self.run_id,
            "mentions": self.mentions,
            "valid_at": _iso(self.valid_at),
            "invalid_at": _iso(self.invalid_at),
            "created_at": _iso(self.created_at),
            "expired_at": _iso(self.expired_at),
            "memory_ids": list(self.memory_ids),
        }
        if hops is not None:
            d["hops"] = hops
        return d


@dataclass(slots=True)
class GraphBatch:
    """One atomic write to a graph store.

    Attributes:
        entities: entities to insert, or to replace whole by ``id``.
        relations: relations to insert, or to replace whole by ``id`` (closing an interval is a
            replace with ``expired_at`` and ``invalid_at`` set). Their entities are in this batch or
            already stored.
        delete_relations: relation ids to delete (unknown ids are ignored).
        delete_entities: entity ids to delete with every relation that touches them.
    """

    entities: list[Entity] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)
    delete_relations: list[str] = field(default_factory=list)
    delete_entities: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.entities or self.relations or self.delete_relations or self.delete_entities)


@dataclass(slots=True)
class LLMResponse:
    """What an LLM call returned.

    Attributes:
        text: the reply text ("" when the reply is only tool calls).
        tool_calls: ``[{"name": str, "arguments": dict}]``.
        model: the model that answered.
        input_tokens / output_tokens: token usage, when the provider reports it.
    """

    text: str
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
