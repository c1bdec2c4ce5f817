"""SQLite-specific behaviour beyond the conformance suite: query safety, group commit, files."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import anyio
import numpy as np
import pytest
from engram.core import MemoryItem, Scope, VectorQuery, WriteBatch, content_hash
from engram.core.errors import ConfigurationError, InvalidInputError
from engram.testing import HistoryStoreConformance, VectorStoreConformance
from engram.vector.sqlite import SQLiteVectorStore, fts_query


def _item(text: str, dims: int = 8, user: str = "u", seed: int = 0) -> MemoryItem:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal(dims).astype(np.float32)
    v /= np.linalg.norm(v)
    return MemoryItem(id=str(uuid.uuid4()), memory=text, hash=content_hash(text), user_id=user, embedding=v)


@pytest.fixture
async def store(tmp_path: Path):
    s = SQLiteVectorStore(SQLiteVectorStore.Config(path=str(tmp_path / "e.db")))
    yield s
    await s.aclose()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("What's Caroline's job?", '"caroline" OR "job"'),
        ("who is it", '"who" OR "is" OR "it"'),
        ('AND OR NOT NEAR("a b")', '"near" OR "b"'),
        ("snake_case col:value ^start *", '"snake" OR "case" OR "col" OR "value" OR "start"'),
        ("😀 ?!", None),
        ("", None),
        ("Café déjà vu", '"café" OR "déjà" OR "vu"'),
    ],
)
def test_fts_query_quotes_every_word_and_drops_syntax(text: str, expected: str | None) -> None:
    assert fts_query(text) == expected


def test_fts_query_bounds_terms() -> None:
    q = fts_query(" ".join(f"w{i}" for i in range(500)))
    assert q is not None and q.count(" OR ") == 63


async def test_file_is_wal_and_holds_everything(store: SQLiteVectorStore, tmp_path: Path) -> None:
    await store.write(WriteBatch(upserts=[_item("one two three")]))
    conn = sqlite3.connect(tmp_path / "e.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
        assert {"memories", "memories_fts", "history", "engram_meta"} <= tables
    finally:
        conn.close()


async def test_group_commit_isolates_a_failing_write(store: SQLiteVectorStore) -> None:
    await store.write(WriteBatch(upserts=[_item("seed", dims=8)]))
    outcomes: dict[int, str] = {}

    async def one(i: int) -> None:
        dims = 4 if i % 5 == 0 else 8  # every fifth write has the wrong dimension
        try:
            await store.write(WriteBatch(upserts=[_item(f"memory {i}", dims=dims, seed=i)]))
            outcomes[i] = "ok"
        except InvalidInputError:
            outcomes[i] = "refused"

    async with anyio.create_task_group() as tg:
        for i in range(60):
            tg.start_soon(one, i)
    assert sum(v == "refused" for v in outcomes.values()) == 12
    assert await store.count() == 1 + 48
    assert await store.check() == []


async def test_dims_mismatch_changes_nothing(store: SQLiteVectorStore) -> None:
    await store.write(WriteBatch(upserts=[_item("a", dims=8)]))
    with pytest.raises(InvalidInputError, match="8-dimensional"):
        await store.write(WriteBatch(upserts=[_item("b", dims=16)], deletes=[]))
    assert await store.count() == 1


async def test_nan_embedding_refused(store: SQLiteVectorStore) -> None:
    it = _item("a")
    assert it.embedding is not None
    it.embedding[0] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        await store.write(WriteBatch(upserts=[it]))
    assert await store.count() == 0


async def test_second_process_writes_are_seen(tmp_path: Path) -> None:
    """Two store objects on one file stand in for two processes: each sees the other's writes."""
    path = str(tmp_path / "shared.db")
    a = SQLiteVectorStore(SQLiteVectorStore.Config(path=path))
    b = SQLiteVectorStore(SQLiteVectorStore.Config(path=path))
    try:
        first = _item("first memory", seed=1)
        await a.write(WriteBatch(upserts=[first]))
        q = VectorQuery(Scope("u"), first.embedding, "first", None, 5, "dense")
        assert [h.item.id for h in await b.search(q)] == [first.id]  # b builds its index
        second = _item("second memory", seed=2)
        await a.write(WriteBatch(upserts=[second], deletes=[first.id]))
        q2 = VectorQuery(Scope("u"), second.embedding, "second", None, 5, "dense")
        assert [h.item.id for h in await b.search(q2)] == [second.id]  # b notices and rebuilds
        await b.write(WriteBatch(deletes=[second.id]))
        assert await a.search(q2) == []
    finally:
        await a.aclose()
        await b.aclose()


async def test_memory_database_is_not_persistent() -> None:
    s = SQLiteVectorStore.from_url("sqlite:///:memory:")
    try:
        assert "persistent" not in s.capabilities
        await s.write(WriteBatch(upserts=[_item("x")]))
        assert await s.count() == 1
    finally:
        await s.aclose()


@pytest.mark.parametrize(
    ("url", "path"),
    [("sqlite:///rel/e.db", "rel/e.db"), ("sqlite:////abs/e.db", "/abs/e.db"), ("sqlite:///:memory:", ":memory:")],
)
def test_url_forms(url: str, path: str) -> None:
    assert SQLiteVectorStore.from_url(url).config.path == path


@pytest.mark.parametrize("url", ["sqlite://host/e.db", "sqlite://"])
def test_bad_urls(url: str) -> None:
    with pytest.raises(ConfigurationError):
        SQLiteVectorStore.from_url(url)


async def test_reset_clears_memories_history_and_dims(store: SQLiteVectorStore) -> None:
    it = _item("a", dims=8)
    await store.write(WriteBatch(upserts=[it]))
    await store.reset()
    assert await store.count() == 0
    await store.write(WriteBatch(upserts=[_item("b", dims=16)]))  # a new dimension is fine after reset
    assert await store.count() == 1
    assert await store.check() == []


class TestSQLiteConformance(VectorStoreConformance, HistoryStoreConformance):
    """The file-backed store against every vector-store and history-store check."""

    @pytest.fixture
    async def store(self, tmp_path: Path):
        s = SQLiteVectorStore(SQLiteVectorStore.Config(path=str(tmp_path / "engram.db")))
        yield s
        await s.aclose()

    @pytest.fixture
    def history_store(self, store: SQLiteVectorStore) -> SQLiteVectorStore:
        return store

    async def reopen(self, provider: SQLiteVectorStore) -> SQLiteVectorStore:
        await provider.aclose()
        return SQLiteVectorStore(SQLiteVectorStore.Config(path=provider.config.path))


class TestSQLiteInMemoryConformance(VectorStoreConformance, HistoryStoreConformance):
    """``sqlite:///:memory:``: everything but persistence."""

    @pytest.fixture
    async def store(self):
        s = SQLiteVectorStore.from_url("sqlite:///:memory:")
        yield s
        await s.aclose()

    @pytest.fixture
    def history_store(self, store: SQLiteVectorStore) -> SQLiteVectorStore:
        return store
