"""The memory engine: :class:`AsyncMemory`."""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import anyio
from engram.telemetry import (
    ENGRAM_ACTIONS_ADD,
    ENGRAM_ACTIONS_DELETE,
    ENGRAM_ACTIONS_NONE,
    ENGRAM_ACTIONS_UPDATE,
    ENGRAM_ADD_FACTS,
    ENGRAM_ADD_INFER,
    ENGRAM_ADD_MESSAGES,
    ENGRAM_GRAPH_ENTITIES,
    ENGRAM_GRAPH_RELATIONS,
    ENGRAM_RESULTS_COUNT,
    ENGRAM_SEARCH_LIMIT,
    ENGRAM_SEARCH_MISSING,
    ENGRAM_SEARCH_PATHS,
    SpanScope,
    Telemetry,
    get_telemetry,
)

from ._config import MemoryConfig
from ._context import apply_context, resolve_task_type
from ._decay import apply_decay, rehearse
from ._filters import INT64_MAX, INT64_MIN, Filter, parse_filters
from ._fusion import fuse
from ._graph import GraphOutcome, GraphPipeline, apply_graph_boost, holds_at, query_keys
from ._pipeline import InferOutcome, Pipeline
from ._protocols import Embedder, GraphStore, HistoryStore, Reranker, VectorStore
from ._ranking import apply_boosts, expand_neighbors, query_hints
from ._registry import Registry
from ._tracing import NO_SPAN, NoSpan, traced, unwrap
from ._types import (
    Entity,
    Event,
    HistoryEvent,
    MemoryItem,
    Message,
    Relation,
    Scope,
    ScoredMemory,
    VectorQuery,
    WriteBatch,
    content_hash,
    normalize_messages,
    parse_time,
    utcnow,
)
from .errors import ConfigurationError, EngramError, InvalidInputError, MemoryNotFoundError, ProviderError

if TYPE_CHECKING:  # numpy is needed only by providers; importing engram.core stays light
    import numpy as np
    from anyio.abc import TaskGroup

__all__ = ["AsyncMemory", "index_text"]

log = logging.getLogger("engram")
MAX_LIMIT = 10_000


def _check_json_ints(value: Any) -> None:
    if isinstance(value, int) and not isinstance(value, bool):
        if not INT64_MIN <= value <= INT64_MAX:
            raise InvalidInputError(f"metadata integer {value} is outside the signed 64-bit range; use a float")
    elif isinstance(value, Mapping):
        for v in value.values():
            _check_json_ints(v)
    elif isinstance(value, list | tuple):
        for v in value:
            _check_json_ints(v)


