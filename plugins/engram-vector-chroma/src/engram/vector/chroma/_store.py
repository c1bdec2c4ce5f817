from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import anyio
import numpy as np
from engram.core import MemoryItem, Scope, ScoredMemory, VectorQuery, WriteBatch, parse_filters
from engram.core._filters import Filter
from engram.core.errors import ConfigurationError, EngramError, InvalidInputError, ProviderError

from ._client import Backend, connect
from ._config import ChromaConfig, config_from_url
from ._errors import PROVIDER, is_not_found, translate
from ._filters import FALSE, TRUE, Expr, where_clause
from ._layout import FORMAT, VECTOR_KEY, decode, embedding_matrix, encode

__all__ = ["ChromaVectorStore"]

T = TypeVar("T")
FORMAT_KEY = "engram:format"
DIMS_KEY = "engram:dims"


class ChromaVectorStore:
    """Memories in a Chroma collection: embedded (in memory or a folder) or on a Chroma server.

    - **Connection**: lazy (nothing happens in the constructor); the embedded clients
      (``chromadb.EphemeralClient`` / ``PersistentClient``) run in worker threads, the server
      client is chromadb's ``AsyncHttpClient``. Chroma's anonymized telemetry is off in every
      client, and engram always supplies the embeddings: collections are opened with
      ``embedding_function=None``, so Chroma never loads or downloads an embedding model.
    - **Collection**: ``config.collection``, created on the first write with cosine distance
      (``{"hnsw": {"space": "cosine"}}``) and its embedding length in the collection metadata
      (``engram:dims``), which is how the length survives a reopen. A batch of another length
      raises :class:`~engram.core.errors.InvalidInputError` and writes nothing.
    - **Records**: one per memory (see :mod:`engram.vector.chroma._layout`), all in metadata:
      the memory as JSON for an exact round trip, and typed projections that scope and metadata
      filters compile to as native ``where`` clauses (:mod:`engram.vector.chroma._filters`). No
      Chroma document, so Chroma never has text it could embed.
    - **Search**: dense only, by Chroma's HNSW index (approximate) under the ``where`` clause;
      the score is cosine similarity, ``1 - cosine distance``. Chroma 1.5 has no BM25 outside
      Chroma Cloud (sparse vector indexes and its ``search`` API are not enabled in local or
      single-node Chroma), so ``lexical`` returns ``[]`` and ``hybrid`` is ``dense``.
    - **list**: Chroma's ``get`` has no ordering, so ``list`` reads every record matching the
      scope and filter and sorts them (``created_at``, then ``id``, newest first) before cutting
      ``offset`` / ``limit``: its cost grows with the number of matches, not with ``limit``.
    - **write**: validates the whole batch, then deletes, then upserts in chunks of the client's
      ``get_max_batch_size()``. Chroma has no transactions: a batch split in chunks is not atomic
      (a failure can leave the first chunks written). Chroma's upsert merges metadata keys, so the
      keys a new version no longer has are removed explicitly (read first, then set to ``None``);
      writes from one store are serialised by a lock. A memory whose embedding is unchanged is
      written as a metadata-only update, which leaves Chroma's vector index alone.

    URL forms: ``chroma://host:8000/collection``, ``chroma+https://host/collection``,
    ``chroma://:TOKEN@host:8000/collection``, ``chroma:///:memory:``, ``chroma:///relative/folder``,
    ``chroma:////absolute/folder`` (``?collection=name`` for the embedded forms).
    """

    Config = ChromaConfig
    capabilities = frozenset({"persistent"})

    def __init__(self, config: ChromaConfig | None = None, **kwargs: Any) -> None:
        self.config = config or ChromaConfig(**kwargs)
        if self.config.mode == "ephemeral":
            self.capabilities = frozenset()
        self._backend: Backend | None = None
        self._collection_handle: Any = None
        self._dims: int | None = None
        self._batch: int | None = None
        self._closed = False
        self._connect_lock = anyio.Lock()
        self._write_lock = anyio.Lock()

    @classmethod
    def from_url(cls, url: str) -> ChromaVectorStore:
        """Build from a ``chroma://`` URL (see :func:`~engram.vector.chroma._config.config_from_url`).

        Raises:
            ConfigurationError: a malformed URL.
        """
        return cls(config_from_url(url))

    async def __aenter__(self) -> ChromaVectorStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"ChromaVectorStore({self.config.mode}: {self.config.where}, collection={self.config.collection!r})"

    # -- plumbing --------------------------------------------------------------------------------

    async def _guard(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn``, translating chromadb's and the transport's exceptions."""
        try:
            return await fn()
        except EngramError:
            raise
        except Exception as exc:
            raise translate(exc, what, self.config.where) from exc

    async def _connect(self) -> Backend:
        if self._closed:
            raise ProviderError("the chroma vector store is closed", provider=PROVIDER)
        if self._backend is None:
            async with self._connect_lock:
                if self._backend is None:
                    self._backend = await self._guard("connect", lambda: connect(self.config))
        return self._backend

    async def _collection(self, create_dims: int | None = None) -> Any:
        """The collection (opened once), or ``None`` when it does not exist and ``create_dims`` is
        ``None``; otherwise created with that embedding length."""
        if self._collection_handle is not None:
            return self._collection_handle
        backend = await self._connect()
        name = self.config.collection
        col = await self._guard("open collection", lambda: backend.get_collection(name))
        if col is None:
            if create_dims is None:
                return None
            meta = {FORMAT_KEY: FORMAT, DIMS_KEY: create_dims}
            col = await self._guard("create collection", lambda: backend.get_or_create_collection(name, meta))
        meta = col.metadata or {}
        dims = meta.get(DIMS_KEY)
        if meta.get(FORMAT_KEY) != FORMAT or not isinstance(dims, int):
            raise ConfigurationError(
                f"Chroma collection {name!r} at {self.config.where} was not created by engram (its metadata has no "
                f"{FORMAT_KEY!r} = {FORMAT} and {DIMS_KEY!r}); choose another collection name"
            )
        self._collection_handle, self._dims = col, dims
        return col

    def _forget_collection(self) -> None:
        self._collection_handle = None
        self._dims = None

    async def _read(self, what: str, method: str, **kwargs: Any) -> Any:
        """A read on the collection; ``None`` when the collection does not exist (or was dropped)."""
        col = await self._collection()
        if col is None:
            return None
        backend = await self._connect()
        try:
            return await backend.call(col, method, **kwargs)
        except Exception as exc:
            if is_not_found(exc):  # deleted behind our back: as empty as a missing collection
                self._forget_collection()
                return None
            raise translate(exc, what, self.config.where) from exc

    def _decode(self, ids: list[str], metas: list[Any] | None) -> list[MemoryItem]:
        metas = metas or [None] * len(ids)
        return [decode(i, m, self.config.collection) for i, m in zip(ids, metas, strict=True)]

    @staticmethod
    def _where(scope: Scope | None, filters: Any) -> Expr:
        f: Filter | None = parse_filters(filters)
        return where_clause(scope, f)

    @staticmethod
    def _kw(where: Expr) -> dict[str, Any]:
        return {} if where is TRUE else {"where": where}

    # -- writes ----------------------------------------------------------------------------------

    async def write(self, batch: WriteBatch) -> None:
        """Apply ``batch``: its deletes, then its upserts (``archive`` and ``events`` are not kept:
        this store has neither the ``"archive"`` nor the ``"history"`` capability).

        Raises:
            InvalidInputError: an upsert without a ``(dims,)`` finite embedding, embeddings of
                another length than the collection's, an empty id, or metadata that is not JSON
                (or holds an integer beyond 64 bits no float equals); nothing is written.
            ProviderError: Chroma failed (a batch written in several chunks may be partly applied).
        """
        upserts = list({it.id: it for it in batch.upserts}.values())  # the last version of an id wins
        for it in upserts:
            if not isinstance(it.id, str) or not it.id:
                raise InvalidInputError(f"memory id must be a non-empty string, got {it.id!r}")
        deletes = list(dict.fromkeys(i for i in batch.deletes if isinstance(i, str) and i))
        vectors, dims = embedding_matrix(upserts, None)
        records = [encode(it, v) for it, v in zip(upserts, vectors, strict=True)]
        if not upserts and not deletes:
            return
        async with self._write_lock:
            try:
                await self._write(upserts, deletes, vectors, dims, records)
            except Exception as exc:
                if not is_not_found(exc):
                    raise
                self._forget_collection()  # dropped behind our back: once more, on a new collection
                await self._guard("write", lambda: self._write(upserts, deletes, vectors, dims, records))

    async def _write(self, upserts: list[MemoryItem], deletes: list[str], vectors: np.ndarray, dims: int | None,
                     records: list[dict[str, Any]]) -> None:
        col = await self._collection(create_dims=dims if upserts else None)
        if col is None:
            return  # only deletes, and no collection: nothing to delete
        if upserts and dims != self._dims:
            raise InvalidInputError(
                f"Chroma collection {self.config.collection!r} holds {self._dims}-dimensional embeddings; got {dims}. "
                "Use the embedder the collection was built with, or another collection"
            )
        backend = await self._connect()
        if self._batch is None:
            self._batch = await self._guard("get_max_batch_size", backend.max_batch_size)
        size = max(1, self._batch)

        async def run(method: str, **kwargs: Any) -> Any:
            try:
                return await backend.call(col, method, **kwargs)
            except Exception as exc:
                if is_not_found(exc):
                    raise
                raise translate(exc, method, self.config.where) from exc

        for start in range(0, len(deletes), size):
            await run("delete", ids=deletes[start : start + size])
        if not upserts:
            return
        ids = [it.id for it in upserts]
        metas = records
        at = {mid: k for k, mid in enumerate(ids)}
        same_vector: set[int] = set()
        for start in range(0, len(ids), size):
            old = await run("get", ids=ids[start : start + size], include=["metadatas"])
            for mid, meta in zip(old["ids"], old["metadatas"] or [], strict=False):
                k = at[mid]
                new = metas[k]
                for key in (meta or {}).keys() - new.keys():  # Chroma's upsert merges keys: drop the old extra ones
                    new[key] = None
                if (meta or {}).get(VECTOR_KEY) == new[VECTOR_KEY]:
                    same_vector.add(k)
        moved = [k for k in range(len(ids)) if k not in same_vector]  # new records, or new embeddings
        # The same embedding: a metadata-only update, which leaves Chroma's vector index alone
        # (rewriting a vector is its slow path).
        kept = sorted(same_vector)
        for start in range(0, len(moved), size):
            rows = moved[start : start + size]
            await run("upsert", ids=[ids[k] for k in rows], embeddings=vectors[rows],
                      metadatas=[metas[k] for k in rows])
        for start in range(0, len(kept), size):
            rows = kept[start : start + size]
            await run("update", ids=[ids[k] for k in rows], metadatas=[metas[k] for k in rows])

    # -- reads -----------------------------------------------------------------------------------

    async def get(self, ids: Sequence[str]) -> list[MemoryItem]:
        """The memories with these ids that exist, in the order asked (unknown ids are skipped)."""
        asked = [i for i in ids if isinstance(i, str) and i]
        unique = list(dict.fromkeys(asked))
        if not unique:
            return []
        found: dict[str, MemoryItem] = {}
        size = self._batch or 5000
        for start in range(0, len(unique), size):
            res = await self._read("get", "get", ids=unique[start : start + size], include=["metadatas"])
            if res is None:
                return []
            for item in self._decode(res["ids"], res["metadatas"]):
                found[item.id] = item
        return [found[i] for i in asked if i in found]

    async def list(
        self,
        scope: Scope | None,
        *,
        filters: Filter | None = None,
        limit: int | None = 100,
        offset: int = 0,
        archived: bool = False,
    ) -> list[MemoryItem]:
        """Memories in the scope matching the filter, newest first (``created_at``, then ``id``,
        descending), from ``offset``, at most ``limit`` (``None``: all). ``archived=True`` gives
        ``[]``: this store keeps no archived versions.

        Raises:
            InvalidFilterError: a filter this store cannot evaluate exactly (substrings, string ranges).
            InvalidInputError: a negative ``limit`` or ``offset``.
        """
        if (limit is not None and limit < 0) or offset < 0:
            raise InvalidInputError(f"limit and offset must be >= 0, got limit={limit}, offset={offset}")
        where = self._where(scope, filters)
        if archived or where is FALSE or limit == 0:
            return []
        res = await self._read("list", "get", include=["metadatas"], **self._kw(where))
        if res is None:
            return []
        items = self._decode(res["ids"], res["metadatas"])
        items.sort(key=lambda i: (i.created_at, i.id), reverse=True)
        return items[offset : None if limit is None else offset + limit]

    async def count(self, scope: Scope | None = None, *, filters: Filter | None = None) -> int:
        """How many memories are in the scope and match the filter.

        Raises:
            InvalidFilterError: a filter this store cannot evaluate exactly.
        """
        where = self._where(scope, filters)
        if where is FALSE:
            return 0
        if where is TRUE:
            n = await self._read("count", "count")
            return int(n or 0)
        res = await self._read("count", "get", where=where, include=[])
        return 0 if res is None else len(res["ids"])

    async def search(self, query: VectorQuery) -> list[ScoredMemory]:
        """Dense search: the ``limit`` memories of the scope matching the filters closest to
        ``query.embedding``, best first, scored by cosine similarity (``1 - cosine distance``).
        ``lexical`` returns ``[]`` and ``hybrid`` is ``dense`` (no BM25 in local Chroma 1.5);
        ``archived=True`` returns ``[]``.

        Raises:
            InvalidFilterError: a filter this store cannot evaluate exactly (checked in every mode).
            InvalidInputError: an unknown mode, or a dense/hybrid query without a finite embedding
                of the collection's length.
        """
        if query.mode not in ("dense", "lexical", "hybrid"):
            raise InvalidInputError(f"unknown search mode {query.mode!r}; expected dense, lexical or hybrid")
        where = self._where(query.scope, query.filters)
        if query.mode == "lexical" or query.archived or query.limit < 1:
            return []
        if query.embedding is None:
            raise InvalidInputError(f"{query.mode} search needs a query embedding (this store embeds nothing itself)")
        q = np.asarray(query.embedding, dtype=np.float32)
        if q.ndim != 1 or not np.isfinite(q).all():
            raise InvalidInputError(f"query embedding must be a finite (dims,) vector, got shape {q.shape}")
        col = await self._collection()
        if col is None:
            return []
        if q.shape[0] != self._dims:
            raise InvalidInputError(f"query embedding has {q.shape[0]} dims; this collection holds {self._dims}")
        if where is FALSE:
            return []
        res = await self._read(
            "search", "query", query_embeddings=[q], n_results=query.limit,
            include=["metadatas", "distances"], **self._kw(where),
        )
        if res is None or not res["ids"]:
            return []
        items = self._decode(res["ids"][0], (res["metadatas"] or [None])[0])
        hits = [
            ScoredMemory(item, 1.0 - float(d), {"dense": 1.0 - float(d)})
            for item, d in zip(items, res["distances"][0], strict=True)
        ]
        hits.sort(key=lambda h: (-h.score, h.item.id))
        return hits

    # -- lifecycle -------------------------------------------------------------------------------

    async def reset(self) -> None:
        """Delete the collection (and with it the embedding length); the next write creates it anew."""
        async with self._write_lock:
            backend = await self._connect()
            await self._guard("reset", lambda: backend.delete_collection(self.config.collection))
            self._forget_collection()

    async def aclose(self) -> None:
        """Release the client (embedded: Chroma stops its in-process system when its last client
        closes, which drops an in-memory database). Later calls raise ProviderError."""
        if self._closed:
            return
        self._closed = True
        backend, self._backend = self._backend, None
        self._forget_collection()
        if backend is not None:
            await self._guard("close", backend.close)
