from __future__ import annotations

import functools
import importlib.metadata
import uuid
import warnings
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import numpy as np
from engram.core import (
    Filter,
    MemoryItem,
    Scope,
    ScoredMemory,
    VectorQuery,
    WriteBatch,
    fuse_hits,
    parse_filters,
    utcnow,
)
from engram.core.errors import ConfigurationError, InvalidInputError
from qdrant_client import AsyncQdrantClient, QdrantClient
from qdrant_client import models as m

from ._config import DEFAULT_URL, QdrantConfig, config_from_url
from ._errors import NotFound, translate_error
from ._filters import EVERYTHING, NOTHING, Node, all_of, translate
from ._layout import INDEXES, from_iso, iso, item_from_payload, payload_of, point_id
from ._lexical import document_vector, query_vector

SCHEMA = 1
DENSE, SPARSE = "dense", "bm25"
UPSERT_CHUNK = 512  # points per request
ID_CHUNK = 1000  # ids per delete / retrieve request
PAGE = 1024  # points per scroll page
_THREAD_BATCH = 64  # batches at least this big are prepared in a worker thread


def _filter(node: Node) -> m.Filter | None:
    """A Qdrant ``Filter`` for a condition node (``None`` for :data:`EVERYTHING`)."""
    if node is EVERYTHING:
        return None
    return node if isinstance(node, m.Filter) else m.Filter(must=[node])


