"""What both built-in graph stores share: batch validation, the entity-vector index, ordering."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from engram.core import Entity, GraphBatch, Relation, Scope
from engram.core.errors import InvalidInputError

__all__ = ["EntityIndex", "ScopeTuple", "check_batch", "copy_entity", "copy_relation", "unknown_entities"]

ScopeTuple = tuple[str | None, str | None, str | None]


def utc(dt: datetime | None) -> datetime | None:
    """Aware UTC (a naive time is taken as UTC), or ``None``."""
    if dt is None:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def copy_entity(e: Entity) -> Entity:
    """A copy that shares no mutable state (the embedding list) with ``e``, its times aware UTC."""
    return Entity(
        name=e.name,
        type=e.type,
        user_id=e.user_id,
        agent_id=e.agent_id,
        run_id=e.run_id,
        embedding=[float(x) for x in e.embedding] if e.embedding is not None else None,
        id=e.id,
        key=e.key,
        mentions=e.mentions,
        created_at=utc(e.created_at) or e.created_at,
        updated_at=utc(e.updated_at),
    )


def copy_relation(r: Relation) -> Relation:
    """A copy that shares no mutable state (``memory_ids``) with ``r``, its times aware UTC."""
    return Relation(
        source=r.source,
        relation=r.relation,
        destination=r.destination,
        user_id=r.user_id,
        agent_id=r.agent_id,
        run_id=r.run_id,
        mentions=r.mentions,
        valid_at=utc(r.valid_at),
        invalid_at=utc(r.invalid_at),
        created_at=utc(r.created_at) or r.created_at,
        expired_at=utc(r.expired_at),
        id=r.id,
        source_id=r.source_id,
        destination_id=r.destination_id,
        memory_ids=list(r.memory_ids),
    )


def check_batch(batch: GraphBatch, stored_dims: int | None) -> tuple[int | None, dict[str, np.ndarray]]:
    """Validate what can be validated without the store: embeddings and the batch's own consistency.

    Args:
        batch: the batch to check.
        stored_dims: the embedding length the store already holds (``None`` when it holds none).

    Returns:
        ``(dims, vectors)``: the embedding length of the batch (or ``stored_dims``) and each embedded
        entity's embedding as a ``(dims,)`` float32 array, by entity id.

    Raises:
        InvalidInputError: an embedding that is not a flat sequence of finite floats, that differs in
            length from another of the batch or from ``stored_dims``; two entities of the batch with
            one key in one scope; an entity or relation without an id.
    """
    dims = stored_dims
    vectors: dict[str, np.ndarray] = {}
    slots: dict[tuple[ScopeTuple, str], str] = {}
    for e in batch.entities:
        if not e.id or not e.key:
            raise InvalidInputError(f"entity {e.name!r} needs an id and a key")
        slot = ((e.user_id, e.agent_id, e.run_id), e.key)
        if slots.setdefault(slot, e.id) != e.id:
            raise InvalidInputError(f"entities {slots[slot]} and {e.id} share the key {e.key!r} in one scope")
        if e.embedding is None:
            continue
        try:
            v = np.asarray(e.embedding, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"entity {e.id}: the embedding is not a sequence of floats") from exc
        if v.ndim != 1 or v.size == 0:
            raise InvalidInputError(
                f"entity {e.id}: the embedding must be a non-empty flat sequence of floats"
            )
        if not np.isfinite(v).all():
            raise InvalidInputError(f"entity {e.id}: the embedding has NaN or infinite values")
        if dims is None:
            dims = v.size
        elif v.size != dims:
            held = "this store holds" if stored_dims is not None else "the batch's first embedding has"
            raise InvalidInputError(f"entity {e.id}: embedding has {v.size} values; {held} {dims}")
        vectors[e.id] = v
    for r in batch.relations:
        if not r.id or not r.source_id or not r.destination_id:
            raise InvalidInputError(f"relation {r.triple()} needs an id, a source_id and a destination_id")
    return dims, vectors


def endpoints_outside(batch: GraphBatch) -> set[str]:
    """Entity ids the batch's relations name that are not among the batch's entities."""
    mine = {e.id for e in batch.entities}
    return {i for r in batch.relations for i in (r.source_id, r.destination_id) if i not in mine}


def unknown_entities(missing: Iterable[str]) -> InvalidInputError:
    """The error for relations whose entities are neither stored nor in the batch."""
    names = ", ".join(sorted(missing))
    return InvalidInputError(f"relations name entities that are neither stored nor in the batch: {names}")


def neighbor_order(found: Sequence[tuple[Relation, int]]) -> list[tuple[Relation, int]]:
    """Sort ``(relation, hops)``: fewest hops, then mentions descending, then created_at newest
    first, then id descending."""
    out = sorted(found, key=lambda p: p[0].id, reverse=True)
    out.sort(key=lambda p: (p[1], -p[0].mentions, -p[0].created_at.timestamp()))
    return out


class EntityIndex:
    """Entity embeddings in one float32 matrix (rows L2-normalised), with the scope as integer codes.

    ``top`` is a masked matrix-vector product: the scope filter is one vectorised comparison per
    scope field set, then ``argpartition`` keeps the best rows. Rows are reused after ``drop``.

    Args:
        dims: the embedding length.
    """

    def __init__(self, dims: int) -> None:
        self.dims = dims
        self.vecs = np.zeros((0, dims), dtype=np.float32)
        self.codes = np.zeros((3, 0), dtype=np.int32)
        self.alive = np.zeros(0, dtype=bool)
        self.ids: list[str] = []
        self.row_of: dict[str, int] = {}
        self.free: list[int] = []
        self.code_of: list[dict[str | None, int]] = [{None: 0}, {None: 0}, {None: 0}]

    def __len__(self) -> int:
        return len(self.row_of)

    def _grow(self, need: int) -> None:
        cap = len(self.alive)
        if need <= cap:
            return
        new = max(need, cap + cap // 2, 64)
        vecs = np.zeros((new, self.dims), dtype=np.float32)
        vecs[:cap] = self.vecs
        codes = np.zeros((3, new), dtype=np.int32)
        codes[:, :cap] = self.codes
        alive = np.zeros(new, dtype=bool)
        alive[:cap] = self.alive
        self.vecs, self.codes, self.alive = vecs, codes, alive

    def put(self, entity_id: str, scope: ScopeTuple, vec: Any) -> None:
        """Insert or replace one entity's ``(dims,)`` embedding."""
        row = self.row_of.get(entity_id)
        if row is None:
            if self.free:
                row = self.free.pop()
                self.ids[row] = entity_id
            else:
                row = len(self.ids)
                self.ids.append(entity_id)
                self._grow(row + 1)
            self.row_of[entity_id] = row
        v = np.asarray(vec, dtype=np.float32)
        norm = float(np.linalg.norm(v))
        self.vecs[row] = v / norm if norm > 0 else v
        for k in range(3):
            table = self.code_of[k]
            self.codes[k, row] = table.setdefault(scope[k], len(table))
        self.alive[row] = True

    def drop(self, entity_id: str) -> None:
        """Forget one entity (unknown ids are ignored)."""
        row = self.row_of.pop(entity_id, None)
        if row is not None:
            self.alive[row] = False
            self.free.append(row)

    def top(
        self, scope: Scope, query: Sequence[float], limit: int, min_score: float
    ) -> list[tuple[str, float]]:
        """``(entity id, cosine similarity)`` of the best ``limit`` rows in ``scope`` scoring at
        least ``min_score``, best first (ties by id).

        Raises:
            InvalidInputError: ``query`` is not ``(dims,)`` finite floats.
        """
        q = np.asarray(query, dtype=np.float32)
        if q.shape != (self.dims,) or not np.isfinite(q).all():
            raise InvalidInputError(
                f"the query embedding must be {self.dims} finite floats, got shape {q.shape}"
            )
        if limit < 1:
            return []
        n = len(self.ids)
        mask = self.alive[:n].copy()
        for k, value in enumerate((scope.user_id, scope.agent_id, scope.run_id)):
            if value is not None:
                code = self.code_of[k].get(value)
                if code is None:
                    return []
                mask &= self.codes[k, :n] == code
        rows = np.flatnonzero(mask)
        if rows.size == 0:
            return []
        norm = float(np.linalg.norm(q))
        scores = self.vecs[rows] @ (q / norm if norm > 0 else q)
        keep = scores >= min_score
        rows, scores = rows[keep], scores[keep]
        k = min(limit, rows.size)
        if k == 0:
            return []
        part = np.argpartition(-scores, k - 1)[:k] if k < rows.size else np.arange(rows.size)
        pairs = [
            (self.ids[r], float(s)) for r, s in zip(rows[part].tolist(), scores[part].tolist(), strict=True)
        ]
        pairs.sort(key=lambda p: (-p[1], p[0]))
        return pairs
