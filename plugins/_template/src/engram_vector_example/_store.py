from __future__ import annotations

import copy
import json
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property, partial
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import anyio
import numpy as np
from engram.core import (
    MemoryItem,
    Scope,
    ScoredMemory,
    VectorQuery,
    WriteBatch,
    matches,
    parse_filters,
    parse_time,
)
from engram.core.errors import ConfigurationError, InvalidInputError, ProviderError
from pydantic import BaseModel, ConfigDict, Field

NAME = "example"  # the entry point name and URL scheme: keep in step with pyproject.toml
FORMAT = 1  # bumped when the file layout changes


@dataclass(frozen=True)
class _State:
    """One snapshot of the store, never changed: a write builds a new one, so readers never see
    half a batch."""

    dims: int | None = None
    items: dict[str, MemoryItem] = field(default_factory=dict)  # id -> memory (embedding=None)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)  # id -> (dims,) float32, unit length or zero

    @cached_property
    def matrix(self) -> tuple[list[str], np.ndarray]:
        """Every id and its vector as one ``(n, dims)`` float32 matrix, built once per snapshot."""
        ids = list(self.vectors)
        mat = np.stack([self.vectors[i] for i in ids]) if ids else np.zeros((0, self.dims or 0), np.float32)
        return ids, mat