def _chunks(seq: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [seq[i : i + size] for i in range(0, len(seq), size)]


class _Client:
    """One qdrant-client connection, opened on first use, every call's errors translated.

    Server mode uses :class:`qdrant_client.AsyncQdrantClient`. Local mode uses the blocking
    :class:`qdrant_client.QdrantClient` in one worker thread at a time: its local implementation is
    plain Python (the async local client runs the same code on the event loop, stalling it), and
    it is not thread-safe.
    """

    def __init__(self, config: QdrantConfig) -> None:
        self.config = config
        self.where = config.where
        self._remote: AsyncQdrantClient | None = None
        self._local: QdrantClient | None = None
        self._limiter = anyio.CapacityLimiter(1)
        self._lock = anyio.Lock()

    async def _open(self) -> None:
        c = self.config
        if c.local:
            kwargs: dict[str, Any] = {"force_disable_check_same_thread": True}
            if c.path is not None:
                kwargs["path"] = c.path
            else:
                kwargs["location"] = ":memory:"
            try:
                self._local = await anyio.to_thread.run_sync(
                    functools.partial(QdrantClient, **kwargs), limiter=self._limiter
                )
            except Exception as exc:
                raise translate_error(exc, self.where) from exc
            return
        client = AsyncQdrantClient(
            url=c.url or DEFAULT_URL,
            api_key=c.api_key.get_secret_value() if c.api_key is not None else None,
            prefer_grpc=c.prefer_grpc,
            grpc_port=c.grpc_port,
            timeout=c.timeout,
            check_compatibility=False,  # its check is a blocking request in __init__; ours is below
        )
        try:
            info = await client.info()
        except Exception as exc:
            await client.close()
            raise translate_error(exc, self.where) from exc
        _check_version(info.version, self.where)
        self._remote = client

    async def call(self, method: str, /, **kwargs: Any) -> Any:
        """``client.<method>(**kwargs)``, opening the client first when needed.

        Raises:
            ProviderError: any failure of the client (``NotFound`` for a missing collection).
        """
        if self._remote is None and self._local is None:
            async with self._lock:
                if self._remote is None and self._local is None:
                    await self._open()
        try:
            if self._local is not None:
                fn: Callable[[], Any] = functools.partial(getattr(self._local, method), **kwargs)
                return await anyio.to_thread.run_sync(fn, limiter=self._limiter)
            assert self._remote is not None
            return await getattr(self._remote, method)(**kwargs)
        except Exception as exc:
            raise translate_error(exc, self.where) from exc

    async def close(self) -> None:
        remote, local = self._remote, self._local
        self._remote = self._local = None
        try:
            if remote is not None:
                await remote.close()
            if local is not None:
                await anyio.to_thread.run_sync(local.close, limiter=self._limiter)
        except Exception as exc:
            raise translate_error(exc, self.where) from exc


async def _together(*calls: Callable[[], Awaitable[Any]]) -> list[Any]:
    """Run the calls concurrently; their results in order. A failure cancels the others and is
    raised as itself (not inside an exception group), so a ProviderError stays one."""
    results: list[Any] = [None] * len(calls)

    async def run(k: int, call: Callable[[], Awaitable[Any]]) -> None:
        results[k] = await call()

    try:
        async with anyio.create_task_group() as tg:
            for k, call in enumerate(calls):
                tg.start_soon(run, k, call)
    except BaseExceptionGroup as group:
        first: BaseException = group
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from first.__cause__  # keeps the driver's exception as the cause
    return results


def _check_version(server: str | None, where: str) -> None:
    """Warn, as qdrant-client would, when the server's major version differs from the client's
    or their minor versions are more than one apart."""
    from qdrant_client.common.version_check import is_compatible

    client = importlib.metadata.version("qdrant-client")
    if server and not is_compatible(client, server):
        warnings.warn(
            f"qdrant-client {client} may not work with the Qdrant {server} server at {where}: major versions "
            "should match and minor versions differ by at most one",
            UserWarning,
            stacklevel=4,
        )


class QdrantVectorStore:
    """engram's vector store on Qdrant: local mode (in memory or a folder) or a Qdrant server.

    - One point per memory version in one collection (``config.collection``), created on the first
      write with the first embeddings' length: a cosine ``"dense"`` vector and a ``"bm25"`` sparse
      vector with Qdrant's IDF modifier. Reopening reads the length back; an embedding of another
      length raises :class:`~engram.core.errors.InvalidInputError` and writes nothing.
    - Scope and metadata filters are Qdrant filters over typed projections of the metadata (see
      :mod:`engram.vector.qdrant._layout` and :mod:`._filters`): nothing is filtered in Python.
      ``contains``/``icontains`` with a string and ``gt``/``gte``/``lt``/``lte`` with a string are
      refused with :class:`~engram.core.errors.InvalidFilterError`.
    - ``lexical`` search is BM25 through the sparse vector (term weights written by the store,
      IDF by Qdrant; see :mod:`._lexical`); ``hybrid`` runs dense and lexical concurrently and
      fuses them with ``config.fusion``.
    - ``write`` validates the whole batch first, then sends its deletes, archive moves and
      upserts in order. Qdrant has no transaction over several operations: a failure part way
      (the server going away) can leave part of a batch applied.
    - Server mode creates payload indexes on ``id``, ``hash``, the scope fields, ``keys``,
      ``archived`` and the times (the time indexes also serve ``list``'s ordering).

    URL forms: ``qdrant://host:6333/collection`` (http), ``qdrant+https://host/collection`` or
    ``?https=true`` (https), ``qdrant://:API_KEY@host:6333/collection``, ``?grpc=true&grpc_port=6334``;
    local mode: ``qdrant:///:memory:``, ``qdrant:///relative/folder``, ``qdrant:////abs/folder``,
    with ``?collection=name``.

    Raises (every method):
        ProviderError: the server or the local storage failed (``ProviderTimeoutError`` past
            ``config.timeout``).
    """

    Config = QdrantConfig

    def __init__(self, config: QdrantConfig | None = None, **kwargs: Any) -> None:
        self.config = config or QdrantConfig(**kwargs)
        caps = {"lexical", "archive"}
        if self.config.location != ":memory:":
            caps.add("persistent")
        self.capabilities = frozenset(caps)
        self._client = _Client(self.config)
        self._dims: int | None = None
        self._bm25 = (self.config.bm25_k1, self.config.bm25_b, self.config.bm25_avg_len)
        self._lock = anyio.Lock()

    @classmethod
    def from_url(cls, url: str) -> QdrantVectorStore:
        """Build a store from a ``qdrant://`` URL (see the class docstring).

        Raises:
            ConfigurationError: a malformed URL.
        """
        return cls(config_from_url(url))

    async def __aenter__(self) -> QdrantVectorStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def _name(self) -> str:
        return self.config.collection

    # -- the collection ----------------------------------------------------------------------------

    async def _stored_dims(self) -> int | None:
        """The embedding length of the collection, ``None`` while it does not exist."""
        if self._dims is not None:
            return self._dims
        async with self._lock:  # not while this store creates it (a server answers INTERNAL then)
            return await self._load_dims()

    async def _load_dims(self) -> int | None:
        """:meth:`_stored_dims` for a caller holding ``self._lock``."""
        if self._dims is not None:
            return self._dims
        try:
            info = await self._client.call("get_collection", collection_name=self._name)
        except NotFound:
            return None
        self._adopt(info)
        if not self._client.config.local:
            have = set(info.payload_schema or {})
            await self._create_indexes([f for f in INDEXES if f not in have])
        return self._dims

    def _adopt(self, info: Any) -> None:
        params = info.config.params
        vectors = params.vectors
        sparse = params.sparse_vectors or {}
        meta = getattr(info.config, "metadata", None) or {}
        if (
            not isinstance(vectors, dict)
            or DENSE not in vectors
            or SPARSE not in sparse
            or "engram_schema" not in meta
        ):
            raise ConfigurationError(
                f"collection {self._name!r} at {self._client.where} was not created by engram (it needs a "
                f"{DENSE!r} vector, a {SPARSE!r} sparse vector and engram's metadata); choose another collection"
            )
        if int(meta["engram_schema"]) > SCHEMA:
            raise ConfigurationError(
                f"collection {self._name!r} has engram layout {meta['engram_schema']}, newer than this plugin's "
                f"({SCHEMA}); upgrade engram-vector-qdrant"
            )
        bm25 = meta.get("bm25") or {}
        self._bm25 = (
            float(bm25.get("k1", self._bm25[0])),
            float(bm25.get("b", self._bm25[1])),
            float(bm25.get("avg_len", self._bm25[2])),
        )
        self._dims = int(vectors[DENSE].size)

    async def _create_indexes(self, fields: Sequence[str]) -> None:
        """Create these payload indexes, all at once (each one waits until it is built)."""

        await _together(
            *(
                functools.partial(
                    self._client.call,
                    "create_payload_index",
                    collection_name=self._name,
                    field_name=f,
                    field_schema=m.PayloadSchemaType(INDEXES[f]),
                    wait=True,
                )
                for f in fields
            )
        )

    async def _create(self, dims: int) -> int:
        """Create the collection for ``dims``-long embeddings unless it exists; its length."""
        async with self._lock:
            stored = await self._load_dims()
            if stored is not None:
                return stored
            k1, b, avg_len = self._bm25
            try:
                await self._client.call(
                    "create_collection",
                    collection_name=self._name,
                    vectors_config={DENSE: m.VectorParams(size=dims, distance=m.Distance.COSINE)},
                    sparse_vectors_config={SPARSE: m.SparseVectorParams(modifier=m.Modifier.IDF)},
                    metadata={"engram_schema": SCHEMA, "bm25": {"k1": k1, "b": b, "avg_len": avg_len}},
                )
            except Exception:  # another process may have created it first
                self._dims = None
                if await self._load_dims() is None:
                    raise
                return self._dims  # type: ignore[return-value]
            if not self._client.config.local:  # payload indexes have no effect in local mode
                await self._create_indexes(list(INDEXES))
            self._dims = dims
            return dims

    # -- writes ------------------------------------------------------------------------------------

    def _prepare(self, upserts: Sequence[MemoryItem]) -> tuple[int | None, list[m.PointStruct]]:
        """Validate every upsert and build its point; ``(embedding length, points)``.

        Raises:
            InvalidInputError: a missing, non-1-D or non-finite embedding, lengths that differ
                within the batch, or metadata that is not JSON.
        """
        last: dict[str, MemoryItem] = {}
        dims: int | None = None
        for it in upserts:
            e = it.embedding
            if e is None or np.ndim(e) != 1:
                raise InvalidInputError(f"memory {it.id}: an upsert needs a (dims,) embedding")
            if dims is None:
                dims = int(np.shape(e)[0])
            if np.shape(e)[0] != dims:
                raise InvalidInputError(f"memory {it.id}: embeddings in one batch differ in length")
            if not np.isfinite(e).all():
                raise InvalidInputError(f"memory {it.id}: embedding has NaN or infinite values")
            last.pop(it.id, None)  # the last upsert of an id wins, as sequential writes would
            last[it.id] = it
        k1, b, avg_len = self._bm25
        points = []
        for it in last.values():
            payload = payload_of(it)
            texts = [it.memory]
            if isinstance(speaker := it.metadata.get("speaker"), str):
                texts.append(speaker)
            indices, values = document_vector(texts, k1=k1, b=b, avg_len=avg_len)
            vector: dict[str, Any] = {DENSE: np.asarray(it.embedding, dtype=np.float32).tolist()}
            if indices:
                vector[SPARSE] = m.SparseVector.model_construct(indices=indices, values=values)
            # built unvalidated: every field was checked above, and validating 10K points costs seconds
            points.append(m.PointStruct.model_construct(id=point_id(it.id), vector=vector, payload=payload))
        return dims, points

    async def write(self, batch: WriteBatch) -> None:
        """Apply a batch: deletes (every version), then archive moves, then upserts.

        Raises:
            InvalidInputError: see :meth:`_prepare`, or an embedding length other than the
                collection's; nothing of the batch is applied.
            ProviderError: Qdrant failed; earlier requests of the batch may have been applied.
        """
        if not (batch.upserts or batch.deletes or batch.archive):
            return
        if len(batch.upserts) >= _THREAD_BATCH:
            dims, points = await anyio.to_thread.run_sync(self._prepare, batch.upserts)
        else:
            dims, points = self._prepare(batch.upserts)
        stored = await self._stored_dims()
        if dims is not None and stored is not None and dims != stored:
            raise InvalidInputError(
                f"collection {self._name!r} holds {stored}-dimensional embeddings; got {dims}. Use the embedder "
                f"the collection was built with, or another collection"
            )
        if stored is None:
            if dims is None:
                return  # deletes and archive moves on a collection that does not exist: nothing to do
            await self._create(dims)
        try:
            await self._apply(batch, points)
        except NotFound:  # the collection was dropped behind our back (another store's reset)
            self._dims = None
            if dims is None:
                return
            await self._create(dims)
            await self._apply(batch, points)

    async def _apply(self, batch: WriteBatch, points: list[m.PointStruct]) -> None:
        ops: list[Any] = []
        deleted = list(dict.fromkeys(batch.deletes))
        for chunk in _chunks(deleted, ID_CHUNK):
            selector = m.FilterSelector(
                filter=m.Filter(must=[m.FieldCondition(key="id", match=m.MatchAny(any=list(chunk)))])
            )
            ops.append(m.DeleteOperation(delete=selector))
        if batch.archive:
            ops += await self._archive_ops(batch.archive, set(deleted))
        if self._client.config.local and ops:
            ops = await self._clear_lexical_first(deleted, ops) + ops
        upserts = [
            m.UpsertOperation(upsert=m.PointsList(points=list(c))) for c in _chunks(points, UPSERT_CHUNK)
        ]
        if len(upserts) <= 1:  # a small batch is one request
            requests = [ops + upserts]
        else:
            requests = [ops, *([u] for u in upserts)]
        for request in requests:
            if request:
                await self._client.call(
                    "batch_update_points", collection_name=self._name, update_operations=request, wait=True
                )

    async def _clear_lexical_first(self, deleted: Sequence[str], ops: list[Any]) -> list[Any]:
        """Local mode only: operations emptying the sparse vectors of the points ``ops`` delete.

        qdrant-client's local mode (1.16) does not take a deleted point's terms out of its IDF
        document counts, so the counts drift above the number of points and IDF turns negative;
        replacing the sparse vector first does take them out. (A server keeps its own statistics.)
        """
        pids: list[Any] = []
        for chunk in _chunks(deleted, ID_CHUNK):
            node = m.FieldCondition(key="id", match=m.MatchAny(any=list(chunk)))
            pids += [p.id for p in await self._scroll_all(node, payload=False)]
        for op in ops:
            if isinstance(op, m.DeleteOperation) and isinstance(op.delete, m.PointIdsList):
                pids += op.delete.points
        if not pids:
            return []
        empty = m.SparseVector(indices=[], values=[])
        points = [m.PointVectors(id=pid, vector={SPARSE: empty}) for pid in dict.fromkeys(pids)]
        return [m.UpdateVectorsOperation(update_vectors=m.UpdateVectors(points=points))]

    async def _archive_ops(self, archive: Sequence[tuple[str, str]], deleted: set[str]) -> list[Any]:
        reasons: dict[str, str] = {}
        for mid, reason in archive:
            if mid not in deleted:
                reasons.setdefault(mid, reason)  # a second archive of one id finds nothing left to move
        found = await self._retrieve(list(reasons), vectors=True)
        now = iso(utcnow())
        copies, moved = [], []
        for p in found:
            payload = dict(p.payload)
            payload.update(archived=True, archived_at=now, archive_reason=reasons[payload["id"]])
            copies.append(m.PointStruct(id=str(uuid.uuid4()), vector=p.vector, payload=payload))
            moved.append(p.id)
        if not copies:
            return []
        return [
            m.UpsertOperation(upsert=m.PointsList(points=copies)),
            m.DeleteOperation(delete=m.PointIdsList(points=moved)),
        ]

    # -- reads ----------------------------------------------------------------------------------

    async def _retrieve(self, ids: Sequence[str], *, vectors: bool = False) -> list[Any]:
        """The active points of these memory ids that exist (any order)."""
        pids = list(dict.fromkeys(point_id(i) for i in ids))
        out: list[Any] = []
        for chunk in _chunks(pids, ID_CHUNK):
            try:
                pts = await self._client.call(
                    "retrieve",
                    collection_name=self._name,
                    ids=list(chunk),
                    with_payload=True,
                    with_vectors=vectors,
                )
            except NotFound:
                self._dims = None
                return []
            out += [p for p in pts if p.payload and not p.payload.get("archived")]
        return out

    async def get(self, ids: Sequence[str]) -> list[MemoryItem]:
        """The active memories with these ids that exist, in the order asked."""
        ids = [i for i in ids if isinstance(i, str)]
        if not ids or await self._stored_dims() is None:
            return []
        found = {p.payload["id"]: p.payload for p in await self._retrieve(ids)}
        return [item_from_payload(found[i]) for i in ids if i in found]

    def _where(self, scope: Scope | None, filters: Any, archived: bool) -> Node:
        """Scope, status and metadata filter as one condition.

        Raises:
            InvalidFilterError: a filter that does not parse, or one Qdrant cannot evaluate exactly.
        """
        f: Filter | None = parse_filters(filters)
        node = translate(f)
        parts = [m.FieldCondition(key="archived", match=m.MatchValue(value=archived))]
        if scope is not None:
            parts += [m.FieldCondition(key=k, match=m.MatchValue(value=v)) for k, v in scope.items()]
        return all_of([*parts, node])

    async def _scroll_all(self, node: Node, *, payload: bool = True) -> list[Any]:
        out: list[Any] = []
        offset: Any = None
        while True:
            pts, offset = await self._client.call(
                "scroll",
                collection_name=self._name,
                scroll_filter=_filter(node),
                limit=PAGE,
                offset=offset,
                with_payload=payload,
                with_vectors=False,
            )
            out += pts
            if offset is None:
                return out

    async def _newest(self, node: Node, key: str, n: int) -> list[Any]:
        """The first ``n`` points by ``key`` descending, then id descending, exactly: Qdrant orders
        by ``key`` alone, so the points tied with the last one are fetched whole and sorted here."""
        pts, _ = await self._client.call(
            "scroll",
            collection_name=self._name,
            scroll_filter=_filter(node),
            limit=n,
            order_by=m.OrderBy(key=key, direction=m.Direction.DESC),
            with_payload=True,
            with_vectors=False,
        )
        if len(pts) == n:
            last = pts[-1].payload[key]
            when = from_iso(last)
            tied = await self._scroll_all(
                all_of([node, m.FieldCondition(key=key, range=m.DatetimeRange(gte=when, lte=when))])
            )
            pts = [p for p in pts if p.payload[key] != last] + tied
        return pts

    async def list(
        self,
        scope: Scope | None,
        *,
        filters: Any = None,
        limit: int | None = 100,
        offset: int = 0,
        archived: bool = False,
    ) -> list[MemoryItem]:
        """Memories in the scope matching the filter, newest first (``created_at``, then ``id``,
        descending; archived versions by ``archived_at``); ``limit=None`` returns them all.

        Raises:
            InvalidFilterError: see :meth:`_where`.
        """
        node = self._where(scope, filters, archived)
        if node is NOTHING or limit == 0 or await self._stored_dims() is None:
            return []
        key = "archived_at" if archived else "created_at"
        try:
            pts = await (self._scroll_all(node) if limit is None else self._newest(node, key, offset + limit))
        except NotFound:
            self._dims = None
            return []
        pts.sort(
            key=lambda p: (p.payload[key], p.payload["id"]), reverse=True
        )  # RFC 3339 UTC text sorts by time
        end = None if limit is None else offset + limit
        return [item_from_payload(p.payload) for p in pts[offset:end]]

    async def count(self, scope: Scope | None = None, *, filters: Any = None) -> int:
        """How many active memories are in the scope and match the filter (exact).

        Raises:
            InvalidFilterError: see :meth:`_where`.
        """
        node = self._where(scope, filters, False)
        if node is NOTHING or await self._stored_dims() is None:
            return 0
        try:
            res = await self._client.call(
                "count", collection_name=self._name, count_filter=_filter(node), exact=True
            )
        except NotFound:
            self._dims = None
            return 0
        return int(res.count)

    # -- search ---------------------------------------------------------------------------------

    async def search(self, query: VectorQuery) -> list[ScoredMemory]:
        """Best matches first: ``dense`` (cosine similarity), ``lexical`` (BM25, > 0) or
        ``hybrid`` (both at once, fused with ``config.fusion``; each hit keeps its per-path scores).

        Raises:
            InvalidInputError: an unknown mode, a missing query embedding (dense, hybrid) or one of
                the wrong length.
            InvalidFilterError: see :meth:`_where`.
        """
        if query.mode not in ("dense", "lexical", "hybrid"):
            raise InvalidInputError(f"unknown search mode {query.mode!r}; expected dense, lexical or hybrid")
        node = self._where(query.scope, query.filters, query.archived)
        emb = query.embedding if query.mode != "lexical" else None
        if query.mode != "lexical" and emb is None:
            raise InvalidInputError(f"{query.mode} search needs a query embedding")
        if query.limit < 1:
            return []
        dims = await self._stored_dims()
        if dims is None:
            return []
        if emb is not None and np.shape(emb) != (dims,):
            raise InvalidInputError(
                f"query embedding has shape {np.shape(emb)}; this collection holds {dims} dims"
            )
        if node is NOTHING:
            return []
        try:
            if query.mode == "dense":
                return await self._dense(query, node)
            if query.mode == "lexical":
                return await self._lexical(query, node)
            dense, lexical = await _together(
                functools.partial(self._dense, query, node), functools.partial(self._lexical, query, node)
            )
            return fuse_hits({"dense": dense, "lexical": lexical}, self.config.fusion.model_dump())[
                : query.limit
            ]
        except NotFound:
            self._dims = None
            return []

    async def _dense(self, query: VectorQuery, node: Node) -> list[ScoredMemory]:
        vec = np.asarray(query.embedding, dtype=np.float32).tolist()
        res = await self._client.call(
            "query_points",
            collection_name=self._name,
            query=vec,
            using=DENSE,
            query_filter=_filter(node),
            limit=query.limit,
            with_payload=True,
            with_vectors=False,
            search_params=m.SearchParams(exact=True) if self.config.exact else None,
        )
        return [
            ScoredMemory(item_from_payload(p.payload), float(p.score), {"dense": float(p.score)})
            for p in res.points
        ]

    async def _lexical(self, query: VectorQuery, node: Node) -> list[ScoredMemory]:
        indices, values = query_vector(query.text or "")
        if not indices:
            return []
        res = await self._client.call(
            "query_points",
            collection_name=self._name,
            query=m.SparseVector(indices=indices, values=values),
            using=SPARSE,
            query_filter=_filter(node),
            limit=query.limit,
            with_payload=True,
            with_vectors=False,
        )
        return [
            ScoredMemory(item_from_payload(p.payload), float(p.score), {"lexical": float(p.score)})
            for p in res.points
        ]

    # -- lifecycle ------------------------------------------------------------------------------

    async def reset(self) -> None:
        """Drop the collection (every memory and archived version); the next write creates it
        again, with that write's embedding length."""
        async with self._lock:
            try:
                await self._client.call("delete_collection", collection_name=self._name)
            except NotFound:
                pass
            self._dims = None
            self._bm25 = (self.config.bm25_k1, self.config.bm25_b, self.config.bm25_avg_len)

    async def aclose(self) -> None:
        """Close the client (a local folder's lock is released). Safe to call twice; a later call
        opens it again."""
        self._dims = None
        await self._client.close()
