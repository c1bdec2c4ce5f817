"""KuzuGraphStore: the GraphStore protocol on embedded Kuzu 0.11."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import numpy as np
from engram.core import Entity, GraphBatch, Relation, Scope
from engram.core.errors import EngramError, InvalidInputError, ProviderError
from pydantic import BaseModel, ConfigDict, Field

from ._schema import (
    CREATE_RELATIONS,
    DELETE_ENTITIES,
    DELETE_RELATIONS,
    ENTITY_COLS,
    RELATION_COLS,
    SCHEMA,
    UPSERT_ENTITIES,
    entity_from,
    entity_row,
    fields_from_url,
    finite_vector,
    hex_where,
    relation_from,
    relation_row,
    scope_hex,
    scope_where,
)

T = TypeVar("T")
_PROVIDER = "kuzu"
_PROJECTED = "engram_scope_filter"
#: Rebuild the vector table once it holds at least this many retired rows and more retired than live.
_COMPACT_MIN_DEAD = 256


def _rows(conn: Any, query: str, params: dict[str, Any] | None = None) -> list[list[Any]]:
    result = conn.execute(query, params or {})
    try:
        return result.get_all()
    finally:
        result.close()


class KuzuGraphStore:
    """Entities and relations in an embedded Kuzu database, with entity similarity served by
    Kuzu's HNSW vector index (cosine).

    URL forms: ``kuzu:///relative/dir/graph.kuzu``, ``kuzu:////absolute/graph.kuzu``,
    ``kuzu://:memory:``; ``?buffer_pool_size=BYTES`` sets the buffer pool.

    Layout: node table ``Entity`` (every field, times as epoch microseconds, the embedding as
    ``DOUBLE[]``), rel table ``RELATES`` (``Entity`` -> ``Entity``, every field of a relation) and,
    from the first embedding on, a vector table ``EntityVec<gen>`` (``FLOAT[dims]``, cosine HNSW
    index). Kuzu 0.11 rejects ``SET`` on an indexed column and its index loses its entry point
    once every indexed row is deleted, so vector rows are never updated or deleted in place: a
    changed or deleted entity's row is marked retired (``live = false``, still a waypoint of the
    HNSW graph) and a new row is added; once retired rows outnumber live ones the table is
    rebuilt as the next generation (and dropped whole when no live row is left).

    Similarity: ``QUERY_VECTOR_INDEX`` over a projected graph that keeps only the live rows of
    the query scope (pre-filtered inside Kuzu); when it returns fewer than ``limit`` hits an exact
    scan of the scope answers instead. Hits are rescored with exact float64 cosine similarity.
    """

    class Config(BaseModel):
        """Attributes:
        path: the database path (Kuzu 0.11 keeps a database in one file plus its WAL); ``":memory:"``
            for an in-memory database. Parent folders are created.
        buffer_pool_size: Kuzu's buffer pool in bytes (Kuzu's default, most of the RAM, when unset).
        ef_search: HNSW candidate-list size per query (higher: more exact, slower).
        max_readers: read connections (and worker threads) in use at once.
        """

        model_config = ConfigDict(extra="forbid")
        path: str
        buffer_pool_size: int | None = Field(default=None, gt=0)
        ef_search: int = Field(default=200, gt=0)
        max_readers: int = Field(default=4, gt=0)

    capabilities: frozenset[str] = frozenset({"persistent", "entity_vectors"})

    def __init__(self, config: Config | None = None, **kwargs: Any) -> None:
        self.config = config or self.Config(**kwargs)
        self.memory = self.config.path == ":memory:"
        if self.memory:
            self.capabilities = frozenset({"entity_vectors"})
        self._db: Any = None
        self._writer: Any = None
        self._idle: list[Any] = []
        self._pool_lock = threading.Lock()
        self._write_lock = threading.RLock()
        self._limiter: anyio.CapacityLimiter | None = None
        self._closed = False
        self._dims: int | None = None
        self._gen = 0
        self._vec: str | None = None  # the vector table's name while one exists

    @classmethod
    def from_url(cls, url: str) -> KuzuGraphStore:
        """Build from ``kuzu:///path``, ``kuzu:////abs/path`` or ``kuzu://:memory:``.

        Raises:
            ConfigurationError: a malformed URL.
        """
        return cls(cls.Config(**fields_from_url(url)))

    # -- plumbing --------------------------------------------------------------------------------

    def _connect(self) -> None:
        """Open the database and create the schema (once, under the write lock)."""
        import kuzu

        if self._closed:
            raise ProviderError("the kuzu graph store is closed", provider=_PROVIDER)
        if self._db is not None:
            return
        kwargs: dict[str, Any] = {}
        if self.config.buffer_pool_size:
            kwargs["buffer_pool_size"] = self.config.buffer_pool_size
        path = self.config.path
        if not self.memory:
            p = Path(path).expanduser()
            p.parent.mkdir(parents=True, exist_ok=True)
            path = str(p)
        db = kuzu.Database(path, **kwargs)
        conn = kuzu.Connection(db)
        try:
            for stmt in SCHEMA:
                _rows(conn, stmt)
            meta = dict(_rows(conn, "MATCH (m:EngramMeta) RETURN m.key, m.value"))
        except BaseException:
            conn.close()
            db.close()
            raise
        self._dims = int(meta["dims"]) if meta.get("dims") else None
        self._gen = int(meta.get("gen") or 0)
        self._vec = f"EntityVec{self._gen}" if self._dims else None
        self._db, self._writer = db, conn

    def _write(self, fn: Callable[..., T], *args: Any) -> T:
        with self._write_lock:
            try:
                self._connect()
                return fn(self._writer, *args)
            except EngramError:
                raise
            except Exception as exc:
                raise ProviderError(f"kuzu graph store failed: {exc}", provider=_PROVIDER) from exc

    def _read(self, fn: Callable[..., T], *args: Any) -> T:
        import kuzu

        with self._write_lock:
            self._connect()
        with self._pool_lock:
            if self._closed:
                raise ProviderError("the kuzu graph store is closed", provider=_PROVIDER)
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = kuzu.Connection(self._db)
        try:
            return fn(conn, *args)
        except EngramError:
            raise
        except Exception as exc:
            raise ProviderError(f"kuzu graph store failed: {exc}", provider=_PROVIDER) from exc
        finally:
            with self._pool_lock:
                if self._closed:
                    conn.close()
                else:
                    self._idle.append(conn)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.config.max_readers)
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    def _set_meta(self, conn: Any, key: str, value: str) -> None:
        _rows(conn, "MERGE (m:EngramMeta {key: $k}) SET m.value = $v", {"k": key, "v": value})

    # -- the vector table ------------------------------------------------------------------------

    @staticmethod
    def _vec_ddl(name: str, dims: int) -> str:
        return (
            f"CREATE NODE TABLE {name}(vid STRING PRIMARY KEY, entity_id STRING, live BOOL, uh STRING, ah STRING,"
            f" rh STRING, embedding FLOAT[{dims}])"
        )

    def _drop_table_if_exists(self, conn: Any, name: str) -> None:
        tables = {r[0] for r in _rows(conn, "CALL SHOW_TABLES() RETURN name")}
        if name not in tables:
            return
        indexes = {r[1] for r in _rows(conn, "CALL SHOW_INDEXES() RETURN *")}
        if f"{name}_idx" in indexes:
            _rows(conn, f"CALL DROP_VECTOR_INDEX('{name}', '{name}_idx')")
        _rows(conn, f"DROP TABLE {name}")

    def _create_vec(self, conn: Any, dims: int) -> None:
        """A new, empty vector table of ``dims`` with its index (auto-commit: Kuzu builds an
        index only outside explicit transactions)."""
        gen = self._gen + 1
        name = f"EntityVec{gen}"
        self._drop_table_if_exists(conn, name)  # a leftover of an interrupted rebuild
        _rows(conn, self._vec_ddl(name, dims))
        _rows(conn, f"CALL CREATE_VECTOR_INDEX('{name}', '{name}_idx', 'embedding', metric := 'cosine')")
        self._set_meta(conn, "gen", str(gen))
        self._set_meta(conn, "dims", str(dims))
        self._gen, self._dims, self._vec = gen, dims, name

    def _drop_vec(self, conn: Any) -> None:
        if self._vec is not None:
            self._drop_table_if_exists(conn, self._vec)
        self._set_meta(conn, "dims", "")
        self._dims, self._vec = None, None

    def _maintain_vec(self, conn: Any) -> None:
        """Drop an all-retired vector table; rebuild one whose retired rows outnumber the live ones."""
        if self._vec is None or self._dims is None:
            return
        # (Kuzu 0.11 sums CASE WHEN v.live ... to 0 here: two counts instead)
        ((live,),) = _rows(conn, f"MATCH (v:{self._vec}) WHERE v.live RETURN count(*)")
        ((total,),) = _rows(conn, f"MATCH (v:{self._vec}) RETURN count(*)")
        live, total = int(live), int(total)
        if live == 0:
            self._drop_vec(conn)
            return
        dead = total - live
        if dead < _COMPACT_MIN_DEAD or dead <= live:
            return
        old, gen = self._vec, self._gen + 1
        name = f"EntityVec{gen}"
        self._drop_table_if_exists(conn, name)
        _rows(conn, self._vec_ddl(name, self._dims))
        _rows(
            conn,
            f"MATCH (v:{old}) WHERE v.live CREATE (:{name} {{vid: v.vid, entity_id: v.entity_id, live: true,"
            " uh: v.uh, ah: v.ah, rh: v.rh, embedding: v.embedding})",
        )
        _rows(conn, f"CALL CREATE_VECTOR_INDEX('{name}', '{name}_idx', 'embedding', metric := 'cosine')")
        self._set_meta(conn, "gen", str(gen))
        self._gen, self._vec = gen, name
        self._drop_table_if_exists(conn, old)

    def _retire(self, conn: Any, entity_ids: list[str]) -> None:
        if self._vec is not None and entity_ids:
            _rows(
                conn,
                f"UNWIND $ids AS i MATCH (v:{self._vec}) WHERE v.entity_id = i AND v.live SET v.live = false",
                {"ids": entity_ids},
            )

    def _add_vectors(self, conn: Any, entities: list[Entity]) -> None:
        rows = [
            {
                "vid": str(uuid.uuid4()),
                "entity_id": e.id,
                "uh": scope_hex(e.user_id) if e.user_id is not None else None,
                "ah": scope_hex(e.agent_id) if e.agent_id is not None else None,
                "rh": scope_hex(e.run_id) if e.run_id is not None else None,
                "embedding": [float(x) for x in e.embedding or ()],
            }
            for e in entities
        ]
        if rows:
            _rows(
                conn,
                f"UNWIND $rows AS row CREATE (:{self._vec} {{vid: row.vid, entity_id: row.entity_id, live: true,"
                " uh: CAST(row.uh AS STRING), ah: CAST(row.ah AS STRING), rh: CAST(row.rh AS STRING),"
                " embedding: row.embedding})",
                {"rows": rows},
            )

    @staticmethod
    def _in_transaction(conn: Any, fn: Callable[[], T]) -> T:
        _rows(conn, "BEGIN TRANSACTION")
        try:
            out = fn()
        except BaseException:
            _rows(conn, "ROLLBACK")
            raise
        _rows(conn, "COMMIT")
        return out

    # -- apply -----------------------------------------------------------------------------------

    def _validate(self, conn: Any, batch: GraphBatch) -> tuple[list[Entity], list[Relation], int | None]:
        entities: dict[str, Entity] = {}
        dims = self._dims
        for e in batch.entities:
            if not isinstance(e, Entity):
                raise InvalidInputError(f"expected an Entity, got {type(e).__name__}")
            e.scope  # noqa: B018 - raises InvalidScopeError for a missing or malformed scope
            if e.embedding is not None:
                vec = finite_vector(e.embedding)
                if vec is None or not vec:
                    raise InvalidInputError(
                        f"entity {e.id}: the embedding must be a non-empty list of finite floats"
                    )
                if dims is None:
                    dims = len(vec)
                elif len(vec) != dims:
                    raise InvalidInputError(
                        f"entity {e.id}: embedding has {len(vec)} values, the store holds {dims}-dimensional ones"
                    )
            entities[e.id] = e
        relations: dict[str, Relation] = {}
        for r in batch.relations:
            if not isinstance(r, Relation):
                raise InvalidInputError(f"expected a Relation, got {type(r).__name__}")
            r.scope  # noqa: B018
            if not r.source_id or not r.destination_id:
                raise InvalidInputError(f"relation {r.id} ({r.triple()}) has no source_id or destination_id")
            relations[r.id] = r
        deleted = set(batch.delete_entities)
        wanted = {i for r in relations.values() for i in (r.source_id, r.destination_id)} - entities.keys()
        missing = wanted & deleted
        lookup = sorted(wanted - deleted)
        if lookup:
            found = {
                row[0]
                for row in _rows(conn, "MATCH (e:Entity) WHERE e.id IN $ids RETURN e.id", {"ids": lookup})
            }
            missing |= set(lookup) - found
        if missing:
            raise InvalidInputError(
                f"relations name entities that are neither stored nor in the batch: {', '.join(sorted(missing))}"
            )
        return list(entities.values()), list(relations.values()), dims

    def _apply(self, conn: Any, batch: GraphBatch) -> None:
        entities, relations, dims = self._validate(conn, batch)
        delete_entities = list(dict.fromkeys(batch.delete_entities))
        delete_relations = list(dict.fromkeys(batch.delete_relations))
        # which upserted entities need a new vector row (their embedding changed, or they are new)
        old: dict[str, np.ndarray | None] = {}
        upsert_ids = [e.id for e in entities]
        if upsert_ids:
            for row in _rows(
                conn,
                "MATCH (e:Entity) WHERE e.id IN $ids RETURN e.id, e.has_embedding, e.embedding",
                {"ids": upsert_ids},
            ):
                old[row[0]] = np.asarray(row[2], dtype=np.float32) if row[1] else None
        for i in delete_entities:
            old.pop(i, None)
        changed = [
            e
            for e in entities
            if (e.embedding is None) != (old.get(e.id) is None)
            or (
                e.embedding is not None
                and not np.array_equal(np.asarray(e.embedding, dtype=np.float32), old[e.id])
            )
        ]
        retire = delete_entities + [e.id for e in changed if e.id in old]
        add = [e for e in changed if e.embedding is not None]
        created = False
        if add and self._vec is None:
            assert dims is not None
            self._create_vec(conn, dims)
            created = True

        def write() -> None:
            if delete_relations:
                _rows(conn, DELETE_RELATIONS, {"ids": delete_relations})
            self._retire(conn, retire)
            if delete_entities:
                _rows(conn, DELETE_ENTITIES, {"ids": delete_entities})
            if entities:
                _rows(conn, UPSERT_ENTITIES, {"rows": [entity_row(e) for e in entities]})
            self._add_vectors(conn, add)
            if relations:
                _rows(conn, DELETE_RELATIONS, {"ids": [r.id for r in relations]})
                _rows(conn, CREATE_RELATIONS, {"rows": [relation_row(r) for r in relations]})

        try:
            self._in_transaction(conn, write)
        except BaseException:
            if created:
                self._maintain_vec(conn)  # drops the table created for this batch (it has no live row)
            raise
        if retire:
            self._maintain_vec(conn)

    async def apply(self, batch: GraphBatch) -> None:
        """Write a batch atomically: its deletes (relations, then entities with their relations),
        then its entities (replaced whole by id), then its relations (replaced whole by id).

        Raises:
            InvalidInputError: a relation names an entity id that is neither stored nor in the
                batch, an embedding of the wrong length or with non-finite values, or an entity or
                relation without a valid scope. Nothing is written.
            ProviderError: Kuzu failed; the transaction is rolled back.
        """
        if batch:
            await self._run(self._write, self._apply, batch)

    # -- reads -----------------------------------------------------------------------------------

    async def entities(
        self,
        scope: Scope,
        *,
        keys: Sequence[str] | None = None,
        ids: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[Entity]:
        """Entities in ``scope``, narrowed to these keys and/or ids; ``created_at``, then ``id``."""
        if (
            (keys is not None and not keys)
            or (ids is not None and not ids)
            or (limit is not None and limit <= 0)
        ):
            return []
        params: dict[str, Any] = {}
        where = [scope_where("e", scope, params)]
        if keys is not None:
            params["keys"] = [str(k) for k in keys]
            where.append("e.key IN $keys")
        if ids is not None:
            params["ids"] = [str(i) for i in ids]
            where.append("e.id IN $ids")
        query = (
            f"MATCH (e:Entity) WHERE {' AND '.join(where)} RETURN {ENTITY_COLS} ORDER BY e.created_at, e.id"
        )
        if limit is not None:
            query += f" LIMIT {int(limit)}"
        rows = await self._run(self._read, _rows, query, params)
        return [entity_from(r) for r in rows]

    async def relations(
        self,
        scope: Scope,
        *,
        entity_ids: Sequence[str] | None = None,
        include_expired: bool = False,
        memory_ids: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[Relation]:
        """Relations in ``scope``, newest first (``created_at`` descending, then ``id`` descending)."""
        if (entity_ids is not None and not entity_ids) or (memory_ids is not None and not memory_ids):
            return []
        if limit is not None and limit <= 0:
            return []
        params: dict[str, Any] = {}
        where = [scope_where("r", scope, params)]
        prefix = ""
        if not include_expired:
            where.append("r.expired_at IS NULL")
        if entity_ids is not None:
            params["eids"] = [str(i) for i in entity_ids]
            where.append("(r.source_id IN $eids OR r.destination_id IN $eids)")
        if memory_ids is not None:
            params["mids"] = [str(m) for m in memory_ids]
            prefix = "WITH $mids AS mids "
            where.append("any(x IN r.memory_ids WHERE list_contains(mids, x))")
        query = (
            f"{prefix}MATCH (:Entity)-[r:RELATES]->(:Entity) WHERE {' AND '.join(where)} RETURN {RELATION_COLS}"
            " ORDER BY r.created_at DESC, r.id DESC"
        )
        if limit is not None:
            query += f" LIMIT {int(limit)}"
        rows = await self._run(self._read, _rows, query, params)
        return [relation_from(r) for r in rows]

    def _similar(self, conn: Any, scope: Scope, query: list[float], limit: int) -> list[str]:
        """Entity ids of the best ``limit`` live vectors in the scope (index first, exact scan when short)."""
        if self._vec is None or self._dims is None:
            return []
        if len(query) != self._dims:
            raise InvalidInputError(
                f"the query embedding has {len(query)} values, the store holds {self._dims}"
            )
        vec = self._vec
        pred = f"n.live AND {hex_where('n', scope)}".replace("'", "\\'")
        _rows(conn, f"CALL PROJECT_GRAPH('{_PROJECTED}', {{'{vec}': '{pred}'}}, [])")
        try:
            hits = _rows(
                conn,
                f"CALL QUERY_VECTOR_INDEX('{_PROJECTED}', '{vec}_idx', $q, $k, efs := $efs)"
                " RETURN node.entity_id ORDER BY distance",
                {"q": query, "k": limit, "efs": max(self.config.ef_search, limit)},
            )
        finally:
            _rows(conn, f"CALL DROP_PROJECTED_GRAPH('{_PROJECTED}')")
        if len(hits) >= limit:
            return [h[0] for h in hits]
        # short: the scope holds fewer than limit vectors, or the approximate search missed some
        params: dict[str, Any] = {"q": query}
        hits = _rows(
            conn,
            f"MATCH (v:{vec}) WHERE v.live AND {hex_where('v', scope)} RETURN v.entity_id,"
            f" array_cosine_similarity(v.embedding, CAST($q AS FLOAT[{self._dims}])) AS s ORDER BY s DESC LIMIT {limit}",
            params,
        )
        return [h[0] for h in hits]

    def _similar_entities(self, conn: Any, scope: Scope, query: list[float], limit: int) -> list[Entity]:
        ids = self._similar(conn, scope, query, limit)
        if not ids:
            return []
        params: dict[str, Any] = {"ids": ids}
        where = scope_where("e", scope, params)
        rows = _rows(conn, f"MATCH (e:Entity) WHERE e.id IN $ids AND {where} RETURN {ENTITY_COLS}", params)
        return [entity_from(r) for r in rows]

    async def similar_entities(
        self, scope: Scope, embedding: Sequence[float], *, limit: int = 10, min_score: float = -1.0
    ) -> list[tuple[Entity, float]]:
        """Entities in ``scope`` with an embedding, by cosine similarity (in [-1, 1]) to
        ``embedding``, best first (ties by id), at most ``limit``, each scoring >= ``min_score``.

        Raises:
            InvalidInputError: the embedding is not a list of finite floats, or its length differs
                from the stored embeddings'.
        """
        query = finite_vector(embedding)
        if query is None or not query:
            raise InvalidInputError("the query embedding must be a non-empty list of finite floats")
        q = np.asarray(query, dtype=np.float64)
        norm = float(np.linalg.norm(q))
        if limit <= 0 or norm == 0.0:
            return []
        # PROJECT_GRAPH runs as a write transaction in Kuzu: the query shares the write connection and lock
        found = await self._run(self._write, self._similar_entities, scope, query, int(limit))
        scored: list[tuple[Entity, float]] = []
        for e in found:
            v = np.asarray(e.embedding, dtype=np.float64)
            n = float(np.linalg.norm(v))
            score = float(v @ q / (n * norm)) if n else 0.0
            if score >= min_score:
                scored.append((e, score))
        scored.sort(key=lambda p: (-p[1], p[0].id))
        return scored[:limit]

    def _neighbors(
        self, conn: Any, scope: Scope, ids: list[str], keys: list[str], depth: int, limit: int
    ) -> list[tuple[Relation, int]]:
        params: dict[str, Any] = {}
        where = scope_where("r", scope, params)
        query = (
            "MATCH (a:Entity)-[r:RELATES]-(:Entity) WHERE a.id IN $frontier AND r.expired_at IS NULL AND "
            f"{where} RETURN {RELATION_COLS}"
        )
        seed_params: dict[str, Any] = {"ids": ids, "keys": keys}
        seed_query = (
            f"MATCH (e:Entity) WHERE {scope_where('e', scope, seed_params)} AND (e.id IN $ids OR e.key IN $keys)"
            " RETURN e.id"
        )
        seen: set[str] = set()
        out: list[tuple[Relation, int]] = []
        _rows(conn, "BEGIN TRANSACTION READ ONLY")
        try:
            frontier = [r[0] for r in _rows(conn, seed_query, seed_params)]
            visited = set(frontier)
            for hop in range(1, depth + 1):
                if not frontier:
                    break
                nxt: list[str] = []
                for row in _rows(conn, query, {**params, "frontier": frontier}):
                    if row[0] in seen:
                        continue
                    seen.add(row[0])
                    rel = relation_from(row)
                    out.append((rel, hop))
                    for node in (rel.source_id, rel.destination_id):
                        if node not in visited:
                            visited.add(node)
                            nxt.append(node)
                frontier = nxt
                if len(out) >= limit:  # deeper relations rank after every one found so far
                    break
        finally:
            _rows(conn, "COMMIT")
        out.sort(key=lambda p: (p[1], -p[0].mentions, -p[0].created_at.timestamp(), p[0].id))
        return out[:limit]

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
        ``entity_ids`` or one of ``keys``), walked in both directions, each at its fewest hops;
        ordered by hops, then ``mentions`` descending, then ``created_at`` newest first (then id)."""
        ids = list(dict.fromkeys(str(i) for i in entity_ids))
        wanted = list(dict.fromkeys(str(k) for k in keys))
        if not (ids or wanted) or depth < 1 or limit <= 0:
            return []
        return await self._run(self._read, self._neighbors, scope, ids, wanted, int(depth), int(limit))

    # -- deletes ---------------------------------------------------------------------------------

    def _delete_orphans(self, conn: Any, touched: list[str]) -> None:
        if not touched:
            return
        rows = _rows(
            conn,
            "MATCH (e:Entity) WHERE e.id IN $ids OPTIONAL MATCH (e)-[r:RELATES]-() WITH e, count(r) AS n"
            " WHERE n = 0 RETURN e.id",
            {"ids": touched},
        )
        orphans = [r[0] for r in rows]
        if orphans:
            self._retire(conn, orphans)
            _rows(conn, DELETE_ENTITIES, {"ids": orphans})

    def _delete_memories(self, conn: Any, memory_ids: list[str]) -> int:
        gone = set(memory_ids)

        def write() -> tuple[int, bool]:
            rows = _rows(
                conn,
                "WITH $mids AS mids MATCH (:Entity)-[r:RELATES]->(:Entity)"
                " WHERE any(x IN r.memory_ids WHERE list_contains(mids, x))"
                " RETURN r.id, r.memory_ids, r.source_id, r.destination_id",
                {"mids": memory_ids},
            )
            updates, deletes, touched = [], [], []
            for rid, mids, src, dst in rows:
                keep = [m for m in mids if m not in gone]
                if keep:
                    updates.append({"id": rid, "m": keep})
                else:
                    deletes.append(rid)
                    touched += [src, dst]
            if updates:
                _rows(
                    conn,
                    "UNWIND $rows AS row MATCH ()-[r:RELATES]->() WHERE r.id = row.id SET r.memory_ids = row.m",
                    {"rows": updates},
                )
            if deletes:
                _rows(conn, DELETE_RELATIONS, {"ids": deletes})
            self._delete_orphans(conn, list(dict.fromkeys(touched)))
            return len(deletes), bool(touched)

        n, touched_any = self._in_transaction(conn, write)
        if touched_any:
            self._maintain_vec(conn)
        return n

    async def delete_memories(self, memory_ids: Sequence[str]) -> int:
        """Drop these memory ids from every relation's provenance, delete the relations left with
        none, then the entities those touched that no relation touches any more.

        Returns:
            The number of relations deleted.
        """
        ids = list(dict.fromkeys(str(m) for m in memory_ids))
        if not ids:
            return 0
        return await self._run(self._write, self._delete_memories, ids)

    def _delete_scope(self, conn: Any, scope: Scope) -> None:
        def write() -> None:
            params: dict[str, Any] = {}
            where_e = scope_where("e", scope, params)
            ids = [r[0] for r in _rows(conn, f"MATCH (e:Entity) WHERE {where_e} RETURN e.id", params)]
            params = {}
            where_r = scope_where("r", scope, params)
            _rows(conn, f"MATCH ()-[r:RELATES]->() WHERE {where_r} DELETE r", params)
            if ids:
                self._retire(conn, ids)
                _rows(conn, DELETE_ENTITIES, {"ids": ids})

        self._in_transaction(conn, write)
        self._maintain_vec(conn)

    async def delete_scope(self, scope: Scope) -> None:
        """Delete every entity and relation in ``scope`` (a query scope: fields left unset match anything)."""
        await self._run(self._write, self._delete_scope, scope)

    def _reset(self, conn: Any) -> None:
        def write() -> None:
            _rows(conn, "MATCH ()-[r:RELATES]->() DELETE r")
            _rows(conn, "MATCH (e:Entity) DELETE e")

        self._in_transaction(conn, write)
        self._drop_vec(conn)

    async def reset(self) -> None:
        """Delete every entity and relation, and the vector table (the next embedding may have any length)."""
        await self._run(self._write, self._reset)

    def _close(self) -> None:
        with self._write_lock, self._pool_lock:
            self._closed = True
            conns, self._idle = self._idle, []
            if self._writer is not None:
                conns.append(self._writer)
            for c in conns:
                c.close()
            if self._db is not None:
                self._db.close()
            self._db = self._writer = None

    async def aclose(self) -> None:
        """Close the connections and the database (its file lock is released)."""
        await anyio.to_thread.run_sync(self._close)

    async def __aenter__(self) -> KuzuGraphStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
