"""One ``typing.Protocol`` per provider kind. Every method is async.

A provider is a class whose instances satisfy its kind's protocol. It connects lazily (never in
``__init__``), releases what it holds in ``aclose()``, runs blocking drivers in worker threads,
and translates its driver's exceptions into :mod:`engram.core.errors` at the boundary.

To be built from configuration, a provider class may also offer:

- ``Config``: a pydantic model (``extra="forbid"``, ``SecretStr`` for keys); the registry builds it
  from ``{"provider": name, "config": {...}}`` and calls ``cls(config)``;
- ``from_url(url) -> instance``: parse a URL such as ``sqlite:///path/engram.db``;
- ``capabilities``: a frozenset of strings naming optional features (``"lexical"``, ``"history"``,
  ``"persistent"``, ...) that the engine and the conformance suites consult.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from ._filters import Filter
from ._types import (
    Entity,
    GraphBatch,
    HistoryEvent,
    LLMResponse,
    MemoryItem,
    Relation,
    Scope,
    ScoredMemory,
    VectorQuery,
    WriteBatch,
)
from .errors import InvalidInputError

if TYPE_CHECKING:  # numpy is needed only by providers; importing engram.core stays light
    import numpy as np

__all__ = ["LLM", "Embedder", "GraphStore", "HistoryStore", "NeighborStore", "RehearsalStore", "Reranker", "VectorStore", "check_rerank_args"]


@runtime_checkable
class LLM(Protocol):
    """A chat model."""

    async def generate(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        response_format: dict[str, Any] | None = None,
        tools: Sequence[dict[str, Any]] | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> LLMResponse:
        """Answer a list of ``{"role", "content"}`` messages.

        Args:
            response_format: ``{"type": "json_object"}`` or a JSON schema, where supported.
            tools: OpenAI-style function tool definitions.

        Raises:
            ProviderError: the model or its server failed; ProviderTimeoutError past the deadline.
        """
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors."""

    @property
    def dims(self) -> int:
        """Length of every vector this embedder returns; may be 0 until the first call for an
        embedder that learns it from its server, positive and fixed after that."""
        ...

    async def embed(self, texts: Sequence[str], *, kind: Literal["document", "query"] = "document") -> np.ndarray:
        """Embed a batch.

        Returns:
            ``(len(texts), dims)`` float32, each row L2-normalised (so a dot product is the cosine);
            ``(0, dims)`` for no texts. A text with no words may give the zero vector.

        Raises:
            InvalidInputError: ``texts`` is a single string, or an item is not a string.
            ProviderError: the model or its server failed.
        """
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class VectorStore(Protocol):
    """Keeps memories with their embeddings and finds them again.

    The scope filter and metadata filters are always applied inside the store: no call returns a
    memory outside the scope it was given.

    Optional: a store with ``"rehearsal"`` in its ``capabilities`` also has
    :meth:`RehearsalStore.record_access`, which search calls (with decay on) to strengthen the
    memories it returned; without it decay works from the stored times alone.
    """

    async def write(self, batch: WriteBatch) -> None:
        """Apply upserts and deletes, atomically where the store allows (see :class:`WriteBatch`).

        Raises:
            InvalidInputError: an upsert without an embedding, or with the wrong dimension.
            ProviderError: the store failed; nothing of the batch is applied where atomic.
        """
        ...

    async def get(self, ids: Sequence[str]) -> list[MemoryItem]:
        """The active memories with these ids that exist, in the order asked."""
        ...

    async def list(
        self,
        scope: Scope | None,
        *,
        filters: Filter | None = None,
        limit: int | None = 100,
        offset: int = 0,
        archived: bool = False,
    ) -> list[MemoryItem]:
        """Memories in the scope (every scope when ``None``) matching the filter, newest first
        (``created_at`` descending, then ``id``); ``limit=None`` returns them all. ``archived=True``
        lists the archived versions instead (newest archived first), where the store keeps them."""
        ...

    async def count(self, scope: Scope | None = None, *, filters: Filter | None = None) -> int:
        """How many active memories are in the scope (all of them when ``scope`` is ``None``)."""
        ...

    async def search(self, query: VectorQuery) -> list[ScoredMemory]:
        """Best matches first. ``dense``: cosine similarity; ``lexical``: BM25 where the store has
        ``"lexical"`` in its capabilities (others return ``[]``); ``hybrid``: both, fused."""
        ...

    async def reset(self) -> None:
        """Delete everything this store holds."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class RehearsalStore(Protocol):
    """The optional method of a vector store announced by ``"rehearsal"`` in ``capabilities``
    (kept apart from :class:`VectorStore` so stores without it still satisfy that protocol)."""

    async def record_access(self, ids: Sequence[str], at: datetime) -> int:
        """Record that search returned these memories at ``at``: for each distinct id of an active
        memory, ``access_count`` + 1 and ``last_accessed_at`` = the later of the stored value and
        ``at`` (aware UTC), atomically inside the store (an increment, never a read then a write
        in the caller, so concurrent calls lose no count). Unknown ids and archived versions are
        ignored. The memory's other fields, ``updated_at`` included, do not change.

        Returns:
            how many memories were updated.

        Raises:
            ProviderError: the store failed; no count of this call is applied where atomic.
        """
        ...


@runtime_checkable
class NeighborStore(Protocol):
    """The optional method of a vector store announced by ``"neighbors"`` in ``capabilities``;
    search uses it for neighbour expansion (``search.boost.neighbors``)."""

    async def neighbors(
        self, scope: Scope, ids: Sequence[str], *, filters: Filter | None = None
    ) -> dict[str, list[MemoryItem]]:
        """For each id of an active memory in ``scope``, the active memories of ``scope`` written
        just before and just after it (order: ``created_at``, then the order of writing), among
        those matching ``filters``.

        Returns:
            ``{id: [previous, next]}`` (one or none of each; an id that is unknown, archived or
            outside ``scope`` is left out).

        Raises:
            InvalidFilterError: a filter the store cannot evaluate.
            ProviderError: the store failed.
        """
        ...


@runtime_checkable
class HistoryStore(Protocol):
    """The audit trail: one event per change, never rewritten."""

    async def add_events(self, events: Sequence[HistoryEvent]) -> None: ...

    async def history(self, memory_id: str) -> list[HistoryEvent]:
        """Every event of one memory, oldest first."""
        ...

    async def reset(self) -> None: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class GraphStore(Protocol):
    """Entities and relations with validity intervals, per scope.

    The store keeps what the engine hands it; entity resolution, contradiction and provenance are
    decided in the engine (:mod:`engram.core._graph`) so that every store behaves the same.

    Scope matching is the vector store's: a query scope matches every entity and relation whose
    ids equal each field the query sets. Lists come back in a stable order (stated per method;
    relations and neighbours break ties on time by ``id`` descending). An embedding of another
    length than the stored ones, in a batch or a query, raises
    :class:`~engram.core.errors.InvalidInputError`.
    Optional capabilities: ``"persistent"`` (data survives reopen) and ``"entity_vectors"``
    (:meth:`similar_entities` is served by an index rather than a scan; every store must answer it).
    """

    async def apply(self, batch: GraphBatch) -> None:
        """Write a batch atomically where the store allows (all of it or none of it): its deletes
        first, then its upserts (as :class:`~engram.core.WriteBatch`).

        Raises:
            InvalidInputError: a relation names an entity id that is neither stored nor in the
                batch (or one the batch deletes), a new entity takes a key another entity of its
                exact scope holds, or an embedding's length differs from the stored ones.
            ProviderError: the store failed.
        """
        ...

    async def entities(
        self, scope: Scope, *, keys: Sequence[str] | None = None, ids: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[Entity]:
        """Entities in ``scope``, narrowed to these :func:`~engram.core.entity_key` keys and/or ids
        when given (an empty sequence matches nothing). Order: ``created_at``, then ``id``."""
        ...

    async def similar_entities(
        self, scope: Scope, embedding: Sequence[float], *, limit: int = 10, min_score: float = -1.0
    ) -> list[tuple[Entity, float]]:
        """Entities in ``scope`` with an embedding, by cosine similarity to ``embedding`` (dims
        floats), best first, at most ``limit``, each with a similarity >= ``min_score``."""
        ...

    async def relations(
        self, scope: Scope, *, entity_ids: Sequence[str] | None = None, include_expired: bool = False,
        memory_ids: Sequence[str] | None = None, limit: int | None = None,
    ) -> list[Relation]:
        """Relations in ``scope``: current ones only unless ``include_expired``; narrowed to those
        whose source or destination is one of ``entity_ids``, and/or whose provenance holds one of
        ``memory_ids``, when given. Order: ``created_at`` newest first, then ``id``."""
        ...

    async def neighbors(
        self, scope: Scope, entity_ids: Sequence[str] = (), *, keys: Sequence[str] = (), depth: int = 2,
        limit: int = 50,
    ) -> list[tuple[Relation, int]]:
        """Graph recall: current relations within ``depth`` hops of the seed entities, each with its
        hop count (1 = touches a seed), fewest hops first, then ``mentions`` descending, then
        ``created_at`` newest first, at most ``limit``. Edges are walked in both directions.
        Stores may cap ``depth`` (at least 5 must be honoured).

        The seeds are the entities in ``scope`` with one of ``entity_ids`` or one of ``keys``
        (:func:`~engram.core.entity_key` keys), so that search can walk the graph from the names
        in a question in one call. No seed found: ``[]``."""
        ...

    async def delete_memories(self, memory_ids: Sequence[str]) -> int:
        """Forget these memories: drop their ids from every relation's provenance, delete the
        relations whose provenance becomes empty, then delete the entities those relations touched
        that no relation touches any more. Returns the number of relations deleted."""
        ...

    async def delete_scope(self, scope: Scope) -> None:
        """Delete every entity and relation in ``scope``."""
        ...

    async def reset(self) -> None:
        """Delete everything."""
        ...

    async def aclose(self) -> None: ...


def check_rerank_args(query: Any, documents: Any, top_n: Any) -> list[str]:
    """The checks :meth:`Reranker.rerank` owes its callers, for providers to share.

    Returns:
        ``documents`` as a list.

    Raises:
        InvalidInputError: ``query`` is not a string; ``documents`` is a string, bytes or not a
            sequence, or holds a non-string; ``top_n`` is not ``None`` nor a positive integer.
    """
    if not isinstance(query, str):
        raise InvalidInputError(f"rerank() takes a string query; got {type(query).__name__}")
    if isinstance(documents, str | bytes) or not isinstance(documents, Sequence):
        raise InvalidInputError(f"rerank() takes a sequence of strings as documents; got {type(documents).__name__}")
    docs = list(documents)
    for i, d in enumerate(docs):
        if not isinstance(d, str):
            raise InvalidInputError(f"rerank() takes string documents; documents[{i}] is a {type(d).__name__}")
    if top_n is not None and (not isinstance(top_n, int) or isinstance(top_n, bool) or top_n < 1):
        raise InvalidInputError(f"top_n must be a positive integer or None; got {top_n!r}")
    return docs


@runtime_checkable
class Reranker(Protocol):
    """Reorders candidates for a query."""

    async def rerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> list[tuple[int, float]]:
        """Rerank ``documents`` for ``query``.

        Returns:
            ``(index into documents, relevance)`` pairs, most relevant first, each index at most
            once, relevances finite floats (their scale is the model's); all documents when
            ``top_n`` is ``None``, else the best ``min(top_n, len(documents))``; ``[]`` for no
            documents.

        Raises:
            InvalidInputError: ``top_n`` below 1, ``documents`` a single string, or a document
                that is not a string.
            ProviderError: the model or its server failed; ProviderTimeoutError past the deadline.
        """
        ...

    async def aclose(self) -> None: ...
