from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from engram.core import Entity, GraphBatch, Relation, Scope
from engram.core.errors import InvalidInputError
from pydantic import BaseModel, ConfigDict

from ._common import (
    EntityIndex,
    ScopeTuple,
    check_batch,
    copy_entity,
    copy_relation,
    endpoints_outside,
    neighbor_order,
    unknown_entities,
)


def _scope_of(x: Entity | Relation) -> ScopeTuple:
    return (x.user_id, x.agent_id, x.run_id)


class MemoryGraphStore:
    """Entities and relations in Python dicts, entity embeddings in one numpy matrix. Nothing persists.

    - Indexes by entity (the relations touching it), by memory id (provenance) and by key keep
      ``relations``, ``neighbors`` and ``delete_memories`` from scanning the whole store.
    - ``similar_entities`` is a masked matrix-vector product over L2-normalised rows
      (cosine similarity in [-1, 1]).
    - Every method runs to completion without yielding to the event loop, and ``apply`` validates
      the whole batch before it changes anything, so concurrent tasks never see half a batch.

    URL form: ``memory://``.
    """

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

    capabilities: frozenset[str] = frozenset()

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or self.Config()
        self._init()

    def _init(self) -> None:
        self._entities: dict[str, Entity] = {}
        self._relations: dict[str, Relation] = {}
        self._touching: dict[str, set[str]] = {}  # entity id -> ids of the relations touching it
        self._by_memory: dict[str, set[str]] = {}  # memory id -> ids of the relations it is provenance of
        self._by_key: dict[str, set[str]] = {}  # entity key -> entity ids (any scope)
        self._slots: dict[tuple[ScopeTuple, str], str] = {}  # (exact scope, key) -> entity id
        self._index: EntityIndex | None = None

    @classmethod
    def from_url(cls, url: str) -> MemoryGraphStore:
        """``memory://`` (anything after the scheme is ignored)."""
        return cls()

    # -- writes --------------------------------------------------------------------------------

    async def apply(self, batch: GraphBatch) -> None:
        """Write a batch atomically: deletes first (relations, then entities with the relations that
        touch them), then entities, then relations, each replacing a stored one with its id.

        Raises:
            InvalidInputError: a relation names an entity id that is neither stored (and not deleted
                by this batch) nor in the batch; an embedding of the wrong length or with NaN; an
                entity whose key another entity holds in the same scope. Nothing is changed.
        """
        if not batch:
            return
        _, vectors = check_batch(
            batch, self._index.dims if self._index is not None and len(self._index) else None
        )
        doomed = set(batch.delete_entities)
        missing = {i for i in endpoints_outside(batch) if i not in self._entities or i in doomed}
        if missing:
            raise unknown_entities(missing)
        batch_ids = {e.id: e for e in batch.entities}
        for e in batch.entities:
            owner = self._slots.get((_scope_of(e), e.key))
            if owner is None or owner == e.id or owner in doomed:
                continue
            moved = batch_ids.get(owner)
            if moved is None or (_scope_of(moved), moved.key) == (_scope_of(e), e.key):
                raise InvalidInputError(
                    f"entity {e.id}: the key {e.key!r} is held by entity {owner} in its scope"
                )
        # validated: from here on nothing raises
        for rid in batch.delete_relations:
            self._drop_relation(rid)
        self._drop_entities(doomed)
        for e in batch.entities:
            self._put_entity(copy_entity(e), vectors.get(e.id))
        for r in batch.relations:
            self._put_relation(copy_relation(r))

    def _put_entity(self, e: Entity, vec: Any) -> None:
        old = self._entities.get(e.id)
        if old is not None:
            self._slots.pop((_scope_of(old), old.key), None)
            self._by_key.get(old.key, set()).discard(e.id)
        self._entities[e.id] = e
        self._slots[(_scope_of(e), e.key)] = e.id
        self._by_key.setdefault(e.key, set()).add(e.id)
        if vec is None:
            if self._index is not None:
                self._index.drop(e.id)
            return
        if self._index is None or (not len(self._index) and self._index.dims != vec.size):
            self._index = EntityIndex(vec.size)
        self._index.put(e.id, _scope_of(e), vec)

    def _put_relation(self, r: Relation) -> None:
        self._drop_relation(r.id)
        self._relations[r.id] = r
        for eid in (r.source_id, r.destination_id):
            self._touching.setdefault(eid, set()).add(r.id)
        for m in r.memory_ids:
            self._by_memory.setdefault(m, set()).add(r.id)

    def _drop_relation(self, rid: str) -> Relation | None:
        r = self._relations.pop(rid, None)
        if r is None:
            return None
        for eid in (r.source_id, r.destination_id):
            touching = self._touching.get(eid)
            if touching is not None:
                touching.discard(rid)
                if not touching:
                    del self._touching[eid]
        for m in r.memory_ids:
            rels = self._by_memory.get(m)
            if rels is not None:
                rels.discard(rid)
                if not rels:
                    del self._by_memory[m]
        return r

    def _drop_entities(self, ids: Iterable[str]) -> None:
        for eid in ids:
            for rid in list(self._touching.get(eid, ())):
                self._drop_relation(rid)
            e = self._entities.pop(eid, None)
            if e is None:
                continue
            self._slots.pop((_scope_of(e), e.key), None)
            keyed = self._by_key.get(e.key)
            if keyed is not None:
                keyed.discard(eid)
                if not keyed:
                    del self._by_key[e.key]
            if self._index is not None:
                self._index.drop(eid)

    async def delete_memories(self, memory_ids: Sequence[str]) -> int:
        """Drop these memory ids from every relation's provenance; delete the relations left with
        none, then their endpoint entities that no relation touches any more.

        Returns:
            The number of relations deleted.
        """
        gone = set(memory_ids)
        rids = set().union(*(self._by_memory.get(m, set()) for m in gone)) if gone else set()
        ends: set[str] = set()
        deleted = 0
        for rid in rids:
            r = self._relations[rid]
            kept = [m for m in r.memory_ids if m not in gone]
            if kept:
                for m in gone.intersection(r.memory_ids):
                    self._by_memory[m].discard(rid)
                    if not self._by_memory[m]:
                        del self._by_memory[m]
                r.memory_ids = kept
                continue
            self._drop_relation(rid)
            ends.update((r.source_id, r.destination_id))
            deleted += 1
        self._drop_entities([e for e in ends if e not in self._touching])
        return deleted

    async def delete_scope(self, scope: Scope) -> None:
        """Delete every entity and relation in ``scope`` (and any relation touching those entities)."""
        for r in [r for r in self._relations.values() if scope.matches(*_scope_of(r))]:
            self._drop_relation(r.id)
        self._drop_entities([e.id for e in self._entities.values() if scope.matches(*_scope_of(e))])

    async def reset(self) -> None:
        """Delete everything."""
        self._init()

    # -- reads ---------------------------------------------------------------------------------

    async def entities(
        self,
        scope: Scope,
        *,
        keys: Sequence[str] | None = None,
        ids: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[Entity]:
        """Entities in ``scope`` with these keys and/or ids, ``created_at`` then ``id`` order."""
        if ids is not None:
            pool: Iterable[Entity] = (self._entities[i] for i in set(ids) if i in self._entities)
        elif keys is not None:
            pool = (self._entities[i] for k in set(keys) for i in self._by_key.get(k, ()))
        else:
            pool = self._entities.values()
        wanted = set(keys) if keys is not None and ids is not None else None
        out = [e for e in pool if scope.matches(*_scope_of(e)) and (wanted is None or e.key in wanted)]
        out.sort(key=lambda e: (e.created_at, e.id))
        return [copy_entity(e) for e in out[:limit]]

    async def similar_entities(
        self, scope: Scope, embedding: Sequence[float], *, limit: int = 10, min_score: float = -1.0
    ) -> list[tuple[Entity, float]]:
        """Entities in ``scope`` with an embedding, by cosine similarity (in [-1, 1]) to
        ``embedding`` (dims floats), best first.

        Raises:
            InvalidInputError: the query's length differs from the stored embeddings'.
        """
        if self._index is None or not len(self._index):
            return []
        return [
            (copy_entity(self._entities[i]), s)
            for i, s in self._index.top(scope, embedding, limit, min_score)
        ]

    async def relations(
        self,
        scope: Scope,
        *,
        entity_ids: Sequence[str] | None = None,
        include_expired: bool = False,
        memory_ids: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[Relation]:
        """Relations in ``scope``, narrowed by endpoints and/or provenance, newest first."""
        pools: list[set[str]] = []
        if entity_ids is not None:
            pools.append(
                set().union(*(self._touching.get(i, set()) for i in entity_ids)) if entity_ids else set()
            )
        if memory_ids is not None:
            pools.append(
                set().union(*(self._by_memory.get(m, set()) for m in memory_ids)) if memory_ids else set()
            )
        pool: Iterable[Relation] = (
            (self._relations[i] for i in set.intersection(*pools)) if pools else self._relations.values()
        )
        out = [r for r in pool if (include_expired or r.expired_at is None) and scope.matches(*_scope_of(r))]
        out.sort(key=lambda r: (r.created_at, r.id), reverse=True)
        return [copy_relation(r) for r in out[:limit]]

    async def neighbors(
        self,
        scope: Scope,
        entity_ids: Sequence[str] = (),
        *,
        keys: Sequence[str] = (),
        depth: int = 2,
        limit: int = 50,
    ) -> list[tuple[Relation, int]]:
        """Current relations within ``depth`` hops of the seeds (the entities in ``scope`` with one of
        ``entity_ids`` or ``keys``), walked in both directions (breadth first), each with its hop
        count; see :class:`~engram.core.GraphStore`."""
        if depth < 1 or limit < 1:
            return []
        seeds = {i for i in entity_ids if i in self._entities} | {
            i for k in keys for i in self._by_key.get(k, ())
        }
        seen = {i for i in seeds if scope.matches(*_scope_of(self._entities[i]))}
        frontier = list(seen)
        found: dict[str, int] = {}
        for hop in range(1, depth + 1):
            nxt: list[str] = []
            for eid in frontier:
                for rid in self._touching.get(eid, ()):
                    r = self._relations[rid]
                    if rid in found or r.expired_at is not None or not scope.matches(*_scope_of(r)):
                        continue
                    found[rid] = hop
                    for other in (r.source_id, r.destination_id):
                        if other not in seen:
                            seen.add(other)
                            nxt.append(other)
            if not nxt:
                break
            frontier = nxt
        ordered = neighbor_order([(self._relations[rid], hop) for rid, hop in found.items()])
        return [(copy_relation(r), hop) for r, hop in ordered[:limit]]

    async def aclose(self) -> None:
        """Nothing to release (the data stays until the object is dropped)."""

    async def __aenter__(self) -> MemoryGraphStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