class ExampleVectorStore:
    """A vector store kept in process memory, optionally saved to one ``.npz`` file.

    - Dense search is exact cosine similarity: stored vectors are L2-normalised on write (a zero
      vector stays zero and scores 0), so a score is one dot product, done for all candidates at
      once with numpy. Ties are broken by id.
    - Scope and metadata filters are evaluated in Python with :func:`engram.core.matches`, the
      reference semantics, so every operator works exactly (``substring_filters`` and
      ``string_range_filters`` included). Cost: one Python check per memory per query.
    - Writes are validated whole before anything changes, then applied to a copy of the state; with
      a ``path`` the copy is saved (to a temporary file renamed over the old one) before it
      replaces the live state. An anyio lock serialises writers; readers see the last snapshot.
    - No lexical search (``mode="lexical"`` returns ``[]``; ``hybrid`` is dense only), no archive,
      no history.

    The file is read on first use, never in ``__init__``; ``aclose()`` forgets the loaded copy (a
    file-backed store reads its file again on next use). Every write rewrites the whole file: fine
    for thousands of memories, not for millions.

    URL forms: ``example://`` (in memory), ``example:///relative/path.npz``,
    ``example:////absolute/path.npz``.
    """

    class Config(BaseModel):
        """Attributes:
        path: the ``.npz`` file to keep the memories in; ``None`` keeps them in memory only.
        """

        model_config = ConfigDict(extra="forbid")
        path: str | None = Field(default=None, min_length=1)

    #: What this store can do; the conformance suite runs the checks for each one (see README).
    capabilities = frozenset({"persistent", "substring_filters", "string_range_filters"})

    def __init__(self, config: Config | None = None, **kwargs: Any) -> None:
        self.config = config or self.Config(**kwargs)
        self.path = Path(self.config.path).expanduser() if self.config.path else None
        if self.path is None:  # nothing survives the process: say so
            self.capabilities = frozenset({"substring_filters", "string_range_filters"})
        self._state: _State | None = None  # loaded lazily
        self._lock = anyio.Lock()  # one writer at a time

    @classmethod
    def from_url(cls, url: str) -> ExampleVectorStore:
        """Build from ``example://``, ``example:///relative.npz`` or ``example:////abs/path.npz``.

        Raises:
            ConfigurationError: another scheme, a host, or a query string.
        """
        parts = urlsplit(url)
        if parts.scheme != NAME:
            raise ConfigurationError(f"not a {NAME}:// URL: {url!r}")
        if parts.netloc or parts.query:
            raise ConfigurationError(
                f"{NAME}:// URLs take a path only, e.g. {NAME}:///data/memories.npz (got {url!r})"
            )
        path = unquote(parts.path)[1:]  # drop the "/" that follows "example://"
        return cls(cls.Config(path=path or None))

    async def __aenter__(self) -> ExampleVectorStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- state ---------------------------------------------------------------------------------

    async def _current(self) -> _State:
        """The live snapshot, loading it first when needed."""
        state = self._state
        if state is None:
            async with self._lock:
                state = await self._loaded()
        return state

    async def _loaded(self) -> _State:
        """The live snapshot; the file is read here on first use. Call under the lock."""
        if self._state is None:
            self._state = await anyio.to_thread.run_sync(self._load) if self.path else _State()
        return self._state

    def _load(self) -> _State:
        assert self.path is not None
        if not self.path.exists():
            return _State()
        try:
            with np.load(self.path, allow_pickle=False) as f:
                meta = json.loads(f["meta"].tobytes().decode("utf-8"))
                vectors = f["vectors"]
            if meta["format"] != FORMAT:
                raise ValueError(f"file format {meta['format']}, this version reads {FORMAT}")
            items = {d["id"]: _item_from_json(d) for d in meta["items"]}
            return _State(meta["dims"], items, dict(zip(items, vectors.astype(np.float32), strict=True)))
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
            raise ProviderError(f"{NAME} store: cannot read {self.path}: {exc}", provider=NAME) from exc

    def _save(self, state: _State) -> None:
        assert self.path is not None
        ids, mat = state.matrix
        meta = {"format": FORMAT, "dims": state.dims, "items": [_item_to_json(state.items[i]) for i in ids]}
        blob = np.frombuffer(json.dumps(meta, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                np.savez(f, meta=blob, vectors=mat)
            os.replace(tmp, self.path)  # atomic: a crash of the process leaves the old file or the new one
        except OSError as exc:
            raise ProviderError(f"{NAME} store: cannot write {self.path}: {exc}", provider=NAME) from exc

    async def _commit(self, state: _State) -> None:
        """Save (when file-backed) and only then make ``state`` the live one. Call under the lock."""
        if self.path is not None:
            await anyio.to_thread.run_sync(self._save, state)
        self._state = state

    # -- VectorStore ---------------------------------------------------------------------------

    async def write(self, batch: WriteBatch) -> None:
        """Apply ``batch.deletes`` then ``batch.upserts``, all or nothing.

        Raises:
            InvalidInputError: an upsert without a finite ``(dims,)`` embedding, embeddings of
                another length than the stored ones, or a non-empty ``batch.archive`` (this store
                has no ``"archive"`` capability). Nothing is changed.
            ProviderError: the file could not be written; nothing is changed.
        """
        if batch.archive:
            raise InvalidInputError(f"the {NAME} store keeps no archive; send deletes instead")
        if not (batch.upserts or batch.deletes):
            return
        async with self._lock:
            state = await self._loaded()
            dims = state.dims
            metadata = []
            for it in batch.upserts:  # validate everything first
                emb = it.embedding
                if not isinstance(emb, np.ndarray) or emb.ndim != 1 or emb.shape[0] == 0:
                    raise InvalidInputError(f"memory {it.id}: an upsert needs a (dims,) embedding")
                dims = dims or int(emb.shape[0])
                if emb.shape[0] != dims:
                    raise InvalidInputError(
                        f"memory {it.id}: embedding has {emb.shape[0]} dims, the store {dims}"
                    )
                if not np.isfinite(emb).all():
                    raise InvalidInputError(f"memory {it.id}: embedding has NaN or infinite values")
                try:  # the round trip through JSON is also the copy we keep
                    metadata.append(json.loads(json.dumps(it.metadata, allow_nan=False)))
                except (TypeError, ValueError) as exc:
                    raise InvalidInputError(f"memory {it.id}: metadata is not JSON: {exc}") from None
            items, vectors = dict(state.items), dict(state.vectors)
            for mid in batch.deletes:
                items.pop(mid, None)
                vectors.pop(mid, None)
            for it, meta in zip(batch.upserts, metadata, strict=True):
                items[it.id] = replace(
                    it, metadata=meta, embedding=None, archived_at=None, archive_reason=None
                )
                vectors[it.id] = _unit(np.asarray(it.embedding, dtype=np.float32))
            await self._commit(_State(dims, items, vectors))

    async def get(self, ids: Sequence[str]) -> list[MemoryItem]:
        """The memories with these ids that exist, in the order asked (copies: change them freely)."""
        items = (await self._current()).items
        return [_copy(items[i]) for i in ids if i in items]

    def _select(self, state: _State, scope: Scope | None, filters: Any) -> list[MemoryItem]:
        f = parse_filters(filters)  # passes a parsed filter through; InvalidFilterError on a bad mapping
        return [
            it
            for it in state.items.values()
            if (scope is None or scope.matches(it.user_id, it.agent_id, it.run_id)) and matches(f, it)
        ]

    async def list(
        self,
        scope: Scope | None,
        *,
        filters: Any = None,
        limit: int | None = 100,
        offset: int = 0,
        archived: bool = False,
    ) -> list[MemoryItem]:
        """Memories in ``scope`` (all when ``None``) matching ``filters``, newest first (``created_at``
        descending, then ``id``), ``offset`` and ``limit`` applied (``limit=None``: all).

        Raises:
            InvalidFilterError: ``filters`` is a mapping that does not parse.
        """
        if archived:  # no archive here
            return []
        found = self._select(await self._current(), scope, filters)
        found.sort(key=lambda i: (i.created_at, i.id), reverse=True)
        end = None if limit is None else offset + limit
        return [_copy(i) for i in found[offset:end]]

    async def count(self, scope: Scope | None = None, *, filters: Any = None) -> int:
        """How many memories :meth:`list` would return without a limit."""
        return len(self._select(await self._current(), scope, filters))

    async def search(self, query: VectorQuery) -> list[ScoredMemory]:
        """Dense search by cosine similarity; ``lexical`` and ``archived`` queries return ``[]``.

        Raises:
            InvalidInputError: no query embedding, or one of another length than the stored ones.
        """
        state = await self._current()
        if query.mode == "lexical" or query.archived or state.dims is None:
            return []
        if query.embedding is None:
            raise InvalidInputError(f"{query.mode} search needs a query embedding")
        q = np.asarray(query.embedding, dtype=np.float32)
        if q.shape != (state.dims,):
            raise InvalidInputError(
                f"query embedding has shape {q.shape}; this store holds {state.dims} dims"
            )
        wanted = {it.id for it in self._select(state, query.scope, query.filters)}
        if not wanted or query.limit <= 0:
            return []
        ids, mat = state.matrix
        rows = np.fromiter((k for k, i in enumerate(ids) if i in wanted), dtype=np.int64, count=len(wanted))
        scores = mat[rows] @ _unit(q)  # cosine: both sides have unit length
        order = np.lexsort((np.array([ids[r] for r in rows]), -scores))[: query.limit]  # best first, then id
        return [
            ScoredMemory(_copy(state.items[ids[rows[k]]]), float(scores[k]), {"dense": float(scores[k])})
            for k in order
        ]

    async def reset(self) -> None:
        """Delete every memory (and the file, when there is one) and forget the dimension."""
        async with self._lock:
            if self.path is not None:
                try:
                    await anyio.to_thread.run_sync(partial(self.path.unlink, missing_ok=True))
                except OSError as exc:
                    raise ProviderError(
                        f"{NAME} store: cannot delete {self.path}: {exc}", provider=NAME
                    ) from exc
            self._state = _State()

    async def aclose(self) -> None:
        """Forget the loaded copy when file-backed (it is re-read on next use); every write is
        already saved. An in-memory store keeps its memories."""
        if self.path is not None:
            async with self._lock:
                self._state = None


def _unit(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    return (v / norm).astype(np.float32) if norm > 0 else np.zeros_like(v, dtype=np.float32)


def _copy(it: MemoryItem) -> MemoryItem:
    out = copy.copy(it)
    out.metadata = copy.deepcopy(it.metadata)
    return out


def _item_to_json(it: MemoryItem) -> dict[str, Any]:
    return {
        "id": it.id,
        "memory": it.memory,
        "hash": it.hash,
        "user_id": it.user_id,
        "agent_id": it.agent_id,
        "run_id": it.run_id,
        "metadata": it.metadata,
        "created_at": it.created_at.isoformat(),
        "updated_at": it.updated_at.isoformat() if it.updated_at else None,
    }


def _item_from_json(d: dict[str, Any]) -> MemoryItem:
    return MemoryItem(
        id=d["id"],
        memory=d["memory"],
        hash=d["hash"],
        user_id=d["user_id"],
        agent_id=d["agent_id"],
        run_id=d["run_id"],
        metadata=d["metadata"],
        created_at=parse_time(d["created_at"]),
        updated_at=parse_time(d["updated_at"]) if d["updated_at"] else None,
    )
