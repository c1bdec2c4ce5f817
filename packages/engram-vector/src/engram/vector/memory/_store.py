from __future__ import annotations

import bisect
import copy
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
from engram.core import Filter, MemoryItem, Scope, ScoredMemory, VectorQuery, WriteBatch, matches, utcnow
from engram.core._decay import check_access_time
from engram.core.errors import InvalidInputError
from pydantic import BaseModel, ConfigDict


class MemoryVectorStore:
    """Memories in Python dicts and their embeddings in one numpy matrix.

    Dense search is one matrix-vector product over the rows whose scope matches (a vectorised
    mask over integer codes of the scope fields); metadata filters are evaluated on those rows only. Archived versions (see
    :class:`~engram.core.WriteBatch`) stay in the matrix, flagged. No lexical search: use
    ``sqlite`` (``sqlite:///:memory:`` is also ephemeral) when you want BM25.

    URL form: ``memory://``.
    """

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

    capabilities = frozenset({"archive", "rehearsal", "neighbors", "substring_filters", "string_range_filters"})

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or self.Config()
        self._items: dict[int, MemoryItem] = {}  # row -> stored item (active or archived)
        self._active: dict[str, int] = {}  # id -> row of its active version
        self._versions: dict[str, list[int]] = {}  # id -> rows of its archived versions
        self._free: list[int] = []
        self._used = 0
        self._dims: int | None = None
        self._vecs = np.zeros((0, 0), dtype=np.float32)
        self._codes = np.zeros((3, 0), dtype=np.int32)  # scope fields as integer codes (0 = None)
        self._code_of: list[dict[str | None, int]] = [{None: 0}, {None: 0}, {None: 0}]
        self._alive = np.zeros(0, dtype=bool)
        self._archived = np.zeros(0, dtype=bool)

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
        codes = np.zeros((3, new), dtype=np.int32)
        codes[:, :cap] = self._codes
        alive = np.zeros(new, dtype=bool)
        alive[:cap] = self._alive
        archived = np.zeros(new, dtype=bool)
        archived[:cap] = self._archived
        self._vecs, self._codes, self._alive, self._archived = vecs, codes, alive, archived

    def _drop(self, row: int) -> None:
        del self._items[row]
        self._alive[row] = False
        self._free.append(row)

    async def write(self, batch: WriteBatch) -> None:
        dims = self._dims
        for it in batch.upserts:  # validate the whole batch before changing anything
            if it.embedding is None or it.embedding.ndim != 1:
                raise InvalidInputError(f"memory {it.id}: an upsert needs a (dims,) embedding")
            dims = dims or int(it.embedding.shape[0])
            if it.embedding.shape[0] != dims:
                raise InvalidInputError(f"memory {it.id}: embedding has {it.embedding.shape[0]} dims, store has {dims}")
            if not np.isfinite(it.embedding).all():
                raise InvalidInputError(f"memory {it.id}: embedding has NaN or infinite values")
        for mid in batch.deletes:  # purge every version
            row = self._active.pop(mid, None)
            if row is not None:
                self._drop(row)
            for row in self._versions.pop(mid, []):
                self._drop(row)
        now = utcnow()
        for mid, reason in batch.archive:
            row = self._active.pop(mid, None)
            if row is not None:
                item = self._items[row]
                item.archived_at, item.archive_reason = now, reason
                self._archived[row] = True
                self._versions.setdefault(mid, []).append(row)
        for it in batch.upserts:
            if self._dims is None:
                self._dims = int(it.embedding.shape[0])  # type: ignore[union-attr]
                self._vecs = np.zeros((len(self._alive), self._dims), dtype=np.float32)
            row = self._active.get(it.id)
            if row is None:
                if self._free:
                    row = self._free.pop()
                else:
                    row = self._used
                    self._used += 1
                    self._grow(self._used)
                self._active[it.id] = row
            stored = copy.copy(it)
            stored.metadata = copy.deepcopy(it.metadata)
            stored.embedding = None
            stored.archived_at = stored.archive_reason = None
            self._items[row] = stored
            self._vecs[row] = it.embedding
            for k, value in enumerate((it.user_id, it.agent_id, it.run_id)):
                self._codes[k, row] = self._code_of[k].setdefault(value, len(self._code_of[k]))
            self._alive[row] = True
            self._archived[row] = False

    @staticmethod
    def _copy(it: MemoryItem) -> MemoryItem:
        out = copy.copy(it)
        out.metadata = copy.deepcopy(it.metadata)
        return out

    async def get(self, ids: Sequence[str]) -> list[MemoryItem]:
        return [self._copy(self._items[self._active[i]]) for i in ids if i in self._active]

    def _select(self, scope: Scope | None, filters: Filter | None, archived: bool = False) -> list[int]:
        return self._rows(scope, filters, archived).tolist()

    def _rows(self, scope: Scope | None, filters: Filter | None, archived: bool = False) -> np.ndarray:
        """Rows (int64) of live memories in the scope, active or archived, matching the filter."""
        n = self._used
        mask = self._alive[:n] & (self._archived[:n] if archived else ~self._archived[:n])
        if scope is not None:
            for k, value in enumerate((scope.user_id, scope.agent_id, scope.run_id)):
                if value is not None:
                    code = self._code_of[k].get(value)
                    if code is None:
                        return np.zeros(0, dtype=np.int64)
                    mask &= self._codes[k, :n] == code
        rows = np.flatnonzero(mask)
        if filters is not None:
            rows = np.asarray([r for r in rows.tolist() if matches(filters, self._items[r])], dtype=np.int64)
        return rows

    async def list(
        self,
        scope: Scope | None,
        *,
        filters: Filter | None = None,
        limit: int | None = 100,
        offset: int = 0,
        archived: bool = False,
    ) -> list[MemoryItem]:
        items = [self._items[r] for r in self._select(scope, filters, archived)]
        key = (lambda i: (i.archived_at, i.id)) if archived else (lambda i: (i.created_at, i.id))
        items.sort(key=key, reverse=True)
        end = None if limit is None else offset + limit
        return [self._copy(i) for i in items[offset:end]]

    async def neighbors(
        self, scope: Scope, ids: Sequence[str], *, filters: Filter | None = None
    ) -> dict[str, list[MemoryItem]]:
        """See :class:`engram.core.NeighborStore`: order ``(created_at, row)``."""
        mine = set(self._select(scope, None))
        want = {i: r for i in ids if (r := self._active.get(i)) is not None and r in mine}
        if not want:
            return {}

        def key(r: int) -> tuple[Any, int]:
            return (self._items[r].created_at, r)

        rows = sorted(self._select(scope, filters), key=key)
        keys = [key(r) for r in rows]
        out: dict[str, list[MemoryItem]] = {}
        for mid, row in want.items():
            k = key(row)
            lo, hi = bisect.bisect_left(keys, k), bisect.bisect_right(keys, k)
            found = []
            if lo > 0:
                found.append(self._copy(self._items[rows[lo - 1]]))
            if hi < len(rows):
                found.append(self._copy(self._items[rows[hi]]))
            out[mid] = found
        return out

    async def count(self, scope: Scope | None = None, *, filters: Filter | None = None) -> int:
        if scope is None and filters is None:
            return len(self._active)
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
        rows = self._rows(query.scope, query.filters, query.archived)
        if rows.size == 0:
            return []
        q = np.asarray(query.embedding, dtype=np.float32)
        # One pass over all rows beats gathering most of them (einsum: one thread, no BLAS contention).
        if rows.size * 3 > self._used:
            scores = np.einsum("ij,j->i", self._vecs[: self._used], q)[rows]
        else:
            scores = np.einsum("ij,j->i", self._vecs[rows], q)
        k = min(query.limit, len(rows))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.lexsort((rows[top], -scores[top]))]
        return [
            ScoredMemory(self._copy(self._items[int(rows[t])]), float(scores[t]), {"dense": float(scores[t])})
            for t in top
        ]

    async def record_access(self, ids: Sequence[str], at: datetime) -> int:
        """Count one access at ``at`` for each distinct active id (see
        :meth:`engram.core.RehearsalStore.record_access`). Atomic like every method of this
        store: it never awaits, so no other task on the event loop runs between the read of a
        count and its increment."""
        when = check_access_time(at)
        n = 0
        for mid in dict.fromkeys(ids):
            row = self._active.get(mid)
            if row is None:
                continue
            item = self._items[row]
            item.access_count += 1
            if item.last_accessed_at is None or when > item.last_accessed_at:
                item.last_accessed_at = when
            n += 1
        return n

    async def reset(self) -> None:
        self.__init__(self.config)  # type: ignore[misc]

    async def aclose(self) -> None:
        return None
