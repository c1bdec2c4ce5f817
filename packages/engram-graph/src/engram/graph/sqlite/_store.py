from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from engram.core import Entity, GraphBatch, Relation, Scope
from engram.core.errors import InvalidInputError, ProviderError
from engram.graph.memory._common import (
    EntityIndex,
    ScopeTuple,
    check_batch,
    endpoints_outside,
    unknown_entities,
    utc,
)
from engram.history.sqlite import Database, default_db_path, from_micros, path_from_url, to_micros
from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1

# engram_meta is shared with the vector store (same file): the graph's rows are prefixed "graph_".
SCHEMA = [
    "CREATE TABLE IF NOT EXISTS engram_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "INSERT OR IGNORE INTO engram_meta (key, value) VALUES ('graph_schema_version', '1'), ('graph_version', '0')",
    """CREATE TABLE IF NOT EXISTS graph_entities (
        seq        INTEGER PRIMARY KEY,
        id         TEXT NOT NULL UNIQUE,
        name       TEXT NOT NULL,
        type       TEXT NOT NULL,
        key        TEXT NOT NULL,
        user_id    TEXT,
        agent_id   TEXT,
        run_id     TEXT,
        embedding  BLOB,              -- float32, little-endian; NULL when none
        mentions   INTEGER NOT NULL,
        created_at INTEGER NOT NULL,  -- microseconds since the Unix epoch, UTC
        updated_at INTEGER
    )""",
    # one key per exact scope (ids are never empty, so '' stands for None)
    "CREATE UNIQUE INDEX IF NOT EXISTS graph_entities_slot ON graph_entities"
    " (ifnull(user_id, ''), ifnull(agent_id, ''), ifnull(run_id, ''), key)",
    "CREATE INDEX IF NOT EXISTS graph_entities_key ON graph_entities (key)",
    "CREATE INDEX IF NOT EXISTS graph_entities_by_user ON graph_entities (user_id, created_at) WHERE user_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS graph_entities_by_agent ON graph_entities (agent_id, created_at)"
    " WHERE agent_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS graph_entities_by_run ON graph_entities (run_id, created_at) WHERE run_id IS NOT NULL",
    """CREATE TABLE IF NOT EXISTS graph_relations (
        seq            INTEGER PRIMARY KEY,
        id             TEXT NOT NULL UNIQUE,
        source         TEXT NOT NULL,
        relation       TEXT NOT NULL,
        destination    TEXT NOT NULL,
        user_id        TEXT,
        agent_id       TEXT,
        run_id         TEXT,
        mentions       INTEGER NOT NULL,
        valid_at       INTEGER,
        invalid_at     INTEGER,
        created_at     INTEGER NOT NULL,
        expired_at     INTEGER,
        source_id      TEXT NOT NULL,
        destination_id TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS graph_relations_source ON graph_relations (source_id)",
    "CREATE INDEX IF NOT EXISTS graph_relations_destination ON graph_relations (destination_id)",
    "CREATE INDEX IF NOT EXISTS graph_relations_by_user ON graph_relations (user_id, created_at)"
    " WHERE user_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS graph_relations_by_agent ON graph_relations (agent_id, created_at)"
    " WHERE agent_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS graph_relations_by_run ON graph_relations (run_id, created_at) WHERE run_id IS NOT NULL",
    """CREATE TABLE IF NOT EXISTS graph_relation_memories (
        relation_id TEXT NOT NULL REFERENCES graph_relations (id) ON DELETE CASCADE,
        pos         INTEGER NOT NULL,  -- place in the relation's memory_ids
        memory_id   TEXT NOT NULL,
        PRIMARY KEY (relation_id, pos)
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS graph_relation_memories_by_memory ON graph_relation_memories (memory_id)",
]

_ENTITY_COLS = "e.id, e.name, e.type, e.key, e.user_id, e.agent_id, e.run_id, e.embedding, e.mentions, e.created_at, e.updated_at"
_RELATION_COLS = (
    "r.id, r.source, r.relation, r.destination, r.user_id, r.agent_id, r.run_id, r.mentions, r.valid_at,"
    " r.invalid_at, r.created_at, r.expired_at, r.source_id, r.destination_id,"
    " (SELECT json_group_array(memory_id) FROM (SELECT m.memory_id FROM graph_relation_memories m"
    " WHERE m.relation_id = r.id ORDER BY m.pos))"
)
_UPSERT_ENTITY = (
    "INSERT INTO graph_entities (id, name, type, key, user_id, agent_id, run_id, embedding, mentions, created_at,"
    " updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (id) DO UPDATE SET name = excluded.name,"
    " type = excluded.type, key = excluded.key, user_id = excluded.user_id, agent_id = excluded.agent_id,"
    " run_id = excluded.run_id, embedding = excluded.embedding, mentions = excluded.mentions,"
    " created_at = excluded.created_at, updated_at = excluded.updated_at"
)
_UPSERT_RELATION = (
    "INSERT INTO graph_relations (id, source, relation, destination, user_id, agent_id, run_id, mentions, valid_at,"
    " invalid_at, created_at, expired_at, source_id, destination_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
    " ON CONFLICT (id) DO UPDATE SET source = excluded.source, relation = excluded.relation,"
    " destination = excluded.destination, user_id = excluded.user_id, agent_id = excluded.agent_id,"
    " run_id = excluded.run_id, mentions = excluded.mentions, valid_at = excluded.valid_at,"
    " invalid_at = excluded.invalid_at, created_at = excluded.created_at, expired_at = excluded.expired_at,"
    " source_id = excluded.source_id, destination_id = excluded.destination_id"
)
# relations touching any entity of a JSON array, through the two endpoint indexes
_TOUCHING = (
    "SELECT seq FROM graph_relations WHERE source_id IN (SELECT value FROM json_each(?1))"
    " UNION SELECT seq FROM graph_relations WHERE destination_id IN (SELECT value FROM json_each(?1))"
)


def _setup(conn: sqlite3.Connection) -> None:
    for stmt in SCHEMA:
        conn.execute(stmt)
    row = conn.execute("SELECT value FROM engram_meta WHERE key = 'graph_schema_version'").fetchone()
    if int(row[0]) > SCHEMA_VERSION:
        raise ProviderError(
            f"the graph tables are schema {row[0]}, newer than this engram's ({SCHEMA_VERSION}); upgrade engram",
            provider="sqlite",
        )


def _scope_sql(scope: Scope, params: list[Any], prefix: str) -> str:
    parts = []
    for name, value in scope.items():
        parts.append(f"{prefix}{name} = ?")
        params.append(value)
    return " AND ".join(parts)


def _micros(dt: Any) -> int | None:
    t = utc(dt)
    return to_micros(t) if t is not None else None


def _time(us: int | None) -> Any:
    return from_micros(us) if us is not None else None


def _row_entity(r: Sequence[Any]) -> Entity:
    return Entity(
        id=r[0], name=r[1], type=r[2], key=r[3], user_id=r[4], agent_id=r[5], run_id=r[6],
        embedding=np.frombuffer(r[7], dtype="<f4").tolist() if r[7] is not None else None,
        mentions=r[8], created_at=from_micros(r[9]), updated_at=_time(r[10]),
    )  # fmt: skip


def _row_relation(r: Sequence[Any]) -> Relation:
    return Relation(
        id=r[0], source=r[1], relation=r[2], destination=r[3], user_id=r[4], agent_id=r[5], run_id=r[6],
        mentions=r[7], valid_at=_time(r[8]), invalid_at=_time(r[9]), created_at=from_micros(r[10]),
        expired_at=_time(r[11]), source_id=r[12], destination_id=r[13], memory_ids=json.loads(r[14]),
    )  # fmt: skip


def _bump(conn: sqlite3.Connection) -> int:
    return int(
        conn.execute(
            "UPDATE engram_meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'graph_version' RETURNING value"
        ).fetchone()[0]
    )


def _delete_touching(conn: sqlite3.Connection, entity_ids: str) -> None:
    """Delete the relations touching the entities of a JSON array (their provenance cascades)."""
    conn.execute(f"DELETE FROM graph_relations WHERE seq IN ({_TOUCHING})", (entity_ids,))


class SQLiteGraphStore:
    """The default graph store: entities and relations in tables of the memories' SQLite file.

    - ``graph_entities`` (unique per exact scope and key; the embedding a float32 blob),
      ``graph_relations`` (times as integer microseconds, UTC) and ``graph_relation_memories``
      (each relation's provenance, one row per memory id, indexed by memory id so that
      :meth:`delete_memories` and the ``memory_ids`` filter never scan). The rows of
      ``engram_meta`` it owns are prefixed ``graph_``; the vector store and the history share the
      file and their tables undisturbed.
    - ``apply`` runs in one ``BEGIN IMMEDIATE`` transaction (the shared
      :class:`~engram.history.sqlite.Database`): a batch that fails validation rolls back whole.
    - ``neighbors`` is one indexed query per hop (both endpoint indexes), in one worker thread.
    - ``similar_entities`` runs numpy over an in-process float32 matrix of the normalised entity
      embeddings (cosine similarity), loaded on first use and kept in step with this store's
      writes; a write by another process (``engram_meta`` ``graph_version``) makes it reload.

    URL form: ``sqlite:///path/engram.db`` (``sqlite:////abs/path.db``, ``sqlite:///:memory:``).
    """

    class Config(BaseModel):
        """Attributes:
        path: database file; default ``<user data dir>/engram/engram.db`` (the file the SQLite
            vector store uses); ``":memory:"`` for none.
        busy_timeout: seconds to wait for another process's write lock.
        """

        model_config = ConfigDict(extra="forbid")
        path: str = ""
        busy_timeout: float = Field(default=30.0, gt=0)

    capabilities: frozenset[str] = frozenset({"persistent"})

    def __init__(self, config: Config | None = None, **kwargs: Any) -> None:
        self.config = config or self.Config(**kwargs)
        path = self.config.path or str(default_db_path())
        if path != ":memory:":
            path = str(Path(path).expanduser())
        else:
            self.capabilities = frozenset()
        self.path = path
        self._db = Database(path, _setup, busy_timeout=self.config.busy_timeout)
        self._index: EntityIndex | None = None
        self._index_version = -1
        self._index_lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str) -> SQLiteGraphStore:
        """Build from ``sqlite:///path``.

        Raises:
            ConfigurationError: not a ``sqlite://`` URL, or one with a host.
        """
        return cls(cls.Config(path=path_from_url(url)))

    # -- writes --------------------------------------------------------------------------------

    async def apply(self, batch: GraphBatch) -> None:
        """Write a batch in one transaction: deletes first (relations, then entities with the
        relations touching them), then entities, then relations, each replacing a stored one
        with its id.

        Raises:
            InvalidInputError: a relation names an entity id that is neither stored (and not deleted
                by this batch) nor in the batch; an embedding of another length than the stored
                ones, or with NaN; an entity whose key another entity holds in the same scope.
                Nothing is written.
            ProviderError: SQLite failed (nothing is written).
        """
        if not batch:
            return
        dims, vectors = check_batch(batch, None)
        await self._db.write(self._apply_tx, batch, dims, vectors, after=self._after_write)

    def _apply_tx(
        self, conn: sqlite3.Connection, batch: GraphBatch, dims: int | None, vectors: dict[str, np.ndarray]
    ) -> tuple[int, list[tuple[str, ScopeTuple, np.ndarray | None]], list[str]]:
        dropped: list[str] = []
        if batch.delete_relations:
            conn.execute(
                "DELETE FROM graph_relations WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(batch.delete_relations),),
            )
        if batch.delete_entities:
            doomed = json.dumps(batch.delete_entities)
            _delete_touching(conn, doomed)
            rows = conn.execute(
                "DELETE FROM graph_entities WHERE id IN (SELECT value FROM json_each(?)) RETURNING id",
                (doomed,),
            )
            dropped = [r[0] for r in rows]
        if dims is not None:
            row = conn.execute("SELECT value FROM engram_meta WHERE key = 'graph_dims'").fetchone()
            if row is None:
                conn.execute("INSERT INTO engram_meta (key, value) VALUES ('graph_dims', ?)", (str(dims),))
            elif int(row[0]) != dims:
                raise InvalidInputError(
                    f"this store holds {row[0]}-dimensional entity embeddings; got {dims}"
                )
        puts: list[tuple[str, ScopeTuple, np.ndarray | None]] = []
        rows_e = []
        for e in batch.entities:
            vec = vectors.get(e.id)
            blob = vec.astype("<f4").tobytes() if vec is not None else None
            rows_e.append((e.id, e.name, e.type, e.key, e.user_id, e.agent_id, e.run_id, blob, e.mentions,
                           _micros(e.created_at), _micros(e.updated_at)))  # fmt: skip
            puts.append((e.id, (e.user_id, e.agent_id, e.run_id), vec))
        try:
            conn.executemany(_UPSERT_ENTITY, rows_e)
        except sqlite3.IntegrityError as exc:
            raise InvalidInputError(f"an entity's key is held by another entity of its scope: {exc}") from exc
        outside = endpoints_outside(batch)
        if outside:
            missing = [
                r[0]
                for r in conn.execute(
                    "SELECT value FROM json_each(?) WHERE value NOT IN (SELECT id FROM graph_entities)",
                    (json.dumps(sorted(outside)),),
                )
            ]
            if missing:
                raise unknown_entities(missing)
        if batch.relations:
            conn.executemany(
                _UPSERT_RELATION,
                [
                    (r.id, r.source, r.relation, r.destination, r.user_id, r.agent_id, r.run_id, r.mentions,
                     _micros(r.valid_at), _micros(r.invalid_at), _micros(r.created_at), _micros(r.expired_at),
                     r.source_id, r.destination_id)
                    for r in batch.relations
                ],
            )  # fmt: skip
            conn.execute(
                "DELETE FROM graph_relation_memories WHERE relation_id IN (SELECT value FROM json_each(?))",
                (json.dumps([r.id for r in batch.relations]),),
            )
            conn.executemany(
                "INSERT OR REPLACE INTO graph_relation_memories (relation_id, pos, memory_id) VALUES (?,?,?)",
                [(r.id, i, m) for r in batch.relations for i, m in enumerate(r.memory_ids)],
            )
        return _bump(conn), puts, dropped

    def _after_write(self, result: tuple[Any, ...]) -> None:
        """Bring the entity-vector index in step with a committed write (called under the write lock):
        ``result`` starts ``(version, [(entity id, scope, embedding or None)], [dropped entity ids])``."""
        version, puts, dropped = result[:3]
        with self._index_lock:
            idx = self._index
            if idx is None:
                return
            if self._index_version != version - 1:  # another process wrote in between: reload on next use
                self._index = None
                return
            for eid in dropped:
                idx.drop(eid)
            for eid, scope, vec in puts:
                if vec is None:
                    idx.drop(eid)
                elif vec.size == idx.dims:
                    idx.put(eid, scope, vec)
                else:  # the first embeddings after the store emptied: a new length
                    self._index = None
                    return
            self._index_version = version

    async def delete_memories(self, memory_ids: Sequence[str]) -> int:
        """Drop these memory ids from every relation's provenance; delete the relations left with
        none, then their endpoint entities that no relation touches any more. One transaction,
        through the ``memory_id`` index.

        Returns:
            The number of relations deleted.

        Raises:
            ProviderError: SQLite failed (nothing is changed).
        """
        if not memory_ids:
            return 0
        return (await self._db.write(self._forget_tx, json.dumps(list(memory_ids)), after=self._after_write))[
            3
        ]

    def _forget_tx(self, conn: sqlite3.Connection, mids: str) -> tuple[int, list[Any], list[str], int]:
        rels = json.dumps(
            [
                r[0]
                for r in conn.execute(
                    "SELECT DISTINCT relation_id FROM graph_relation_memories"
                    " WHERE memory_id IN (SELECT value FROM json_each(?))",
                    (mids,),
                )
            ]
        )
        conn.execute(
            "DELETE FROM graph_relation_memories WHERE memory_id IN (SELECT value FROM json_each(?))", (mids,)
        )
        ends = conn.execute(
            "DELETE FROM graph_relations WHERE id IN (SELECT value FROM json_each(?)) AND NOT EXISTS"
            " (SELECT 1 FROM graph_relation_memories m WHERE m.relation_id = graph_relations.id)"
            " RETURNING source_id, destination_id",
            (rels,),
        ).fetchall()
        orphans = json.dumps(sorted({i for pair in ends for i in pair}))
        dropped = [
            r[0]
            for r in conn.execute(
                "DELETE FROM graph_entities WHERE id IN (SELECT value FROM json_each(?))"
                " AND NOT EXISTS (SELECT 1 FROM graph_relations r WHERE r.source_id = graph_entities.id)"
                " AND NOT EXISTS (SELECT 1 FROM graph_relations r WHERE r.destination_id = graph_entities.id)"
                " RETURNING id",
                (orphans,),
            )
        ]
        return _bump(conn), [], dropped, len(ends)

    async def delete_scope(self, scope: Scope) -> None:
        """Delete every entity and relation in ``scope`` (and any relation touching those entities).

        Raises:
            ProviderError: SQLite failed (nothing is changed).
        """

        def run(conn: sqlite3.Connection) -> tuple[int, list[Any], list[str]]:
            params: list[Any] = []
            conn.execute(f"DELETE FROM graph_relations WHERE {_scope_sql(scope, params, '')}", params)
            params = []
            where = _scope_sql(scope, params, "")
            dropped = [
                r[0] for r in conn.execute(f"DELETE FROM graph_entities WHERE {where} RETURNING id", params)
            ]
            if dropped:
                _delete_touching(conn, json.dumps(dropped))
            return _bump(conn), [], dropped

        await self._db.write(run, after=self._after_write)

    async def reset(self) -> None:
        """Delete every entity and relation (the file's other tables are untouched).

        Raises:
            ProviderError: SQLite failed.
        """

        def run(conn: sqlite3.Connection) -> int:
            conn.execute("DELETE FROM graph_relation_memories")
            conn.execute("DELETE FROM graph_relations")
            conn.execute("DELETE FROM graph_entities")
            conn.execute("DELETE FROM engram_meta WHERE key = 'graph_dims'")
            return _bump(conn)

        def after(_: int) -> None:
            with self._index_lock:
                self._index = None

        await self._db.write(run, after=after)

    # -- reads ---------------------------------------------------------------------------------

    async def entities(
        self,
        scope: Scope,
        *,
        keys: Sequence[str] | None = None,
        ids: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[Entity]:
        """Entities in ``scope``, narrowed to these keys and/or ids (an empty sequence matches
        nothing), ``created_at`` then ``id`` order, at most ``limit``.

        Raises:
            ProviderError: SQLite failed.
        """
        if (keys is not None and not keys) or (ids is not None and not ids):
            return []
        params: list[Any] = []
        # "+e.": a lookup by key or id goes through that index, not through the scope's (which
        # would test every entity of the scope)
        where = [_scope_sql(scope, params, "+e." if keys is not None or ids is not None else "e.")]
        if ids is not None:
            where.append("e.id IN (SELECT value FROM json_each(?))")
            params.append(json.dumps(list(ids)))
        if keys is not None:
            where.append("e.key IN (SELECT value FROM json_each(?))")
            params.append(json.dumps(list(keys)))
        params.append(-1 if limit is None else limit)
        sql = f"SELECT {_ENTITY_COLS} FROM graph_entities e WHERE {' AND '.join(where)} ORDER BY e.created_at, e.id LIMIT ?"
        return await self._db.read(lambda c: [_row_entity(r) for r in c.execute(sql, params)])

    async def similar_entities(
        self, scope: Scope, embedding: Sequence[float], *, limit: int = 10, min_score: float = -1.0
    ) -> list[tuple[Entity, float]]:
        """Entities in ``scope`` with an embedding, by cosine similarity (in [-1, 1]) to
        ``embedding`` (dims floats), best first, at most ``limit``, each scoring >= ``min_score``.

        Raises:
            InvalidInputError: the query's length differs from the stored embeddings'.
            ProviderError: SQLite failed.
        """
        query = list(embedding)

        def run(conn: sqlite3.Connection) -> list[tuple[Entity, float]]:
            idx = self._load_index(conn)
            if idx is None:
                return []
            with self._index_lock:
                hits = idx.top(scope, query, limit, min_score)
            if not hits:
                return []
            rows = conn.execute(
                f"SELECT {_ENTITY_COLS} FROM graph_entities e WHERE e.id IN (SELECT value FROM json_each(?))",
                (json.dumps([i for i, _ in hits]),),
            )
            found = {r[0]: _row_entity(r) for r in rows}
            return [(found[i], s) for i, s in hits if i in found]

        return await self._db.read(run)

    def _load_index(self, conn: sqlite3.Connection) -> EntityIndex | None:
        """The entity-vector index, reloaded when the file changed behind it."""

        def version() -> int:
            return int(
                conn.execute("SELECT value FROM engram_meta WHERE key = 'graph_version'").fetchone()[0]
            )

        if self._index is not None and self._index_version == version():
            return self._index
        with self._db.write_lock:  # no write of ours is between its commit and its index update now
            v = version()
            if self._index is not None and self._index_version == v:
                return self._index
            row = conn.execute("SELECT value FROM engram_meta WHERE key = 'graph_dims'").fetchone()
            if row is None:
                return None
            idx = EntityIndex(int(row[0]))
            cur = conn.execute(
                "SELECT id, user_id, agent_id, run_id, embedding FROM graph_entities WHERE embedding IS NOT NULL"
            )
            while rows := cur.fetchmany(1024):
                vecs = np.frombuffer(b"".join(r[4] for r in rows), dtype="<f4").reshape(len(rows), idx.dims)
                for r, vec in zip(rows, vecs, strict=True):
                    idx.put(r[0], (r[1], r[2], r[3]), vec)
            with self._index_lock:
                self._index, self._index_version = idx, v
            return idx

    async def relations(
        self,
        scope: Scope,
        *,
        entity_ids: Sequence[str] | None = None,
        include_expired: bool = False,
        memory_ids: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[Relation]:
        """Relations in ``scope``: current ones unless ``include_expired``; narrowed to those
        touching ``entity_ids`` and/or stated by ``memory_ids`` (an empty sequence matches nothing);
        ``created_at`` newest first, then ``id`` descending; at most ``limit``.

        Raises:
            ProviderError: SQLite failed.
        """
        if (entity_ids is not None and not entity_ids) or (memory_ids is not None and not memory_ids):
            return []
        params: list[Any] = []
        where = [_scope_sql(scope, params, "r.")]
        if not include_expired:
            where.append("r.expired_at IS NULL")
        if entity_ids is not None:
            where.append(f"r.seq IN ({_TOUCHING.replace('?1', '?')})")
            params += [json.dumps(list(entity_ids))] * 2
        if memory_ids is not None:
            where.append(
                "r.id IN (SELECT relation_id FROM graph_relation_memories WHERE memory_id IN"
                " (SELECT value FROM json_each(?)))"
            )
            params.append(json.dumps(list(memory_ids)))
        params.append(-1 if limit is None else limit)
        sql = (
            f"SELECT {_RELATION_COLS} FROM graph_relations r WHERE {' AND '.join(where)}"
            " ORDER BY r.created_at DESC, r.id DESC LIMIT ?"
        )
        return await self._db.read(lambda c: [_row_relation(r) for r in c.execute(sql, params)])

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
        ``entity_ids`` or ``keys``), walked in both directions, each with its hop count (1 =
        touches a seed); fewest hops first, then ``mentions`` descending, then ``created_at`` newest
        first, then ``id`` descending; at most ``limit``.

        Breadth first, one query per hop over the two endpoint indexes, all in one worker thread.

        Raises:
            ProviderError: SQLite failed.
        """
        if depth < 1 or limit < 1 or not (entity_ids or keys):
            return []

        def run(conn: sqlite3.Connection) -> list[tuple[Relation, int]]:
            params: list[Any] = []
            scoped = _scope_sql(scope, params, "")
            pinned = _scope_sql(scope, [], "+")  # seeds by id or key use those indexes (see entities)
            seeds = conn.execute(
                f"SELECT id FROM graph_entities WHERE {pinned} AND id IN (SELECT value FROM json_each(?))"
                f" UNION SELECT id FROM graph_entities WHERE {pinned} AND key IN (SELECT value FROM json_each(?))",
                [*params, json.dumps(list(entity_ids)), *params, json.dumps(list(keys))],
            )
            seen = {r[0] for r in seeds}
            frontier = list(seen)
            found: dict[str, int] = {}
            step = (
                f"SELECT id, source_id, destination_id FROM graph_relations WHERE seq IN ({_TOUCHING.replace('?1', '?')})"
                f" AND expired_at IS NULL AND {scoped}"
            )
            # the last hop needs only its best `limit` rows in the final order (at most len(found)
            # of them are already found, and at most limit - len(found) more are wanted)
            last_step = f"{step} ORDER BY mentions DESC, created_at DESC, id DESC LIMIT {int(limit)}"
            for hop in range(1, depth + 1):
                # results go fewest hops first: once `limit` relations are found, farther hops
                # cannot make the cut, so the walk stops there (a hub one hop away is not expanded)
                if not frontier or len(found) >= limit:
                    break
                ids = json.dumps(frontier)
                frontier = []
                last = hop == depth
                for rid, src, dst in conn.execute(last_step if last else step, [ids, ids, *params]):
                    if rid in found:
                        continue
                    found[rid] = hop
                    if last:
                        if len(found) >= limit:  # rows come in the final order: the rest cannot make it
                            break
                        continue
                    for other in (src, dst):
                        if other not in seen:
                            seen.add(other)
                            frontier.append(other)
            if not found:
                return []
            rows = conn.execute(
                f"SELECT {_RELATION_COLS}, h.value FROM json_each(?) h JOIN graph_relations r ON r.id = h.key"
                " ORDER BY h.value, r.mentions DESC, r.created_at DESC, r.id DESC LIMIT ?",
                (json.dumps(found), limit),
            )
            return [(_row_relation(r), int(r[-1])) for r in rows]

        return await self._db.read(run)

    # -- lifecycle -----------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the connections; later calls raise :class:`~engram.core.errors.ProviderError`."""
        self._db.close()
        with self._index_lock:
            self._index = None

    async def __aenter__(self) -> SQLiteGraphStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
