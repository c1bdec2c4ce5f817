from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from engram.core import (
    Filter,
    FusionConfig,
    HistoryEvent,
    MemoryItem,
    Scope,
    ScoredMemory,
    VectorQuery,
    WriteBatch,
    fuse_hits,
    utcnow,
)
from engram.core._decay import check_access_time
from engram.core.errors import InvalidInputError
from engram.history.sqlite import (
    HISTORY_SCHEMA,
    Database,
    create_schema,
    default_db_path,
    from_micros,
    insert_events,
    path_from_url,
    select_history,
    to_micros,
)
from pydantic import BaseModel, ConfigDict, Field

from ._neighbors import neighbors
from ._sql import filter_sql, is_key_lookup, register_functions, scope_sql
from ._stopwords import STOP_WORDS

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS engram_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO engram_meta (key, value) VALUES ('schema_version', '1'), ('version', '0');
CREATE TABLE IF NOT EXISTS memories (
    seq        INTEGER PRIMARY KEY,
    id         TEXT NOT NULL,
    memory     TEXT NOT NULL,
    hash       TEXT NOT NULL,
    user_id    TEXT,
    agent_id   TEXT,
    run_id     TEXT,
    metadata   TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    updated_at INTEGER,
    archived_at    INTEGER,  -- NULL for the active version, set on an archived version
    archive_reason TEXT,
    speaker    TEXT GENERATED ALWAYS AS (json_extract(metadata, '$.speaker')) VIRTUAL,
    access_count     INTEGER NOT NULL DEFAULT 0,  -- rehearsals (see record_access)
    last_accessed_at INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS memories_active_id ON memories (id) WHERE archived_at IS NULL;
CREATE INDEX IF NOT EXISTS memories_archived_id ON memories (id) WHERE archived_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS memories_active_hash ON memories (hash) WHERE archived_at IS NULL;
CREATE TABLE IF NOT EXISTS memory_vectors (
    seq       INTEGER PRIMARY KEY,
    embedding BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS memories_by_user ON memories (user_id, created_at) WHERE user_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS memories_by_agent ON memories (agent_id, created_at) WHERE agent_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS memories_by_run ON memories (run_id, created_at) WHERE run_id IS NOT NULL;
CREATE VIRTUAL TABLE IF NOT EXISTS memories_fts USING fts5(
    memory, speaker, content = 'memories', content_rowid = 'seq',
    tokenize = 'porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS memories_fts_insert AFTER INSERT ON memories BEGIN
    INSERT INTO memories_fts (rowid, memory, speaker) VALUES (new.seq, new.memory, new.speaker);
END;
CREATE TRIGGER IF NOT EXISTS memories_fts_delete AFTER DELETE ON memories BEGIN
    INSERT INTO memories_fts (memories_fts, rowid, memory, speaker) VALUES ('delete', old.seq, old.memory, old.speaker);
    DELETE FROM memory_vectors WHERE seq = old.seq;
END;
CREATE TRIGGER IF NOT EXISTS memories_fts_update AFTER UPDATE OF memory, metadata ON memories BEGIN
    INSERT INTO memories_fts (memories_fts, rowid, memory, speaker) VALUES ('delete', old.seq, old.memory, old.speaker);
    INSERT INTO memories_fts (rowid, memory, speaker) VALUES (new.seq, new.memory, new.speaker);
END
"""

_COLS = (
    "m.seq, m.id, m.memory, m.hash, m.user_id, m.agent_id, m.run_id, m.metadata, m.created_at, m.updated_at,"
    " m.archived_at, m.archive_reason, m.access_count, m.last_accessed_at"
)
_NCOLS = 14
_UPSERT = (
    "INSERT INTO memories (id, memory, hash, user_id, agent_id, run_id, metadata, created_at, updated_at,"
    " access_count, last_accessed_at)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (id) WHERE archived_at IS NULL DO UPDATE SET memory = excluded.memory,"
    " hash = excluded.hash, user_id = excluded.user_id, agent_id = excluded.agent_id,"
    " run_id = excluded.run_id, metadata = excluded.metadata, created_at = excluded.created_at,"
    " updated_at = excluded.updated_at, access_count = excluded.access_count,"
    " last_accessed_at = excluded.last_accessed_at RETURNING seq"
)
# Columns added after the first release, with the DDL that adds them to an older file. Additive
# and defaulted, so an older engram still reads and writes the file: the schema version stays 1.
_ADDED_COLUMNS = (
    ("access_count", "ALTER TABLE memories ADD COLUMN access_count INTEGER NOT NULL DEFAULT 0"),
    ("last_accessed_at", "ALTER TABLE memories ADD COLUMN last_accessed_at INTEGER"),
)
_RECORD_ACCESS = (
    "UPDATE memories SET access_count = access_count + 1,"
    " last_accessed_at = max(coalesce(last_accessed_at, ?), ?)"
    " WHERE archived_at IS NULL AND id IN ({})"
)
_PUT_VECTOR = "INSERT OR REPLACE INTO memory_vectors (seq, embedding) VALUES (?, ?)"
# FTS5's unicode61 tokenizer: letters, digits and private-use characters; everything else separates.
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
MAX_QUERY_TERMS = 64


def _split_statements(sql: str) -> list[str]:
    """Split the schema on ';' but keep trigger bodies (``BEGIN ... END``) whole."""
    out, buf, depth = [], [], 0
    for part in sql.split(";"):
        buf.append(part)
        depth += len(re.findall(r"\bBEGIN\b", part)) - len(re.findall(r"\bEND\b", part))
        if depth <= 0:
            stmt = ";".join(buf).strip()
            if stmt:
                out.append(stmt)
            buf, depth = [], 0
    if buf and ";".join(buf).strip():
        out.append(";".join(buf).strip())
    return out


def _setup(conn: sqlite3.Connection) -> None:
    for stmt in _split_statements(SCHEMA):
        conn.execute(stmt)
    _migrate(conn)
    create_schema(conn, HISTORY_SCHEMA)
    row = conn.execute("SELECT value FROM engram_meta WHERE key = 'schema_version'").fetchone()
    if int(row[0]) > SCHEMA_VERSION:
        raise InvalidInputError(f"database schema {row[0]} is newer than this engram ({SCHEMA_VERSION}); upgrade engram")


def _migrate(conn: sqlite3.Connection) -> None:
    """Add the columns a file made by an older engram lacks (inside the setup transaction)."""
    have = {r[1] for r in conn.execute("PRAGMA table_xinfo(memories)")}
    for name, ddl in _ADDED_COLUMNS:
        if name not in have:
            conn.execute(ddl)


def fts_query(text: str) -> str | None:
    """Turn any user string into a safe FTS5 query: its words, each quoted, ORed together.

    Operators (AND, OR, NOT, NEAR), quotes, parentheses, ``*``, ``^``, ``:`` and emoji are never
    parsed: only runs of letters and digits survive, as quoted strings, at most 64 of them.
    English stop words (:data:`STOP_WORDS`) are dropped unless nothing else is left. Returns
    ``None`` when no word is left (then lexical search returns nothing).
    """
    seen: dict[str, None] = {}
    for w in _WORD.findall(text.lower()):
        seen.setdefault(w, None)
    if not seen:
        return None
    words = [w for w in seen if w not in STOP_WORDS] or list(seen)
    return " OR ".join(f'"{w}"' for w in words[:MAX_QUERY_TERMS])


def _status(archived: bool) -> str:
    return "m.archived_at IS NOT NULL" if archived else "m.archived_at IS NULL"


def _row_to_item(r: Sequence[Any]) -> MemoryItem:
    return MemoryItem(
        id=r[1], memory=r[2], hash=r[3], user_id=r[4], agent_id=r[5], run_id=r[6],
        metadata=json.loads(r[7]), created_at=from_micros(r[8]),
        updated_at=from_micros(r[9]) if r[9] is not None else None,
        archived_at=from_micros(r[10]) if r[10] is not None else None, archive_reason=r[11],
        access_count=r[12], last_accessed_at=from_micros(r[13]) if r[13] is not None else None,
    )


class _DenseIndex:
    """Every embedding of the file in one float32 matrix, kept in step with the store's writes.

    Rows are addressed by the memories table's ``seq``. Scope columns are held as integer codes
    so a scope filter is one vectorised comparison; archived versions are rows flagged ``archived``. The index notes the ``version`` counter of
    ``engram_meta`` it reflects; a write by another process bumps the counter and the index is
    rebuilt from the file on the next search.
    """

    def __init__(self, dims: int) -> None:
        self.dims = dims
        self.version = -1
        self.vecs = np.zeros((0, dims), dtype=np.float32)
        self.codes = np.zeros((3, 0), dtype=np.int32)
        self.seqs = np.zeros(0, dtype=np.int64)
        self.alive = np.zeros(0, dtype=bool)
        self.archived = np.zeros(0, dtype=bool)
        self.row_of: dict[int, int] = {}
        self.free: list[int] = []
        self.used = 0
        self.code_of: list[dict[str | None, int]] = [{None: 0}, {None: 0}, {None: 0}]

    def _code(self, k: int, value: str | None) -> int:
        table = self.code_of[k]
        code = table.get(value)
        if code is None:
            code = table[value] = len(table)
        return code

    def _grow(self, need: int, exact: bool = False) -> None:
        """Make room for ``need`` rows: exactly that many when ``exact`` (loading a known count),
        else growing by half again, so a store that only grows wastes at most a third."""
        cap = len(self.alive)
        if need <= cap:
            return
        new = need if exact else max(need, cap + cap // 2, 1024)
        vecs = np.zeros((new, self.dims), dtype=np.float32)
        vecs[:cap] = self.vecs
        codes = np.zeros((3, new), dtype=np.int32)
        codes[:, :cap] = self.codes
        seqs = np.zeros(new, dtype=np.int64)
        seqs[:cap] = self.seqs
        alive = np.zeros(new, dtype=bool)
        alive[:cap] = self.alive
        archived = np.zeros(new, dtype=bool)
        archived[:cap] = self.archived
        self.vecs, self.codes, self.seqs, self.alive, self.archived = vecs, codes, seqs, alive, archived

    def put(self, seq: int, scope: tuple[str | None, str | None, str | None], vec: np.ndarray) -> None:
        row = self.row_of.get(seq)
        if row is None:
            if self.free:
                row = self.free.pop()
            else:
                row = self.used
                self.used += 1
                self._grow(self.used)
            self.row_of[seq] = row
        self.vecs[row] = vec
        for k in range(3):
            self.codes[k, row] = self._code(k, scope[k])
        self.seqs[row] = seq
        self.alive[row] = True
        self.archived[row] = False

    def mark_archived(self, seq: int) -> None:
        row = self.row_of.get(seq)
        if row is not None:
            self.archived[row] = True

    def drop(self, seq: int) -> None:
        row = self.row_of.pop(seq, None)
        if row is not None:
            self.alive[row] = False
            self.free.append(row)

    def scope_mask(self, scope: Scope, archived: bool = False) -> np.ndarray | None:
        """Boolean mask over rows ``[:used]`` of live rows in the scope, active ones or (with
        ``archived``) archived ones; ``None`` when nothing can match."""
        n = self.used
        mask = self.alive[:n] & (self.archived[:n] if archived else ~self.archived[:n])
        for k, value in enumerate((scope.user_id, scope.agent_id, scope.run_id)):
            if value is not None:
                code = self.code_of[k].get(value)
                if code is None:
                    return None
                mask &= self.codes[k, :n] == code
        return mask

    def top(self, query: np.ndarray, mask: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
        """``(seqs, cosine scores)`` of the best ``limit`` rows under ``mask``, best first.

        When the mask keeps most rows one matrix-vector product over all rows is cheaper than
        gathering the kept ones; otherwise the kept rows are gathered first. The product is
        numpy's ``einsum`` loop rather than BLAS ``sgemv``: it is memory-bound either way, and a
        multi-threaded BLAS on a busy 2-core machine measured 3-5x slower than one thread.
        """
        rows = np.flatnonzero(mask)
        if rows.size == 0:
            return rows.astype(np.int64), np.zeros(0, dtype=np.float32)
        if rows.size * 3 > self.used:
            scores = np.einsum("ij,j->i", self.vecs[: self.used], query)[rows]
        else:
            scores = np.einsum("ij,j->i", self.vecs[rows], query)
        k = min(limit, rows.size)
        part = np.argpartition(-scores, k - 1)[:k] if k < rows.size else np.arange(rows.size)
        seqs = self.seqs[rows[part]]
        order = np.lexsort((seqs, -scores[part]))
        return seqs[order], scores[part][order]


class SQLiteVectorStore:
    """The default store: memories, their embeddings, a BM25 index and the history in one SQLite file.

    - Embeddings are float32 blobs in ``memory_vectors`` (keyed by the memory's ``seq``, so the
      ``memories`` rows stay small for listing and lexical joins); dense search runs numpy over an in-process
      matrix of them (one matrix-vector product; no per-row Python loop), loaded from the file on
      the first search and kept in step with every write.
    - ``memories_fts`` is an FTS5 external-content index (Porter stemming over unicode61 tokens,
      diacritics removed) of the text and of the speaker's name (``metadata["speaker"]``, a
      generated column), kept in step by triggers inside each write's transaction; lexical
      search ranks by FTS5's BM25 (the speaker column weighted ``speaker_weight``) and returns
      ``-bm25`` so higher is better.
    - ``history`` (see :mod:`engram.history.sqlite`) is written in the same transaction as the
      change it records, so a crash never leaves a memory without its event.
    - Scope and metadata filters are SQL ``WHERE`` clauses (and a vectorised scope mask for dense).

    ``hybrid`` search fuses the two with ``config.fusion`` (:class:`~engram.core.FusionConfig`).
    ``reset()`` deletes memories and history alike. URL form: ``sqlite:///path/engram.db``
    (``sqlite:////abs/path.db``, ``sqlite:///:memory:``).
    """

    class Config(BaseModel):
        """Attributes:
        path: database file; default ``<user data dir>/engram/engram.db``; ``":memory:"`` for none.
        fusion: how ``hybrid`` mode fuses dense and BM25 hits.
        busy_timeout: seconds to wait for another process's write lock.
        speaker_weight: BM25 weight of the ``speaker`` column beside the text's 1.0, so that
            "what did Caroline say about ..." favours Caroline's own turns.
        """

        model_config = ConfigDict(extra="forbid")
        path: str = ""
        fusion: FusionConfig = FusionConfig()
        busy_timeout: float = 30.0
        speaker_weight: float = Field(default=1.0, ge=0)

    capabilities = frozenset(
        {"lexical", "history", "archive", "persistent", "rehearsal", "neighbors", "substring_filters",
         "string_range_filters"}
    )

    def __init__(self, config: Config | None = None, **kwargs: Any) -> None:
        self.config = config or self.Config(**kwargs)
        path = self.config.path or str(default_db_path())
        if path != ":memory:":
            path = str(Path(path).expanduser())
        else:
            self.capabilities = frozenset(
                {"lexical", "history", "archive", "rehearsal", "neighbors", "substring_filters", "string_range_filters"}
            )
        self.path = path
        self._db = Database(path, _setup, on_connect=register_functions, busy_timeout=self.config.busy_timeout)
        self._dims: int | None = None
        self._index: _DenseIndex | None = None
        self._index_lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str) -> SQLiteVectorStore:
        return cls(cls.Config(path=path_from_url(url)))

    # -- dims ----------------------------------------------------------------------------------

    def _stored_dims(self, conn: sqlite3.Connection) -> int | None:
        if self._dims is None:
            row = conn.execute("SELECT value FROM engram_meta WHERE key = 'dims'").fetchone()
            if row is not None:
                self._dims = int(row[0])
        return self._dims

    # -- writes --------------------------------------------------------------------------------

    async def write(self, batch: WriteBatch) -> None:
        if not (batch.upserts or batch.deletes or batch.archive or batch.events):
            return
        dims = None
        blobs: list[bytes] = []
        for it in batch.upserts:
            e = it.embedding
            if e is None or e.ndim != 1:
                raise InvalidInputError(f"memory {it.id}: an upsert needs a (dims,) embedding")
            if dims is None:
                dims = e.shape[0]
            if e.shape[0] != dims:
                raise InvalidInputError(f"memory {it.id}: embeddings in one batch differ in length")
            v = np.ascontiguousarray(e, dtype=np.float32)
            if not np.isfinite(v).all():
                raise InvalidInputError(f"memory {it.id}: embedding has NaN or infinite values")
            blobs.append(v.tobytes())
        await self._db.write(self._write_tx, batch, blobs, dims, after=self._after_write)

    def _write_tx(self, conn: sqlite3.Connection, batch: WriteBatch, blobs: list[bytes], dims: int | None) -> Any:
        if dims is not None:
            stored = self._stored_dims(conn)
            if stored is None:
                conn.execute("INSERT INTO engram_meta (key, value) VALUES ('dims', ?)", (str(dims),))
            elif stored != dims:
                raise InvalidInputError(
                    f"this store holds {stored}-dimensional embeddings; got {dims}. Use the embedder the "
                    f"store was built with, or a new database file"
                )
        dropped: list[int] = []
        for mid in batch.deletes:  # purge: the active version and every archived one
            dropped += [r[0] for r in conn.execute("DELETE FROM memories WHERE id = ? RETURNING seq", (mid,))]
        archived: list[int] = []
        if batch.archive:
            now = to_micros(utcnow())
            for mid, reason in batch.archive:
                row = conn.execute(
                    "UPDATE memories SET archived_at = ?, archive_reason = ? WHERE id = ? AND archived_at IS NULL"
                    " RETURNING seq",
                    (now, reason, mid),
                ).fetchone()
                if row is not None:
                    archived.append(row[0])
        put = []
        for it, blob in zip(batch.upserts, blobs, strict=True):
            seq = conn.execute(
                _UPSERT,
                (it.id, it.memory, it.hash, it.user_id, it.agent_id, it.run_id,
                 json.dumps(it.metadata, allow_nan=False, ensure_ascii=False), to_micros(it.created_at),
                 to_micros(it.updated_at) if it.updated_at is not None else None, it.access_count,
                 to_micros(it.last_accessed_at) if it.last_accessed_at is not None else None),
            ).fetchone()[0]
            conn.execute(_PUT_VECTOR, (seq, blob))
            put.append((seq, (it.user_id, it.agent_id, it.run_id), it.embedding))
        if batch.events:
            insert_events(conn, batch.events)
        version = conn.execute(
            "UPDATE engram_meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'version' RETURNING value"
        ).fetchone()[0]
        if dims is not None and self._dims is None:
            self._dims = dims
        return int(version), dropped, archived, put

    def _after_write(self, result: Any) -> None:
        version, dropped, archived, put = result
        with self._index_lock:
            idx = self._index
            if idx is None:
                return
            if idx.version != version - 1:  # someone else wrote in between: rebuild on next search
                self._index = None
                return
            for seq in dropped:
                idx.drop(seq)
            for seq in archived:
                idx.mark_archived(seq)
            for seq, scope, vec in put:
                idx.put(seq, scope, vec)
            idx.version = version

    # -- rehearsal -----------------------------------------------------------------------------

    async def record_access(self, ids: Sequence[str], at: datetime) -> int:
        """Count one access at ``at`` for each distinct active id (see
        :meth:`engram.core.RehearsalStore.record_access`): one ``UPDATE ... SET access_count =
        access_count + 1`` per 500 ids, all in one write transaction; the dense index and the
        ``version`` counter are untouched (no embedding or scope changes)."""
        when = to_micros(check_access_time(at))
        unique = list(dict.fromkeys(ids))
        if not unique:
            return 0

        def run(conn: sqlite3.Connection) -> int:
            n = 0
            for start in range(0, len(unique), 500):
                chunk = unique[start : start + 500]
                n += conn.execute(_RECORD_ACCESS.format(",".join("?" * len(chunk))), [when, when, *chunk]).rowcount
            return n

        return await self._db.write(run)

    # -- history (the same file, the same transactions) ------------------------------------------

    async def add_events(self, events: Sequence[HistoryEvent]) -> None:
        """Record history events alone (changes made through :meth:`write` record their own)."""
        if events:
            await self._db.write(insert_events, list(events))

    async def history(self, memory_id: str) -> list[HistoryEvent]:
        return await self._db.read(select_history, memory_id)

    # -- reads ---------------------------------------------------------------------------------

    async def get(self, ids: Sequence[str]) -> list[MemoryItem]:
        ids = list(ids)
        if not ids:
            return []

        def run(conn: sqlite3.Connection) -> list[MemoryItem]:
            found: dict[str, MemoryItem] = {}
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                q = (
                    f"SELECT {_COLS} FROM memories m WHERE m.id IN ({','.join('?' * len(chunk))})"
                    " AND m.archived_at IS NULL"
                )
                for r in conn.execute(q, chunk):
                    found[r[1]] = _row_to_item(r)
            return [found[i] for i in ids if i in found]

        return await self._db.read(run)

    async def list(
        self,
        scope: Scope | None,
        *,
        filters: Filter | None = None,
        limit: int | None = 100,
        offset: int = 0,
        archived: bool = False,
    ) -> list[MemoryItem]:
        params: list[Any] = []
        scoped = scope_sql(scope, params, "m.", use_index=not is_key_lookup(filters))
        where = f"{scoped} AND {filter_sql(filters, params)} AND {_status(archived)}"
        order = "m.archived_at DESC, m.id DESC" if archived else "m.created_at DESC, m.id DESC"
        sql = f"SELECT {_COLS} FROM memories m WHERE {where} ORDER BY {order}"
        if limit is not None or offset:
            sql += " LIMIT ? OFFSET ?"
            params += [-1 if limit is None else limit, offset]
        return await self._db.read(lambda c: [_row_to_item(r) for r in c.execute(sql, params)])

    async def neighbors(
        self, scope: Scope, ids: Sequence[str], *, filters: Filter | None = None
    ) -> dict[str, list[MemoryItem]]:
        """See :class:`engram.core.NeighborStore` (two indexed probes per id)."""
        ids = list(ids)
        if not ids:
            return {}
        return await self._db.read(lambda c: neighbors(c, scope, ids, filters, _COLS, _row_to_item))

    async def count(self, scope: Scope | None = None, *, filters: Filter | None = None) -> int:
        params: list[Any] = []
        where = f"{scope_sql(scope, params, 'm.')} AND {filter_sql(filters, params)} AND {_status(False)}"
        return await self._db.read(lambda c: c.execute(f"SELECT count(*) FROM memories m WHERE {where}", params).fetchone()[0])

    async def search(self, query: VectorQuery) -> list[ScoredMemory]:
        if query.limit < 1:
            return []
        if query.mode == "dense":
            return await self._db.read(self._dense, query)
        if query.mode == "lexical":
            return await self._db.read(self._lexical, query)
        if query.mode == "hybrid":
            return await self._db.read(self._hybrid, query)
        raise InvalidInputError(f"unknown search mode {query.mode!r}; expected dense, lexical or hybrid")

    def _fetch(self, conn: sqlite3.Connection, seqs: Sequence[int] | np.ndarray) -> dict[int, MemoryItem]:
        if not len(seqs):
            return {}
        q = f"SELECT {_COLS} FROM memories m WHERE m.seq IN ({','.join('?' * len(seqs))})"
        return {r[0]: _row_to_item(r) for r in conn.execute(q, [int(s) for s in seqs])}

    def _load_index(self, conn: sqlite3.Connection) -> _DenseIndex | None:
        """The dense index, rebuilt when the file changed behind it. Caller holds no locks."""
        version = int(conn.execute("SELECT value FROM engram_meta WHERE key = 'version'").fetchone()[0])
        idx = self._index
        if idx is not None and idx.version == version:
            return idx
        with self._db.write_lock:  # no write of ours is between commit and index update now
            version = int(conn.execute("SELECT value FROM engram_meta WHERE key = 'version'").fetchone()[0])
            idx = self._index
            if idx is not None and idx.version == version:
                return idx
            dims = self._stored_dims(conn)
            if dims is None:
                return None
            idx = _DenseIndex(dims)
            total = conn.execute("SELECT count(*) FROM memory_vectors").fetchone()[0]
            idx._grow(total + max(64, total // 16), exact=True)
            cur = conn.execute(
                "SELECT v.seq, m.user_id, m.agent_id, m.run_id, v.embedding, m.archived_at IS NOT NULL"
                " FROM memory_vectors v JOIN memories m ON m.seq = v.seq"
            )
            while rows := cur.fetchmany(1024):
                start = idx.used
                idx._grow(start + len(rows))
                idx.vecs[start : start + len(rows)] = np.frombuffer(b"".join(r[4] for r in rows), dtype=np.float32).reshape(
                    len(rows), dims
                )
                for j, r in enumerate(rows):
                    row = start + j
                    idx.row_of[r[0]] = row
                    idx.seqs[row] = r[0]
                    idx.codes[0, row] = idx._code(0, r[1])
                    idx.codes[1, row] = idx._code(1, r[2])
                    idx.codes[2, row] = idx._code(2, r[3])
                    idx.archived[row] = bool(r[5])
                idx.alive[start : start + len(rows)] = True
                idx.used += len(rows)
            idx.version = version
            with self._index_lock:
                self._index = idx
            return idx

    def _dense(self, conn: sqlite3.Connection, query: VectorQuery) -> list[ScoredMemory]:
        if query.embedding is None:
            raise InvalidInputError("dense search needs a query embedding")
        idx = self._load_index(conn)
        if idx is None:
            return []
        q = np.asarray(query.embedding, dtype=np.float32)
        if q.shape != (idx.dims,):
            raise InvalidInputError(f"query embedding has shape {q.shape}; this store holds {idx.dims} dims")
        with self._index_lock:
            mask = idx.scope_mask(query.scope, query.archived)
            if mask is None:
                return []
            if query.filters is not None:
                params: list[Any] = []
                where = f"{scope_sql(query.scope, params, 'm.')} AND {filter_sql(query.filters, params)}"
                allowed = np.fromiter(
                    (r[0] for r in conn.execute(f"SELECT m.seq FROM memories m WHERE {where}", params)), dtype=np.int64
                )
                mask &= np.isin(idx.seqs[: idx.used], allowed)
            seqs, scores = idx.top(q, mask, query.limit)
        items = self._fetch(conn, seqs)
        return [
            ScoredMemory(items[s], float(sc), {"dense": float(sc)})
            for s, sc in zip(seqs.tolist(), scores.tolist(), strict=True)
            if s in items
        ]

    def _hybrid(self, conn: sqlite3.Connection, query: VectorQuery) -> list[ScoredMemory]:
        """Dense and BM25 recall in one worker thread, fused with ``config.fusion``."""
        found = {"dense": self._dense(conn, query), "lexical": self._lexical(conn, query)}
        return fuse_hits(found, self.config.fusion.model_dump())[: query.limit]

    def _lexical(self, conn: sqlite3.Connection, query: VectorQuery) -> list[ScoredMemory]:
        match = fts_query(query.text or "")
        if match is None:
            return []
        params: list[Any] = [self.config.speaker_weight, match]
        where = (
            f"{scope_sql(query.scope, params, 'm.')} AND {filter_sql(query.filters, params)}"
            f" AND {_status(query.archived)}"
        )
        params.append(query.limit)
        sql = (
            f"SELECT {_COLS}, bm25(memories_fts, 1.0, ?) AS rank FROM memories_fts f JOIN memories m ON m.seq = f.rowid"
            f" WHERE memories_fts MATCH ? AND {where} ORDER BY rank, m.seq LIMIT ?"
        )
        return [
            ScoredMemory(_row_to_item(r), -float(r[_NCOLS]), {"lexical": -float(r[_NCOLS])})
            for r in conn.execute(sql, params)
        ]

    # -- lifecycle -----------------------------------------------------------------------------

    async def reset(self) -> None:
        def run(conn: sqlite3.Connection) -> Any:
            conn.execute("DELETE FROM memories")
            conn.execute("DELETE FROM memory_vectors")
            conn.execute("DELETE FROM history")
            conn.execute("DELETE FROM engram_meta WHERE key = 'dims'")
            conn.execute("INSERT INTO memories_fts (memories_fts) VALUES ('rebuild')")
            return int(
                conn.execute(
                    "UPDATE engram_meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'version' RETURNING value"
                ).fetchone()[0]
            )

        def after(_: Any) -> None:
            with self._index_lock:
                self._index = None
            self._dims = None

        await self._db.write(run, after=after)

    async def check(self) -> list[str]:
        """Consistency problems found in the file (empty when sound): FTS5's own integrity check
        against the memories table, memories and embeddings that are not paired one to one, and
        embeddings of the wrong size."""

        def run(conn: sqlite3.Connection) -> list[str]:
            problems = []
            try:
                conn.execute("INSERT INTO memories_fts (memories_fts, rank) VALUES ('integrity-check', 1)")
            except sqlite3.DatabaseError as exc:
                problems.append(f"FTS index out of step with memories: {exc}")
            dims = self._stored_dims(conn)
            if dims is not None:
                bad = conn.execute(
                    "SELECT count(*) FROM memory_vectors WHERE length(embedding) != ?", (dims * 4,)
                ).fetchone()[0]
                if bad:
                    problems.append(f"{bad} embeddings are not {dims} float32 values")
            unpaired = conn.execute(
                "SELECT (SELECT count(*) FROM memories m WHERE NOT EXISTS"
                " (SELECT 1 FROM memory_vectors v WHERE v.seq = m.seq))"
                " + (SELECT count(*) FROM memory_vectors v WHERE NOT EXISTS"
                " (SELECT 1 FROM memories m WHERE m.seq = v.seq))"
            ).fetchone()[0]
            if unpaired:
                problems.append(f"{unpaired} memories and embeddings are not paired")
            return problems

        return await self._db.read(run)

    async def aclose(self) -> None:
        self._db.close()
        with self._index_lock:
            self._index = None
