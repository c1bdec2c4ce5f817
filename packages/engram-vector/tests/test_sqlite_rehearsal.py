"""SQLite rehearsal beyond the conformance suite: files made before the access columns existed,
and several store objects (standing in for processes) counting on one file at once."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import numpy as np
from engram.core import MemoryItem, Scope, VectorQuery, WriteBatch, content_hash
from engram.history.sqlite import HISTORY_SCHEMA, create_schema, to_micros
from engram.vector.sqlite import SQLiteVectorStore
from engram.vector.sqlite._store import SCHEMA, _split_statements

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

# The memories table as engram wrote it before access_count and last_accessed_at were added.
V1_MEMORIES = """
CREATE TABLE memories (
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
    archived_at    INTEGER,
    archive_reason TEXT,
    speaker    TEXT GENERATED ALWAYS AS (json_extract(metadata, '$.speaker')) VIRTUAL
)
"""


def _vec(seed: int, dims: int = 8) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dims).astype(np.float32)
    return v / np.linalg.norm(v)


def _make_v1_file(path: Path) -> list[tuple[str, str, np.ndarray]]:
    """A database file with the old memories table (the rest of the schema is unchanged) and two
    memories, one active and one archived, written with the old column list."""
    rows = [(str(uuid.uuid4()), "Alice likes green tea", _vec(1)), (str(uuid.uuid4()), "Bob plays chess", _vec(2))]
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        conn.execute(V1_MEMORIES)
        for stmt in _split_statements(SCHEMA):  # everything else: IF NOT EXISTS skips the table
            conn.execute(stmt)
        create_schema(conn, HISTORY_SCHEMA)
        conn.execute("INSERT INTO engram_meta (key, value) VALUES ('dims', '8')")
        for k, (mid, text, vec) in enumerate(rows):
            seq = conn.execute(
                "INSERT INTO memories (id, memory, hash, user_id, metadata, created_at) VALUES (?,?,?,?,?,?)"
                " RETURNING seq",
                (mid, text, content_hash(text), "u", '{"speaker": "Alice"}', to_micros(T0 + timedelta(days=k))),
            ).fetchone()[0]
            conn.execute("INSERT INTO memory_vectors (seq, embedding) VALUES (?, ?)", (seq, vec.tobytes()))
        archived = conn.execute(
            "INSERT INTO memories (id, memory, hash, user_id, created_at, archived_at, archive_reason)"
            " VALUES (?,?,?,?,?,?,?) RETURNING seq",
            (rows[0][0], "Alice likes black tea", content_hash("Alice likes black tea"), "u", to_micros(T0),
             to_micros(T0 + timedelta(hours=1)), "superseded"),
        ).fetchone()[0]
        conn.execute("INSERT INTO memory_vectors (seq, embedding) VALUES (?, ?)", (archived, _vec(3).tobytes()))
        conn.execute("COMMIT")
        assert "access_count" not in {r[1] for r in conn.execute("PRAGMA table_xinfo(memories)")}
    finally:
        conn.close()
    return rows


async def test_a_file_from_the_previous_version_is_migrated_on_open(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    (alice, bob) = _make_v1_file(path)
    store = SQLiteVectorStore(SQLiteVectorStore.Config(path=str(path)))
    try:
        got = await store.get([alice[0], bob[0]])
        assert [(g.memory, g.access_count, g.last_accessed_at) for g in got] == [
            ("Alice likes green tea", 0, None), ("Bob plays chess", 0, None)
        ]
        when = T0 + timedelta(days=10)
        assert await store.record_access([alice[0], alice[0], bob[0]], when) == 2
        assert await store.record_access([alice[0]], when) == 1
        (a,) = await store.get([alice[0]])
        assert a.access_count == 2 and a.last_accessed_at == when
        (old,) = await store.list(Scope("u"), archived=True)
        assert old.memory == "Alice likes black tea" and old.access_count == 0  # archived versions untouched
        hits = await store.search(VectorQuery(Scope("u"), alice[2], "tea", None, 5, "hybrid"))
        assert hits[0].item.id == alice[0] and hits[0].item.access_count == 2  # dense + FTS still work
        new = MemoryItem(id=str(uuid.uuid4()), memory="Carol swims", hash=content_hash("Carol swims"), user_id="u",
                         embedding=_vec(4))
        await store.write(WriteBatch(upserts=[new]))
        assert await store.count(Scope("u")) == 3
        assert await store.check() == []
    finally:
        await store.aclose()
    conn = sqlite3.connect(path)  # the migration was committed to the file, with the schema version kept
    try:
        cols = {r[1] for r in conn.execute("PRAGMA table_xinfo(memories)")}
        assert {"access_count", "last_accessed_at"} <= cols
        assert conn.execute("SELECT value FROM engram_meta WHERE key = 'schema_version'").fetchone()[0] == "1"
        # a writer that knows only the old columns (an older engram on the same file) still inserts
        conn.execute(
            "INSERT INTO memories (id, memory, hash, user_id, created_at) VALUES ('x', 'x', 'h', 'u', 0)"
        )
        assert conn.execute("SELECT access_count, last_accessed_at FROM memories WHERE id = 'x'").fetchone() == (0, None)
    finally:
        conn.close()


async def test_reopening_a_migrated_file_keeps_the_counts(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    (alice, _) = _make_v1_file(Path(path))
    store = SQLiteVectorStore(SQLiteVectorStore.Config(path=path))
    await store.record_access([alice[0]], T0)
    await store.aclose()
    store = SQLiteVectorStore(SQLiteVectorStore.Config(path=path))
    try:
        (a,) = await store.get([alice[0]])
        assert a.access_count == 1 and a.last_accessed_at == T0
    finally:
        await store.aclose()


async def test_counts_are_exact_across_store_objects_on_one_file(tmp_path: Path) -> None:
    """Three store objects on one file (each with its own connections and write lock, as separate
    processes have) record 30 accesses each to the same memory at once: 90 counted."""
    path = str(tmp_path / "shared.db")
    stores = [SQLiteVectorStore(SQLiteVectorStore.Config(path=path)) for _ in range(3)]
    try:
        item = MemoryItem(id=str(uuid.uuid4()), memory="shared", hash=content_hash("shared"), user_id="u",
                          embedding=_vec(5))
        await stores[0].write(WriteBatch(upserts=[item]))
        per_store = 30

        async def hammer(s: SQLiteVectorStore, k: int) -> None:
            for j in range(per_store):
                await s.record_access([item.id], T0 + timedelta(seconds=k * per_store + j))

        async with anyio.create_task_group() as tg:
            for k, s in enumerate(stores):
                tg.start_soon(hammer, s, k)
        for s in stores:
            (got,) = await s.get([item.id])
            assert got.access_count == 3 * per_store
            assert got.last_accessed_at == T0 + timedelta(seconds=3 * per_store - 1)
    finally:
        for s in stores:
            await s.aclose()
