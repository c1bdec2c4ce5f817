"""The SQLite graph store: the conformance suite, and what is particular to it (the shared file)."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import numpy as np
import pytest
from engram.core import (
    Entity,
    Event,
    GraphBatch,
    GraphStore,
    HistoryEvent,
    MemoryItem,
    Registry,
    Relation,
    Scope,
    WriteBatch,
    content_hash,
)
from engram.core.errors import ConfigurationError, InvalidInputError, ProviderError
from engram.graph.sqlite import SQLiteGraphStore
from engram.history.sqlite import SQLiteHistoryStore
from engram.testing import GraphStoreConformance
from engram.vector.sqlite import SQLiteVectorStore


class TestSQLiteGraphStore(GraphStoreConformance):
    @pytest.fixture
    async def graph_store(self, tmp_path: Path):
        g = SQLiteGraphStore(SQLiteGraphStore.Config(path=str(tmp_path / "engram.db")))
        yield g
        await g.aclose()

    async def reopen(self, provider: SQLiteGraphStore) -> SQLiteGraphStore:
        await provider.aclose()
        return SQLiteGraphStore(SQLiteGraphStore.Config(path=provider.config.path))


class TestSQLiteGraphStoreInMemory(GraphStoreConformance):
    @pytest.fixture
    async def graph_store(self):
        g = SQLiteGraphStore.from_url("sqlite:///:memory:")
        yield g
        await g.aclose()


def _graph(user: str = "u") -> tuple[list[Entity], list[Relation]]:
    rng = np.random.default_rng(0)
    a = Entity(name="Alice", user_id=user, type="person", embedding=rng.standard_normal(8).tolist())
    b = Entity(name="Paris", user_id=user, type="place", embedding=rng.standard_normal(8).tolist())
    r = Relation(source="Alice", relation="lives_in", destination="Paris", user_id=user, source_id=a.id,
                 destination_id=b.id, memory_ids=["m1"])  # fmt: skip
    return [a, b], [r]


def test_is_a_graph_store_and_registered(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    g = Registry().create("graph_store", f"sqlite:///{path}")
    assert isinstance(g, SQLiteGraphStore) and isinstance(g, GraphStore)
    assert g.path == str(path) and g.capabilities == frozenset({"persistent"})
    g = Registry().create("graph_store", {"provider": "sqlite", "config": {"path": ":memory:"}})
    assert isinstance(g, SQLiteGraphStore) and g.capabilities == frozenset()
    assert not path.exists(), "providers connect lazily, never in __init__"
    with pytest.raises(ConfigurationError):
        Registry().create("graph_store", {"provider": "sqlite", "config": {"path": "x", "nope": 1}})
    with pytest.raises(ConfigurationError):
        SQLiteGraphStore.from_url("sqlite://host/x.db")


def test_default_path_is_the_vector_stores() -> None:
    assert SQLiteGraphStore().path == SQLiteVectorStore().path


async def test_shares_one_file_with_the_vector_store(tmp_path: Path) -> None:
    path = str(tmp_path / "engram.db")
    vectors = SQLiteVectorStore(SQLiteVectorStore.Config(path=path))
    graph = SQLiteGraphStore(SQLiteGraphStore.Config(path=path))
    v = np.ones(4, dtype=np.float32) / 2
    item = MemoryItem(id=str(uuid.uuid4()), memory="Alice lives in Paris", hash=content_hash("x"), user_id="u",
                      embedding=v)  # fmt: skip
    ents, rels = _graph()
    await graph.apply(GraphBatch(ents, rels))
    await vectors.write(WriteBatch(upserts=[item]))
    await graph.reset()  # the graph's reset leaves the memories be ...
    assert [i.id for i in await vectors.list(Scope(user_id="u"))] == [item.id]
    await graph.apply(GraphBatch(ents, rels))
    await vectors.reset()  # ... and the vector store's leaves the graph be
    await vectors.write(WriteBatch(upserts=[item]))
    await vectors.aclose()
    await graph.aclose()

    vectors = SQLiteVectorStore(SQLiteVectorStore.Config(path=path))
    graph = SQLiteGraphStore(SQLiteGraphStore.Config(path=path))
    try:
        hits = await graph.similar_entities(Scope(user_id="u"), ents[0].embedding or [], limit=1)
        assert [e.id for e, _ in hits] == [ents[0].id]
        assert [r.id for r, _ in await graph.neighbors(Scope(user_id="u"), keys=["alice"])] == [rels[0].id]
        assert [i.id for i in await vectors.list(Scope(user_id="u"))] == [item.id]
        assert await vectors.check() == []
    finally:
        await vectors.aclose()
        await graph.aclose()
    conn = sqlite3.connect(path)
    try:
        meta = dict(conn.execute("SELECT key, value FROM engram_meta"))
        assert meta["schema_version"] == "1" and meta["graph_schema_version"] == "1"
        assert meta["dims"] == "4" and meta["graph_dims"] == "8", "each store keeps its own rows"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {
            "memories",
            "history",
            "graph_entities",
            "graph_relations",
            "graph_relation_memories",
        } <= tables
    finally:
        conn.close()


async def test_shares_one_file_with_the_history_store(tmp_path: Path) -> None:
    path = str(tmp_path / "engram.db")
    history = SQLiteHistoryStore(SQLiteHistoryStore.Config(path=path))
    graph = SQLiteGraphStore(SQLiteGraphStore.Config(path=path))
    ents, rels = _graph()
    event = HistoryEvent(
        id="e1", memory_id="m1", event=Event.ADD, old_memory=None, new_memory="x", user_id="u"
    )
    await history.add_events([event])
    await graph.apply(GraphBatch(ents, rels))
    await history.aclose()
    await graph.aclose()
    history = SQLiteHistoryStore(SQLiteHistoryStore.Config(path=path))
    graph = SQLiteGraphStore(SQLiteGraphStore.Config(path=path))
    try:
        assert [e.id for e in await history.history("m1")] == ["e1"]
        assert [r.id for r in await graph.relations(Scope(user_id="u"), memory_ids=["m1"])] == [rels[0].id]
    finally:
        await history.aclose()
        await graph.aclose()


async def test_memory_filters_use_the_index(tmp_path: Path) -> None:
    g = SQLiteGraphStore(SQLiteGraphStore.Config(path=str(tmp_path / "g.db")))
    ents, rels = _graph()
    await g.apply(GraphBatch(ents, rels))
    await g.aclose()
    conn = sqlite3.connect(tmp_path / "g.db")
    try:
        plans = [
            " ".join(r[3] for r in conn.execute(
                "EXPLAIN QUERY PLAN SELECT relation_id FROM graph_relation_memories"
                " WHERE memory_id IN (SELECT value FROM json_each(?))", ('["m1"]',))),
            " ".join(r[3] for r in conn.execute(
                "EXPLAIN QUERY PLAN SELECT seq FROM graph_relations WHERE source_id IN (SELECT value FROM json_each(?))",
                ('["x"]',))),
        ]  # fmt: skip
    finally:
        conn.close()
    assert "graph_relation_memories_by_memory" in plans[0], plans[0]
    assert "graph_relations_source" in plans[1], plans[1]


async def test_key_held_by_another_entity_is_refused(tmp_path: Path) -> None:
    g = SQLiteGraphStore(SQLiteGraphStore.Config(path=str(tmp_path / "g.db")))
    try:
        first = Entity(name="Alice", user_id="u")
        await g.apply(GraphBatch(entities=[first]))
        with pytest.raises(InvalidInputError, match="key"):
            await g.apply(
                GraphBatch(entities=[Entity(name="Bob", user_id="u"), Entity(name="ALICE.", user_id="u")])
            )
        assert [e.name for e in await g.entities(Scope(user_id="u"))] == ["Alice"]
        await g.apply(
            GraphBatch(entities=[Entity(name="Alice", user_id="u", agent_id="a")])
        )  # another exact scope
        assert len(await g.entities(Scope(user_id="u"), keys=["alice"])) == 2
    finally:
        await g.aclose()


async def test_index_follows_another_process(tmp_path: Path) -> None:
    path = str(tmp_path / "g.db")
    one, two = (SQLiteGraphStore(SQLiteGraphStore.Config(path=path)) for _ in range(2))
    try:
        ents, _ = _graph()
        await one.apply(GraphBatch(ents[:1]))
        q = ents[1].embedding or []
        assert [e.id for e, _ in await one.similar_entities(Scope(user_id="u"), q)] == [ents[0].id]
        await two.apply(GraphBatch(ents[1:]))  # another connection pool: one's matrix is stale now
        assert [e.id for e, _ in await one.similar_entities(Scope(user_id="u"), q)] == [
            ents[1].id,
            ents[0].id,
        ]
        await two.apply(GraphBatch(delete_entities=[ents[1].id]))
        assert [e.id for e, _ in await one.similar_entities(Scope(user_id="u"), q)] == [ents[0].id]
        with pytest.raises(InvalidInputError):
            await one.similar_entities(Scope(user_id="u"), [1.0, 2.0])
    finally:
        await one.aclose()
        await two.aclose()


async def test_closed_store_raises_provider_error(tmp_path: Path) -> None:
    g = SQLiteGraphStore(SQLiteGraphStore.Config(path=str(tmp_path / "g.db")))
    await g.entities(Scope(user_id="u"))
    await g.aclose()
    with pytest.raises(ProviderError):
        await g.entities(Scope(user_id="u"))


async def test_sqlite_errors_are_translated(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    path.write_bytes(b"this is not a database" * 100)
    g = SQLiteGraphStore(SQLiteGraphStore.Config(path=str(path)))
    try:
        with pytest.raises(ProviderError) as info:
            await g.entities(Scope(user_id="u"))
        assert isinstance(info.value.__cause__, sqlite3.Error)
    finally:
        await g.aclose()
