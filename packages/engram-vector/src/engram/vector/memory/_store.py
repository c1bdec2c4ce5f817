from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
from engram.core import Filter, MemoryItem, Scope, ScoredMemory, VectorQuery, WriteBatch, matches
from engram.core.errors import InvalidInputError
from pydantic import BaseModel, ConfigDict


class MemoryVectorStore:
    """Memories in a Python dict and their embeddings in one numpy matrix.

    Dense search is one matrix-vector product over the rows whose scope matches (a vectorised
    mask); metadata filters are evaluated on those rows only. No lexical search: use ``sqlite``
    (``sqlite:///:memory:`` is also ephemeral) when you want BM25.

    URL form: ``memory://``.
    """

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

    capabilities = frozenset()

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or self.Config()
        self._items: dict[str, MemoryItem] = {}
        self._row: dict[str, int] = {}
        self._ids: list[str | None] = []
        self._free: list[int] = []
        self._used = 0
        self._dims: int | None = None
        self._vecs = np.zeros((0, 0), dtype=np.float32)
        self._scope = np.empty((3, 0), dtype=object)
        self._alive = np.zeros(0, dtype=bool)

    @classmethod
    def from_url(cls, url: str) -> MemoryVectorStore:
        return cls()

    def _grow(self, need: int) -> None:
        cap = len(self._alive)
        if need <= cap:
            return
        new = max(need, cap * 2, 64)
        vecs = np.zeros((new, self._dims or 0), dtype=np.float32)
        vecs[:cap] = self._vecs
        scope = np.empty((3, new), dtype=object)
        scope[:, :cap] = self._scope
        alive = np.zeros(new, dtype=bool)
        alive[:cap] = self._alive
        self._vecs, self._scope, self._alive = vecs, scope, alive
        self._ids.extend([None] * (new - cap))

    async def write(self, batch: WriteBatch) -> None:
        for it in batch.upserts:  # validate the whole batch before changing anything
            if it.embedding is None or it.embedding.ndim != 1:
                raise InvalidInputError(f"memory {it.id}: an upsert needs a (dims,) embedding")
            dims = self._dims or batch.upserts[0].embedding.shape[0]  # type: ignore[union-attr]
            if it.embedding.shape[0] != dims:
                raise InvalidInputError(f"memory {it.id}: embedding has {it.embedding.shape[0]} dims, store has {dims}")
        for mid in batch.deletes:
            row = self._row.pop(mid, None)
            if row is not None:
                del self._items[mid]
                self._alive[row] = False
                self._ids[row] = None
                self._free.append(row)
        for it in batch.upserts:
            if self._dims is None:
                self._dims = int(it.embedding.shape[0])  # type: ignore[union-attr]
                self._vecs = np.zeros((len(self._alive), self._dims), dtype=np.float32)
            row = self._row.get(it.id)
            if row is None:
                if self._free:
                    row = self._free.pop()
                else:
                    row = self._used
                    self._used += 1
                    self._grow(self._used)
                self._row[it.id] = row
            stored = copy.copy(it)
            stored.metadata = copy.deepcopy(it.metadata)
            stored.embedding = None
            self._items[it.id] = stored
            self._vecs[row] = it.embedding
            self._scope[:, row] = (it.user_id, it.agent_id, it.run_id)
            self._alive[row] = True
            self._ids[row] = it.id

    @staticmethod
    def _copy(it: MemoryItem) -> MemoryItem:
        out = copy.copy(it)
        out.metadata = copy.deepcopy(it.metadata)
        return out

    async def get(self, ids: Sequence[str]) -> list[MemoryItem]:
        return [self._copy(self._items[i]) for i in ids if i in self._items]

    def _select(self, scope: Scope | None, filters: Filter | None) -> list[MemoryItem]:
        if scope is None:
            items = list(self._items.values())
        else:
            mask = self._alive.copy()
            for k, value in enumerate((scope.user_id, scope.agent_id, scope.run_id)):
                if value is not None:
                    mask &= self._scope[k] == value
            items = [self._items[self._ids[r]] for r in np.flatnonzero(mask)]  # type: ignore[index]
        return [i for i in items if matches(filters, i)] if filters is not None else items

    async def list(
        self, scope: Scope | None, *, filters: Filter | None = None, limit: int | None = 100, offset: int = 0
    ) -> list[MemoryItem]:
        items = sorted(self._select(scope, filters), key=lambda i: (i.created_at, i.id), reverse=True)
        end = None if limit is None else offset + limit
        return [self._copy(i) for i in items[offset:end]]

    async def count(self, scope: Scope | None = None, *, filters: Filter | None = None) -> int:
        if scope is None and filters is None:
            return len(self._items)
        return len(self._select(scope, filters))

    async def search(self, query: VectorQuery) -> list[ScoredMemory]:
        if query.mode == "lexical" or self._dims is None:
            return []
        if query.embedding is None:
            raise InvalidInputError(f"{query.mode} search needs a query embedding")
        if np.shape(query.embedding) != (self._dims,):
            raise InvalidInputError(
                f"query embedding has shape {np.shape(query.embedding)}; this store holds {self._dims} dims"
            )
        items = self._select(query.scope, query.filters)
        if not items:
            return []
        rows = np.fromiter((self._row[i.id] for i in items), dtype=np.int64, count=len(items))
        scores = self._vecs[rows] @ np.asarray(query.embedding, dtype=np.float32)
        k = min(query.limit, len(rows))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.lexsort((rows[top], -scores[top]))]
        return [ScoredMemory(self._copy(items[t]), float(scores[t]), {"dense": float(scores[t])}) for t in top]

    async def reset(self) -> None:
        self.__init__(self.config)  # type: ignore[misc]

    async def aclose(self) -> None:
        return None