def _check_metadata(metadata: Any) -> dict[str, Any]:
    """A JSON-compatible mapping with string keys, finite numbers and 64-bit integers.

    Raises:
        InvalidInputError: anything else.
    """
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping) or not all(isinstance(k, str) for k in metadata):
        raise InvalidInputError("metadata must be a mapping with string keys")
    try:
        json.dumps(metadata, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidInputError(f"metadata must be JSON-serialisable (finite numbers only): {exc}") from None
    _check_json_ints(metadata)
    return dict(metadata)


def _check_limit(limit: Any, name: str = "limit") -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidInputError(f"{name} must be an integer from 1 to {MAX_LIMIT}, got {limit!r}")
    return limit


def _check_id(memory_id: Any) -> str:
    if not isinstance(memory_id, str) or not memory_id or len(memory_id) > 256:
        raise InvalidInputError(f"memory_id must be a non-empty string, got {memory_id!r}")
    return memory_id


def index_text(memory: str, metadata: Mapping[str, Any]) -> str:
    """The text engram embeds for a memory: ``"<speaker>: <memory>"`` when the metadata names a
    speaker, else the memory itself. A turn says "I"; the name tells whose it is. The stored
    text stays verbatim."""
    speaker = metadata.get("speaker")
    return f"{speaker}: {memory}" if isinstance(speaker, str) and speaker.strip() else memory


def _hit_dict(hit: ScoredMemory) -> dict[str, Any]:
    d = hit.item.to_dict()
    d["score"] = hit.score
    d["scores"] = hit.scores
    return d


class AsyncMemory:
    """Long-term memory for agents, async. mem0's method names, parameters and result shapes.

    Providers are built lazily on first use from ``config`` (see :class:`MemoryConfig`); close
    them with ``await memory.aclose()`` or ``async with AsyncMemory(...) as memory``.

    Args:
        config: a :class:`MemoryConfig`, a mapping of its fields, or ``None`` for the defaults.
        registry: where provider names are looked up (default: the installed entry points).
        tracer_provider, meter_provider: OpenTelemetry providers for this memory's spans and
            metrics; ``None`` (default) uses the API's global ones, which are no-ops until an SDK
            is configured (``engram.telemetry.configure_otlp`` or the application's own setup).
            ``config.telemetry=False`` turns both off. See docs/telemetry.md.

    Raises:
        ConfigurationError: the configuration is invalid.
    """

    def __init__(
        self,
        config: MemoryConfig | Mapping[str, Any] | None = None,
        *,
        registry: Registry | None = None,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        clock: Callable[[], datetime] | None = None,
    ):
        self.config = MemoryConfig.parse(config)
        # "Now" for decay and rehearsal: aware UTC; tests pass a controllable clock.
        self._clock: Callable[[], datetime] = clock or utcnow
        self.registry = registry or Registry()
        # Spans and metrics go to these OpenTelemetry providers, else to the API's global ones;
        # config.telemetry=False turns both off (providers are then used unwrapped).
        self._tel: Telemetry | None = (
            get_telemetry(tracer_provider, meter_provider) if self.config.telemetry else None
        )
        # The providers as the engine calls them: wrapped in their tracing proxies when telemetry is
        # on (see _tracing.py); `unwrap` gives the providers themselves.
        self._vector: VectorStore | None = None
        self._embedder: Embedder | None = None
        self._history: HistoryStore | None = None
        self._history_in_store = False
        self._graph: GraphStore | None = None
        self._llm: Any = None
        self._reranker: Reranker | None = None
        self._closed = False

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> AsyncMemory:
        """Same as ``AsyncMemory(config)``; mem0's spelling."""
        return cls(config)

    # -- lifecycle -----------------------------------------------------------------------------

    def _ensure(self) -> None:
        if self._vector is not None:
            return
        if self._closed:
            raise ConfigurationError("this memory has been closed")
        c = self.config
        # The reranker first: an `llm` reranker without an LLM fails before any store is opened.
        reranker = self.registry.create("reranker", c.reranker) if c.reranker is not None else None
        if reranker is not None and getattr(reranker, "needs_llm", False) and c.llm is None:
            raise ConfigurationError(
                "the reranker needs an LLM: configure one for the memory (MemoryConfig.llm) or give "
                "the reranker its own (reranker={'provider': 'llm', 'config': {'llm': ...}})"
            )
        vector: Any = self.registry.create("vector_store", c.vector_store)
        embedder = self.registry.create("embedder", c.embedder)
        llm = self.registry.create("llm", c.llm) if c.llm is not None else None
        if c.history_store is not None:
            history = self.registry.create("history_store", c.history_store)
            in_store, history_spec = history is vector, c.history_store
        elif "history" in getattr(vector, "capabilities", ()) and isinstance(vector, HistoryStore):
            history, in_store, history_spec = vector, True, c.vector_store
        else:
            history_spec = "sqlite:///:memory:"
            history, in_store = self.registry.create("history_store", history_spec), False
        graph = self._make_graph(c.graph_store, vector) if c.graph_store is not None else None
        # Identity and type checks above run on the providers themselves; the engine calls the proxies.
        tel = self._tel
        self._embedder = traced("embedder", embedder, c.embedder, tel)
        self._llm = traced("llm", llm, c.llm, tel)
        if reranker is not None and getattr(reranker, "needs_llm", False):
            reranker.bind_llm(self._llm)
        self._reranker = cast("Reranker | None", traced("reranker", reranker, c.reranker, tel))
        self._history = traced("history_store", history, history_spec, tel)
        self._history_in_store = in_store
        self._graph = traced("graph_store", graph, c.graph_store, tel)
        self._vector = cast("VectorStore", traced("vector_store", vector, c.vector_store, tel))

    def _make_graph(self, spec: Any, vector: Any) -> GraphStore:
        """The graph store; a bare ``"sqlite"`` shares the SQLite vector store's database file."""
        if spec == "sqlite" and isinstance(getattr(vector, "path", None), str) and type(vector).__module__.startswith("engram.vector.sqlite"):
            spec = {"provider": "sqlite", "config": {"path": vector.path}}
        return cast("GraphStore", self.registry.create("graph_store", spec))

    def _operation(self, op: str) -> SpanScope | NoSpan:
        """The span and duration metric of one public operation (a no-op with telemetry off)."""
        return self._tel.operation(op) if self._tel is not None else NO_SPAN

    # What the engine calls (tracing proxies when telemetry is on).
    @property
    def _store(self) -> VectorStore:
        self._ensure()
        assert self._vector is not None
        return self._vector

    @property
    def _emb(self) -> Embedder:
        self._ensure()
        assert self._embedder is not None
        return self._embedder

    @property
    def _hist(self) -> HistoryStore:
        self._ensure()
        assert self._history is not None
        return self._history

    @property
    def vector_store(self) -> VectorStore:
        """The vector store (the provider itself, not the engine's tracing proxy)."""
        return cast("VectorStore", unwrap(self._store))

    @property
    def embedder(self) -> Embedder:
        return cast("Embedder", unwrap(self._emb))

    @property
    def graph_store(self) -> GraphStore | None:
        """The graph store, or ``None`` when the configuration keeps no graph."""
        self._ensure()
        return cast("GraphStore | None", unwrap(self._graph))

    @property
    def history_store(self) -> HistoryStore:
        return cast("HistoryStore", unwrap(self._hist))

    async def aclose(self) -> None:
        """Release every provider (each once, also one serving as two kinds). Safe to call twice."""
        seen: set[int] = set()
        for p in (self._vector, self._history, self._graph, self._embedder, self._llm, self._reranker):
            raw = unwrap(p)
            if raw is not None and id(raw) not in seen:
                seen.add(id(raw))
                await raw.aclose()
        self._vector = self._embedder = self._history = self._graph = self._llm = self._reranker = None
        self._closed = True

    async def __aenter__(self) -> AsyncMemory:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- helpers -------------------------------------------------------------------------------

    async def _embed(self, texts: Sequence[str], kind: str = "document") -> np.ndarray:
        vectors = await self._emb.embed(list(texts), kind=kind)  # type: ignore[arg-type]
        if vectors.shape != (len(texts), self._emb.dims):
            raise ProviderError(
                f"embedder returned shape {vectors.shape}, expected ({len(texts)}, {self._emb.dims})"
            )
        return vectors

    async def _commit(self, batch: WriteBatch) -> None:
        if not (batch.upserts or batch.deletes or batch.archive or batch.events):
            return
        await self._store.write(batch)
        if batch.events and not self._history_in_store:
            await self._hist.add_events(batch.events)

    # -- add -----------------------------------------------------------------------------------

    async def add(
        self,
        messages: Any,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        infer: bool = True,
        memory_type: str | None = None,
    ) -> dict[str, Any]:
        """Remember conversation turns.

        Args:
            messages: a string, a ``{"role", "content"[, "name", "time", "metadata"]}`` mapping, or a
                list of them. A message's own ``metadata`` is merged over the call's.
            user_id, agent_id, run_id: the scope; at least one is required.
            metadata: JSON-compatible mapping stored with every memory this call creates.
            infer: with an LLM configured, let it extract facts from the messages (about the user;
                about the agent when the scope has an ``agent_id`` and no ``user_id``), each with a
                ``memory_type`` and ``category`` in its metadata, and decide ADD / UPDATE / DELETE /
                NONE for each against the scope's related memories (see :mod:`engram.core._pipeline`).
                An UPDATE or DELETE keeps the old version in the archive. Without an LLM, or with
                ``infer=False``, each non-system message is stored verbatim, its role, speaker
                name (``speaker``) and time (``message_time``, ISO 8601) added to its metadata;
                its embedding is of ``"<speaker>: <text>"`` when the speaker is known (see
                :func:`index_text`).
            memory_type: ``"procedural"`` (needs an ``agent_id`` and an LLM) summarises the
                messages, an agent's run, into one procedural memory.

        Returns:
            ``{"results": [{"id", "memory", "event", ["previous_memory"]}, ...]}``: one entry per
            change (``previous_memory`` for an UPDATE). With ``infer`` and an LLM, also
            ``"infer": {"facts": n[, "fallback": why the messages were stored verbatim]
            [, "problems": [what was wrong in the LLM's replies]]}``.

        Raises:
            InvalidScopeError, InvalidMessageError, InvalidInputError: nothing was stored.
            ProviderError: a provider failed; with the SQLite default nothing was stored. (A
                failing LLM never raises here: the messages are stored verbatim instead.)
        """
        with self._operation("add") as span:
            scope = Scope(user_id, agent_id, run_id)
            span.set_scope(scope)
            msgs = normalize_messages(messages)
            if span.recording:
                span.span.set_attributes({ENGRAM_ADD_INFER: bool(infer), ENGRAM_ADD_MESSAGES: len(msgs)})
            base_meta = _check_metadata(metadata)
            if memory_type not in (None, "procedural"):
                raise InvalidInputError(f"memory_type must be None or 'procedural', got {memory_type!r}")
            if memory_type == "procedural" and agent_id is None:
                raise InvalidInputError("memory_type='procedural' summarises an agent's run: give an agent_id")
            self._ensure()
            if memory_type == "procedural" and self._llm is None:
                raise ConfigurationError("memory_type='procedural' needs an LLM; configure one (MemoryConfig.llm)")
            keep = [m for m in msgs if m.role != "system" and m.content.strip()]
            metas = []
            for m in keep:  # validate every message before anything is embedded or stored
                meta = {**base_meta, **_check_metadata(m.metadata)} if m.metadata else dict(base_meta)
                meta["role"] = m.role
                if m.name is not None:
                    meta["speaker"] = m.name
                if m.time is not None:
                    meta["message_time"] = m.time.isoformat()
                metas.append(meta)
            unchanged = 0
            if not keep:
                result: dict[str, Any] = {"results": []}
            elif (infer or memory_type) and self._llm is not None:
                result, unchanged = await self._infer(scope, keep, metas, base_meta, memory_type)
            else:
                batch = await self._verbatim(scope, keep, metas)
                await self._commit(batch)
                result = {"results": [{"id": it.id, "memory": it.memory, "event": "ADD"} for it in batch.upserts]}
            if span.recording:
                span.span.set_attributes(_add_attributes(result, unchanged))
            return result

    async def _infer(
        self, scope: Scope, keep: list[Message], metas: list[dict[str, Any]], base_meta: dict[str, Any],
        memory_type: str | None,
    ) -> tuple[dict[str, Any], int]:
        """The LLM pipeline's add: the result and how many facts changed nothing (NONE)."""
        now = utcnow()
        pipe = Pipeline(self._llm, self._store, self._embed, scope, base_meta, now, self.config.infer.timeout)
        agent = scope.agent_id is not None and scope.user_id is None
        role = "assistant" if agent or memory_type else "user"
        actor = next((m.name for m in keep if m.role == role and m.name), None)
        if memory_type == "procedural":
            out = InferOutcome()
            summary = await pipe.procedural(keep, out)
            if summary is not None:
                vec = (await self._embed([summary]))[0]
                item = pipe._item(summary, vec, {"memory_type": "procedural", "category": "misc"})
                out.batch.upserts.append(item)
                out.batch.events.append(
                    pipe._event(Event.ADD, item.id, None, summary, actor_id=actor, role=role,
                                metadata={"source": "procedural"})
                )
                out.results.append({"id": item.id, "memory": summary, "event": "ADD"})
            await self._finish(scope, keep, metas, out)
            return {"results": out.results, "infer": out.report()}, 0
        # Facts and graph side by side (DESIGN §3, step 5); neither writes until both are done.
        graph_out: GraphOutcome | None = None

        async def graph_side() -> None:
            nonlocal graph_out
            gp = GraphPipeline(
                self._llm, self._graph, self._embed, scope, now, self.config.infer.timeout, self.config.graph
            )
            speaker = actor or scope.user_id or scope.agent_id or scope.run_id or "user"
            graph_out = await gp.run(keep, speaker)

        out = InferOutcome()
        if self._graph is None:
            out = await pipe.run(keep, actor, role)
        else:
            with _unwrap_single():
                async with anyio.create_task_group() as tg:
                    tg.start_soon(graph_side)
                    out = await pipe.run(keep, actor, role)
        if graph_out is None:
            await self._finish(scope, keep, metas, out)
            return {"results": out.results, "infer": out.report()}, out.unchanged
        await self._finish(scope, keep, metas, out, commit=False)
        result: dict[str, Any] = {"results": out.results, "infer": out.report()}
        g = graph_out
        g.link([it.id for it in out.batch.upserts if it.archived_at is None])
        for problem in g.problems:
            log.warning("engram add (graph): %s", problem)
        if g.failed:
            log.warning("engram add (graph): %s", g.failed)

        async def apply_graph() -> None:
            try:
                if g.batch:
                    await self._graph.apply(g.batch)  # type: ignore[union-attr]
            except EngramError as exc:  # the memories are kept; the report says the graph missed this add
                g.failed = f"graph write failed ({type(exc).__name__}: {exc}); the graph was not changed"
                g.added, g.closed, g.mentioned = [], [], []
                log.warning("engram add (graph): %s", g.failed)

        with _unwrap_single():
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._commit, out.batch)
                tg.start_soon(apply_graph)
        rep_ = g.report()
        result["relations"] = {"added": rep_.pop("added"), "closed": rep_.pop("closed")}
        result["infer"]["graph"] = rep_
        return result, out.unchanged

    async def _finish(
        self, scope: Scope, keep: list[Message], metas: list[dict[str, Any]], out: InferOutcome, commit: bool = True
    ) -> None:
        """Log the pipeline's problems, store the messages verbatim when it fell back, and commit."""
        for problem in out.problems:
            log.warning("engram add: %s", problem)
        if out.fallback is not None:
            log.warning("engram add: %s", out.fallback)
            out.batch = await self._verbatim(scope, keep, metas)
            out.results = [{"id": it.id, "memory": it.memory, "event": "ADD"} for it in out.batch.upserts]
        if commit:
            await self._commit(out.batch)

    async def _verbatim(self, scope: Scope, keep: list[Message], metas: list[dict[str, Any]]) -> WriteBatch:
        """Each message as one memory, with its ADD event."""
        vectors = await self._embed([index_text(m.content, meta) for m, meta in zip(keep, metas, strict=True)])
        now = utcnow()
        batch = WriteBatch()
        for i, (m, meta, vec) in enumerate(zip(keep, metas, vectors, strict=True)):
            item = MemoryItem(
                id=str(uuid.uuid4()), memory=m.content, hash=content_hash(m.content),
                user_id=scope.user_id, agent_id=scope.agent_id, run_id=scope.run_id,
                # one microsecond apart, so newest-first listings keep the conversation's order
                metadata=meta, created_at=now + timedelta(microseconds=i), embedding=vec,
            )
            batch.upserts.append(item)
            batch.events.append(
                HistoryEvent(
                    id=str(uuid.uuid4()), memory_id=item.id, event=Event.ADD, old_memory=None,
                    new_memory=m.content, user_id=scope.user_id, agent_id=scope.agent_id,
                    run_id=scope.run_id, actor_id=m.name, role=m.role, created_at=now,
                )
            )
        return batch

    # -- search --------------------------------------------------------------------------------

    async def search(
        self,
        query: str,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        filters: Mapping[str, Any] | None = None,
        limit: int = 10,
        threshold: float | None = None,
        include_archived: bool = False,
        task_type: str | None = None,
    ) -> dict[str, Any]:
        """Recall the memories that best answer ``query`` in a scope.

        Dense recall (cosine similarity of embeddings) and lexical recall (BM25, where the store
        has it) run concurrently, each fetching ``config.search.candidates`` hits, and are fused
        with ``config.search.fusion`` (relative score fusion by default, see :func:`fuse`). With a
        graph store, entity recall (the question's names) and graph recall (relations within
        ``config.graph.depth`` hops of them) run in the same task group, and memories that mention
        the matched entities or stated the recalled relations are boosted (formula in
        :mod:`engram.core._graph`). Each path runs under ``config.search.path_timeout``; a path
        that fails or times out is left out and named in ``"missing"``.

        Args:
            query: any string; it is never parsed as a query language.
            filters: metadata filter mapping (see :mod:`engram.core._filters` for the syntax).
            limit: at most this many results (1-10000).
            threshold: drop results whose final score is below it (default
                ``config.search.threshold``).
            include_archived: rank archived versions (superseded or deleted by the pipeline, or
                superseded by ``update``) with the active memories. Without it they are recalled
                only as a fallback, when the best active dense score is below
                ``config.search.archive_floor``.
            task_type: the task behind the query, for context-aware weighting
                (``config.search.context``): one of ``engram.core.TASK_TYPES``
                (``"troubleshooting"``, ``"design"``, ``"factual_lookup"``, ``"planning"``,
                ``"general"``), ``"auto"`` to classify the query, or ``None`` (classified only when
                ``search.context.enabled``; otherwise no weighting).

        After fusion: neighbour expansion and the speaker / "when" / time-window boosts
        (``config.search.boost``, :mod:`engram.core._ranking`); the reranker when one is
        configured (``config.reranker``, best ``search.rerank.candidates`` hits, one call); context
        weighting; decay (``config.search.decay``, off by default); then the threshold and the
        limit. With decay on, the results returned are rehearsed in stores that can.

        Returns:
            ``{"results": [memory dict + "score" (fused, in [0, 1] for rsf/dbsf, plus the boosts,
            times the context weight and the decay factor when those are on) + "scores" (per path:
            dense cosine, lexical BM25, entity share, graph 1/hops; and what was applied:
            neighbor, speaker, temporal, time_window, rerank, context, decay);
            archived versions carry "archived": true, "archived_at" and "archive_reason"],
            "relations": [current relations near the question's entities, fewest hops first, each
            {"source", "relationship", "destination", "hops", times...}] (empty without a graph
            store)}``, plus ``"missing": {path: why}`` when a path failed or timed out, and
            ``"task_type"`` when context weighting used one.

        Raises:
            InvalidScopeError, InvalidFilterError, InvalidInputError: bad arguments (an unknown
                ``task_type`` too).
            ConfigurationError: ``search.context.classifier = "llm"`` or an ``llm`` reranker
                without an LLM.
            ProviderError: every path failed (the first failure is raised).
        """
        with self._operation("search") as span:
            scope = Scope(user_id, agent_id, run_id)
            span.set_scope(scope)
            if not isinstance(query, str):
                raise InvalidInputError(f"query must be a string, got {type(query).__name__}")
            limit = _check_limit(limit)
            span.set(ENGRAM_SEARCH_LIMIT, limit)
            parsed = parse_filters(filters)
            if threshold is None:
                threshold = self.config.search.threshold
            if threshold is not None and (
                isinstance(threshold, bool) or not isinstance(threshold, int | float) or math.isnan(threshold)
            ):
                raise InvalidInputError(f"threshold must be a number, got {threshold!r}")
            sc = self.config.search
            self._ensure()
            task = await resolve_task_type(query, task_type, sc.context, self._llm)
            recall = await self._recall(query, scope, parsed, limit, include_archived)
            hits = recall.hits
            if self._reranker is not None and len(hits) > 1:
                try:
                    hits = await self._rerank(query, hits, max(limit, sc.rerank.candidates))
                except (EngramError, TimeoutError) as exc:  # as a failed recall path: fused order stands
                    recall.missing["rerank"] = f"{type(exc).__name__}: {exc}"
                    log.warning("engram search: the reranker failed, fused order kept (%s: %s)", type(exc).__name__, exc)
            hits = apply_context(hits, task, sc.context)
            now = self._clock()
            hits = apply_decay(hits, sc.decay, now)
            if threshold is not None:
                hits = [h for h in hits if h.score >= threshold]
            hits = hits[:limit]
            await rehearse(self._store, hits, sc.decay, now)
            out: dict[str, Any] = {
                "results": [_hit_dict(h) for h in hits],
                "relations": [r.to_dict(hops) for r, hops in recall.relations[: self.config.graph.relations]],
            }
            if recall.missing:
                out["missing"] = recall.missing
            if task is not None:
                out["task_type"] = task
            if span.recording:
                span.span.set_attributes({ENGRAM_SEARCH_PATHS: recall.ran, ENGRAM_RESULTS_COUNT: len(out["results"])})
                if recall.missing:
                    span.set(ENGRAM_SEARCH_MISSING, sorted(recall.missing))
            return out

    async def _rerank(self, query: str, hits: list[ScoredMemory], n: int) -> list[ScoredMemory]:
        """Reorder the best ``n`` hits with the reranker; the rest stay below them in fused order.

        A reranked hit keeps the reranker's relevance in ``scores["rerank"]``; its score becomes
        ``lo + (hi - lo) * r`` where ``r`` is the relevance min-max normalised over the reranked
        hits and ``lo``/``hi`` their lowest/highest fused score, so scores stay on the fusion's
        scale (a threshold means the same with or without a reranker) and above the hits not
        reranked.
        """
        assert self._reranker is not None
        head, tail = hits[:n], hits[n:]
        ranked = await self._reranker.rerank(query, [h.item.memory for h in head])
        if not ranked:  # a reranker outside the protocol: nothing to go by
            return hits
        lo, hi = min(h.score for h in head), max(h.score for h in head)
        rel = [r for _, r in ranked]
        rmin, rmax = min(rel), max(rel)
        out: list[ScoredMemory] = []
        for i, r in ranked:
            h = head[i]
            h.scores["rerank"] = r
            if rmax > rmin:  # all relevances equal: the reranker told nothing, fused scores stay
                h.score = lo + (hi - lo) * (r - rmin) / (rmax - rmin)
            out.append(h)
        if rmax <= rmin:
            out.sort(key=lambda h: -h.score)
        seen = {i for i, _ in ranked}
        floor = min(h.score for h in out)
        for i, h in enumerate(head):  # a reranker outside the protocol dropped some: they go last
            if i not in seen:
                h.score = min(h.score, floor)
                out.append(h)
        return [*out, *tail]

    async def _recall(
        self, query: str, scope: Scope, filters: Filter | None, limit: int, include_archived: bool = False
    ) -> _Recall:
        """Every recall path in one task group, each under ``search.path_timeout``; a path that
        fails or times out is reported in ``missing`` and the others answer. Raises the first
        failure only when no path answered."""
        sc, gc = self.config.search, self.config.graph
        k = max(limit, sc.candidates)
        store, graph = self._store, self._graph
        caps = getattr(store, "capabilities", ())
        lexical = "lexical" in caps and bool(query.strip())
        rec = _Recall()
        errors: dict[str, BaseException] = {}
        vector: Any = None
        try:
            vector = (await self._embed([query], "query"))[0]
        except (EngramError, TimeoutError) as exc:
            errors["dense"] = exc
        keys = query_keys(query) if graph is not None else []
        entities: dict[str, Entity] = {}

        async def guarded(path: str, fn: Callable[[], Awaitable[None]]) -> None:
            try:
                with anyio.fail_after(sc.path_timeout):
                    await fn()
            except TimeoutError as exc:
                errors[path] = TimeoutError(f"timed out after {sc.path_timeout:g} s")
                errors[path].__cause__ = exc
            except EngramError as exc:
                errors[path] = exc

        async def paths(archived: bool) -> dict[str, list[ScoredMemory]]:
            found: dict[str, list[ScoredMemory]] = {}

            def memory_path(path: str, q: VectorQuery) -> Callable[[], Awaitable[None]]:
                async def run() -> None:
                    found[path] = await store.search(q)
                return run

            async def entity_path() -> None:
                g = graph
                assert g is not None
                async with anyio.create_task_group() as tg:

                    async def by_name() -> None:
                        for e in await g.entities(scope, keys=keys):
                            entities[e.id] = e

                    async def by_vector(min_score: float) -> None:
                        hits = await g.similar_entities(scope, vector.tolist(), limit=5, min_score=min_score)
                        for e, _ in hits:
                            entities.setdefault(e.id, e)

                    if keys:
                        tg.start_soon(by_name)
                    if vector is not None and gc.query_entity_threshold is not None:
                        tg.start_soon(by_vector, gc.query_entity_threshold)

            async def graph_path() -> None:
                assert graph is not None
                rec.relations = await graph.neighbors(scope, keys=keys, depth=gc.depth, limit=max(gc.relations, k))

            def start(tg: TaskGroup, path: str, fn: Callable[[], Awaitable[None]]) -> None:
                if path not in rec.ran:
                    rec.ran.append(path)
                tg.start_soon(guarded, path, fn)

            with _unwrap_single():
                async with anyio.create_task_group() as tg:
                    if vector is not None:
                        start(tg, "dense", memory_path("dense", VectorQuery(scope, vector, query, filters, k, "dense", archived)))
                    if lexical:
                        start(tg, "lexical", memory_path("lexical", VectorQuery(scope, None, query, filters, k, "lexical", archived)))
                    if graph is not None and not archived:
                        start(tg, "entity", entity_path)
                        if keys:
                            start(tg, "graph", graph_path)
            return found

        found = await paths(False)
        if "archive" in caps and "dense" not in errors:
            best = max((h.score for h in found.get("dense", ())), default=-math.inf)
            if include_archived or (sc.archive_floor is not None and best < sc.archive_floor):
                rec.ran.append("archive")
                old = await paths(True)
                for path, hits in old.items():  # one ranking per path, active and archived together
                    merged = sorted([*found.get(path, ()), *hits], key=lambda h: -h.score)
                    found[path] = merged[:k]
        if errors and not found and not rec.relations and not entities:
            first = errors.get("dense") or next(iter(errors.values()))
            raise first
        rec.hits = fuse_hits(found, sc.fusion.model_dump())
        if graph is not None:
            rec.hits = apply_graph_boost(rec.hits, list(entities.values()), rec.relations, gc.entity_boost,
                                         gc.graph_boost)
        if sc.boost.neighbors > 0 and "neighbors" in caps and rec.hits:
            ids = [h.item.id for h in rec.hits[:k] if h.item.archived_at is None]
            adjacent: dict[str, list[MemoryItem]] = {}

            async def neighbor_path() -> None:
                adjacent.update(await store.neighbors(scope, ids, filters=filters))

            if ids:
                rec.ran.append("neighbors")
                await guarded("neighbors", neighbor_path)
                rec.hits = expand_neighbors(rec.hits, adjacent, sc.boost.neighbors)
        scale = 1.0 if sc.fusion.method != "rrf" or not rec.hits else max(h.score for h in rec.hits)
        rec.hits = apply_boosts(rec.hits, query_hints(query, self._clock()), sc.boost, scale)
        rec.missing = {p: f"{type(e).__name__}: {e}" for p, e in errors.items()}
        for p, e in errors.items():
            log.warning("engram search: the %s path is missing (%s: %s)", p, type(e).__name__, e)
        return rec

    # -- read ----------------------------------------------------------------------------------

    async def get(self, memory_id: str) -> dict[str, Any] | None:
        """One memory as a dict, or ``None`` when no memory has that id."""
        with self._operation("get") as span:
            items = await self._store.get([_check_id(memory_id)])
            span.set(ENGRAM_RESULTS_COUNT, len(items))
            return items[0].to_dict() if items else None

    async def get_all(
        self,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        filters: Mapping[str, Any] | None = None,
        limit: int = 100,
        include_archived: bool = False,
    ) -> dict[str, Any]:
        """The scope's memories matching ``filters``, newest first: ``{"results": [...]}``.

        With ``include_archived``, the archived versions follow (newest archived first, marked
        ``"archived": true``), up to ``limit`` in all."""
        with self._operation("get_all") as span:
            scope = Scope(user_id, agent_id, run_id)
            span.set_scope(scope)
            parsed, limit = parse_filters(filters), _check_limit(limit)
            items = await self._store.list(scope, filters=parsed, limit=limit)
            if include_archived and len(items) < limit and "archive" in getattr(self._store, "capabilities", ()):
                items += await self._store.list(scope, filters=parsed, limit=limit - len(items), archived=True)
            out: dict[str, Any] = {"results": [i.to_dict() for i in items]}
            if self._graph is not None:  # as mem0 does when a graph is configured
                out["relations"] = [r.to_dict() for r in await self._graph.relations(scope, limit=limit)]
            span.set(ENGRAM_RESULTS_COUNT, len(items))
            return out

    async def get_graph(
        self,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        include_expired: bool = False,
        at: Any = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """The scope's entities and relations.

        Args:
            include_expired: also the relations a newer one contradicted (closed intervals).
            at: a time (datetime, ISO 8601 string or POSIX seconds): only the relations that held
                in the world then (``valid_at <= at < invalid_at``; a relation with no ``valid_at``
                counts from when engram learned it), current or closed. Answers "where did Alice
                live in 2023?".
            limit: at most this many relations (newest first); all when ``None``.

        Returns:
            ``{"entities": [{"id", "name", "type", "mentions", "created_at", ...}], "relations":
            [relation dicts, newest first]}``; both empty without a graph store.

        Raises:
            InvalidInputError: ``at`` is not a time, or a bad limit.
        """
        with self._operation("get_graph") as span:
            scope = Scope(user_id, agent_id, run_id)
            span.set_scope(scope)
            if limit is not None:
                limit = _check_limit(limit)
            when = None
            if at is not None:
                try:
                    when = parse_time(at)
                except ValueError as exc:
                    raise InvalidInputError(f"at: {exc}") from None
            self._ensure()
            graph = self._graph
            if graph is None:
                return {"entities": [], "relations": []}
            ents, rels = await graph.entities(scope), await graph.relations(
                scope, include_expired=include_expired or when is not None, limit=None if when else limit
            )
            if when is not None:
                rels = holds_at(rels, when)[:limit]
            if span.recording:
                span.span.set_attributes({ENGRAM_GRAPH_ENTITIES: len(ents), ENGRAM_GRAPH_RELATIONS: len(rels)})
            return {"entities": [e.to_dict() for e in ents], "relations": [r.to_dict() for r in rels]}

    async def count(
        self, *, user_id: str | None = None, agent_id: str | None = None, run_id: str | None = None
    ) -> int:
        """How many memories the scope holds; every memory when no id is given."""
        with self._operation("count") as span:
            given = (user_id, agent_id, run_id)
            scope = Scope(user_id, agent_id, run_id) if any(v is not None for v in given) else None
            span.set_scope(scope)
            return await self._store.count(scope)

    async def history(self, memory_id: str) -> list[dict[str, Any]]:
        """Every change to one memory, oldest first (kept after the memory is deleted)."""
        with self._operation("history") as span:
            events = await self._hist.history(_check_id(memory_id))
            span.set(ENGRAM_RESULTS_COUNT, len(events))
            return [e.to_dict() for e in events]

    # -- change --------------------------------------------------------------------------------

    async def update(self, memory_id: str, data: str, *, metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Replace a memory's text (re-embedded); ``metadata`` keys, when given, are merged in.
        The old version is kept in the archive (``"superseded"``) where the store has one.

        Returns:
            ``{"id", "memory", "event": "UPDATE", "previous_memory"}``.

        Raises:
            MemoryNotFoundError: no memory has that id. InvalidInputError: empty or non-string data.
        """
        with self._operation("update"):
            _check_id(memory_id)
            if not isinstance(data, str) or not data.strip():
                raise InvalidInputError("data must be a non-empty string")
            extra = _check_metadata(metadata)
            items = await self._store.get([memory_id])
            if not items:
                raise MemoryNotFoundError(f"no memory with id {memory_id!r}")
            old = items[0]
            vector = (await self._embed([index_text(data, {**old.metadata, **extra})]))[0]
            now = utcnow()
            new = MemoryItem(
                id=old.id, memory=data, hash=content_hash(data), user_id=old.user_id, agent_id=old.agent_id,
                run_id=old.run_id, metadata={**old.metadata, **extra}, created_at=old.created_at,
                updated_at=now, embedding=vector,
            )
            event = HistoryEvent(
                id=str(uuid.uuid4()), memory_id=old.id, event=Event.UPDATE, old_memory=old.memory, new_memory=data,
                user_id=old.user_id, agent_id=old.agent_id, run_id=old.run_id, created_at=now,
            )
            archive = [(old.id, "superseded")] if "archive" in getattr(self._store, "capabilities", ()) else []
            await self._commit(WriteBatch(upserts=[new], events=[event], archive=archive))
            return {"id": old.id, "memory": data, "event": "UPDATE", "previous_memory": old.memory}

    async def delete(self, memory_id: str) -> dict[str, Any]:
        """Delete one memory and its archived versions, as a user asking to forget expects; its
        history events stay (as in mem0). (The LLM pipeline's DELETE archives instead.) In the
        graph, the relations it was the only provenance of go too, with the entities left unused.

        Raises:
            MemoryNotFoundError: no memory has that id.
        """
        with self._operation("delete"):
            items = await self._store.get([_check_id(memory_id)])
            if not items:
                raise MemoryNotFoundError(f"no memory with id {memory_id!r}")
            if self._graph is not None:  # first, so a failure leaves the memory to delete again
                await self._graph.delete_memories([memory_id])
            await self._commit(WriteBatch(deletes=[memory_id], events=[_delete_event(items[0])]))
            return {"id": memory_id, "event": "DELETE", "message": "Memory deleted successfully!"}

    async def delete_all(
        self, *, user_id: str | None = None, agent_id: str | None = None, run_id: str | None = None
    ) -> dict[str, Any]:
        """Delete every memory in the scope, with its archived versions (one DELETE history event
        per active memory; the history itself stays), and every entity and relation of the scope.

        Returns:
            ``{"deleted": n, "message": ...}``.
        """
        with self._operation("delete_all") as span:
            scope = Scope(user_id, agent_id, run_id)
            span.set_scope(scope)
            store = self._store
            items = await store.list(scope, limit=None)
            ids = [i.id for i in items]
            if "archive" in getattr(store, "capabilities", ()):  # archived versions go too
                ids += sorted({i.id for i in await store.list(scope, limit=None, archived=True)} - set(ids))
            if self._graph is not None:  # every entity and relation of the scope, stated by a memory or not
                await self._graph.delete_scope(scope)
            if ids:
                await self._commit(WriteBatch(deletes=ids, events=[_delete_event(i) for i in items]))
            span.set(ENGRAM_RESULTS_COUNT, len(items))
            return {"deleted": len(items), "message": f"Deleted {len(items)} memories"}

    async def reset(self) -> None:
        """Delete every memory, all history and the whole graph, in every scope."""
        with self._operation("reset"):
            self._ensure()
            if self._graph is not None:
                await self._graph.reset()
            await self._store.reset()
            if not self._history_in_store:
                await self._hist.reset()

    async def import_items(self, items: Sequence[MemoryItem]) -> int:
        """Store memories as given (ids, times, metadata kept; embeddings computed when missing).

        Existing memories with the same id are replaced. Each gets an ADD history event marked
        ``{"source": "import"}``.

        Returns:
            how many were written.
        """
        with self._operation("import") as span:
            todo = [i for i in items if i.embedding is None]
            if todo:
                vectors = await self._embed([index_text(i.memory, i.metadata) for i in todo])
                for it, vec in zip(todo, vectors, strict=True):
                    it.embedding = vec
            now = utcnow()
            batch = WriteBatch(upserts=list(items))
            for it in items:
                batch.events.append(
                    HistoryEvent(
                        id=str(uuid.uuid4()), memory_id=it.id, event=Event.ADD, old_memory=None, new_memory=it.memory,
                        user_id=it.user_id, agent_id=it.agent_id, run_id=it.run_id,
                        actor_id=it.metadata.get("speaker"), role=it.metadata.get("role"), created_at=now,
                        metadata={"source": "import"},
                    )
                )
            await self._commit(batch)
            span.set(ENGRAM_RESULTS_COUNT, len(items))
            return len(items)

    async def export_items(self, scope: Scope | None = None) -> list[MemoryItem]:
        """Every memory in the scope (all scopes when ``None``), oldest first."""
        with self._operation("export") as span:
            span.set_scope(scope)
            items = await self._store.list(scope, limit=None)
            span.set(ENGRAM_RESULTS_COUNT, len(items))
            return list(reversed(items))


@contextmanager
def _unwrap_single() -> Iterator[None]:
    """Re-raise a task group's lone exception as itself, so callers see the error they would
    without the task group (a ProviderError stays a ProviderError)."""
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1 and not isinstance(group.exceptions[0], BaseExceptionGroup):
            raise group.exceptions[0] from None
        raise


@dataclass(slots=True)
class _Recall:
    hits: list[ScoredMemory] = field(default_factory=list)
    relations: list[tuple[Relation, int]] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)
    ran: list[str] = field(default_factory=list)  # the recall paths that ran, for telemetry


def _add_attributes(result: Mapping[str, Any], unchanged: int) -> dict[str, Any]:
    """The add span's outcome attributes: what was done, per event, and how many results."""
    events = [r.get("event") for r in result["results"]]
    attrs: dict[str, Any] = {
        ENGRAM_ACTIONS_ADD: events.count("ADD"), ENGRAM_ACTIONS_UPDATE: events.count("UPDATE"),
        ENGRAM_ACTIONS_DELETE: events.count("DELETE"), ENGRAM_ACTIONS_NONE: unchanged,
        ENGRAM_RESULTS_COUNT: len(events),
    }
    infer = result.get("infer")
    if isinstance(infer, Mapping) and isinstance(infer.get("facts"), int):
        attrs[ENGRAM_ADD_FACTS] = infer["facts"]
    return attrs


def _delete_event(item: MemoryItem) -> HistoryEvent:
    return HistoryEvent(
        id=str(uuid.uuid4()), memory_id=item.id, event=Event.DELETE, old_memory=item.memory, new_memory=None,
        user_id=item.user_id, agent_id=item.agent_id, run_id=item.run_id,
    )


def _version_key(item: MemoryItem) -> str:
    """One key per stored version: an UPDATE keeps the memory's id, so the active version and its
    archived ones share it and must not be fused into one hit."""
    return item.id if item.archived_at is None else f"{item.id}@{item.archived_at.isoformat()}"


def fuse_hits(found: Mapping[str, Sequence[ScoredMemory]], fusion: Mapping[str, Any]) -> list[ScoredMemory]:
    """Fuse per-path hits by memory version (id, and archive time for an archived version) with
    :func:`~engram.core.fuse`; keeps each path's raw score.

    ``fusion`` holds :class:`FusionConfig`'s fields. The final score is always on the fusion's
    scale, also when only one path found anything, so a threshold means the same on every query.
    """
    paths = {p: h for p, h in found.items() if h}
    if not paths:
        return []
    by_id: dict[str, ScoredMemory] = {}
    for path, hits in paths.items():
        for h in hits:
            prev = by_id.setdefault(_version_key(h.item), ScoredMemory(h.item, 0.0, {}))
            prev.scores[path] = h.score
    weights = {p: fusion.get(f"{p}_weight", 1.0) for p in paths}
    ranked = fuse(
        {p: [(_version_key(h.item), h.score) for h in hits] for p, hits in paths.items()},
        weights, method=fusion.get("method", "rsf"), rrf_k=fusion.get("rrf_k", 60),
    )
    out = []
    for mid, score in ranked:
        hit = by_id[mid]
        hit.score = score
        out.append(hit)
    return out
