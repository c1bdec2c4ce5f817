"""Kuzu-specific checks: URLs and config, laziness, the registry, the vector index and its upkeep."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydantic
import pytest
from engram.core import Entity, GraphBatch, Registry, Scope
from engram.core.errors import ConfigurationError, InvalidInputError
from engram.graph.kuzu import KuzuGraphStore
from engram.graph.kuzu import _store as store_module

POOL = 64 << 20
DIMS = 8


def unit(rng: np.random.Generator, n: int = 1) -> np.ndarray:
    v = rng.normal(size=(n, DIMS))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def ent(i: int, vec: np.ndarray, user: str = "u1", **kw: Any) -> Entity:
    return Entity(name=f"e{i}", user_id=user, id=f"{user}-{i}", embedding=[float(x) for x in vec], **kw)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[KuzuGraphStore]:
    s = KuzuGraphStore(path=str(tmp_path / "g.kuzu"), buffer_pool_size=POOL)
    yield s
    await s.aclose()


@pytest.fixture
def queries(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every Cypher statement the store runs, in order."""
    seen: list[str] = []
    real = store_module._rows

    def spy(conn: Any, query: str, params: dict[str, Any] | None = None) -> list[list[Any]]:
        seen.append(query)
        return real(conn, query, params)

    monkeypatch.setattr(store_module, "_rows", spy)
    yield seen


def used(queries: list[str], needle: str) -> int:
    return sum(needle in q for q in queries)


# -- config, URLs, registry ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("kuzu:///data/graph.kuzu", "data/graph.kuzu"),
        ("kuzu:////var/lib/engram/graph.kuzu", "/var/lib/engram/graph.kuzu"),
        ("kuzu://:memory:", ":memory:"),
        ("kuzu:///:memory:", ":memory:"),
        ("kuzu:///my%20graph.kuzu", "my graph.kuzu"),
    ],
)
def test_from_url(url: str, path: str) -> None:
    s = KuzuGraphStore.from_url(url)
    assert s.config.path == path
    want = {"entity_vectors"} if path == ":memory:" else {"entity_vectors", "persistent"}
    assert s.capabilities == want


def test_from_url_options_and_errors() -> None:
    s = KuzuGraphStore.from_url("kuzu:///g.kuzu?buffer_pool_size=1048576&ef_search=64")
    assert s.config.buffer_pool_size == 1 << 20 and s.config.ef_search == 64
    for bad in ("sqlite:///g.db", "kuzu://host/g.kuzu", "kuzu://"):
        with pytest.raises(ConfigurationError):
            KuzuGraphStore.from_url(bad)
    with pytest.raises(pydantic.ValidationError):
        KuzuGraphStore.Config(path="x", dims=3)  # type: ignore[call-arg]


async def test_connects_lazily(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "g.kuzu"
    s = KuzuGraphStore(path=str(path), buffer_pool_size=POOL)
    assert not path.exists() and not path.parent.exists(), "the constructor must not touch the disk"
    assert await s.entities(Scope(user_id="u1")) == []
    assert path.exists()
    await s.aclose()


def test_registry_finds_kuzu_by_name_and_url() -> None:
    reg = Registry()
    assert "kuzu" in reg.names("graph_store")
    assert reg.load("graph_store", "kuzu") is KuzuGraphStore
    s = reg.create("graph_store", "kuzu://:memory:")
    assert isinstance(s, KuzuGraphStore) and s.config.path == ":memory:"
    s = reg.create(
        "graph_store", {"provider": "kuzu", "config": {"path": ":memory:", "buffer_pool_size": POOL}}
    )
    assert isinstance(s, KuzuGraphStore)
    with pytest.raises(ConfigurationError):
        reg.create("graph_store", {"provider": "kuzu", "config": {"path": ":memory:", "nope": 1}})


# -- the vector index ----------------------------------------------------------------------------


async def test_index_answers_and_scope_prefilters(store: KuzuGraphStore, queries: list[str]) -> None:
    rng = np.random.default_rng(5)
    q = unit(rng)[0]
    near = q + 0.01 * unit(rng, 300)  # another user's entities, all closer to the query than any of u1's
    mine = unit(rng, 40)
    await store.apply(GraphBatch([ent(i, v, user="u2") for i, v in enumerate(near)]))
    await store.apply(GraphBatch([ent(i, v, user="u1", agent_id=f"a{i % 2}") for i, v in enumerate(mine)]))
    queries.clear()
    got = await store.similar_entities(Scope(user_id="u1"), q.tolist(), limit=10)
    truth = mine @ q
    assert [e.id for e, _ in got] == [f"u1-{i}" for i in np.argsort(-truth)[:10]]
    assert [s for _, s in got] == pytest.approx(sorted(truth, reverse=True)[:10], abs=1e-9)
    assert used(queries, "QUERY_VECTOR_INDEX") == 1 and used(queries, "array_cosine_similarity") == 0, (
        "the index answered alone: the scope filter ran inside it, before the cut to limit"
    )
    queries.clear()
    got = await store.similar_entities(Scope(user_id="u1", agent_id="a1"), q.tolist(), limit=5)
    odd = [i for i in np.argsort(-truth) if i % 2 == 1][:5]
    assert [e.id for e, _ in got] == [f"u1-{i}" for i in odd]
    assert used(queries, "array_cosine_similarity") == 0


async def test_short_index_result_falls_back_to_exact_scan(store: KuzuGraphStore, queries: list[str]) -> None:
    rng = np.random.default_rng(6)
    vecs = unit(rng, 3)
    await store.apply(GraphBatch([ent(i, v) for i, v in enumerate(vecs)]))
    queries.clear()
    got = await store.similar_entities(Scope(user_id="u1"), vecs[0].tolist(), limit=10)
    assert len(got) == 3 and got[0][0].id == "u1-0" and got[0][1] == pytest.approx(1.0)
    assert used(queries, "QUERY_VECTOR_INDEX") == 1 and used(queries, "array_cosine_similarity") == 1


async def test_scope_ids_with_quotes_in_the_index_filter(store: KuzuGraphStore) -> None:
    rng = np.random.default_rng(7)
    odd = "o'brien \\' OR true --"
    await store.apply(GraphBatch([ent(i, v, user=odd) for i, v in enumerate(unit(rng, 12))]))
    await store.apply(GraphBatch([ent(i, v, user="o") for i, v in enumerate(unit(rng, 12))]))
    got = await store.similar_entities(Scope(user_id=odd), unit(rng)[0].tolist(), limit=20)
    assert len(got) == 12 and {e.user_id for e, _ in got} == {odd}


async def test_replaced_embeddings_retire_rows_and_compact(store: KuzuGraphStore) -> None:
    rng = np.random.default_rng(8)
    first_gen = None
    for round_ in range(30):  # 20 entities x 30 new embeddings: retired rows pile up, then a rebuild
        vecs = unit(rng, 20)
        await store.apply(GraphBatch([ent(i, v, mentions=round_ + 1) for i, v in enumerate(vecs)]))
        first_gen = first_gen or store._gen
    assert store._gen > first_gen, "the vector table was rebuilt as a new generation"
    q = unit(rng)[0]
    got = await store.similar_entities(Scope(user_id="u1"), q.tolist(), limit=5)
    assert [e.id for e, _ in got] == [f"u1-{i}" for i in np.argsort(-(vecs @ q))[:5]], "only live rows answer"
    assert len(await store.entities(Scope(user_id="u1"))) == 20


async def test_emptied_vector_table_is_dropped_and_dims_freed(
    store: KuzuGraphStore, queries: list[str]
) -> None:
    rng = np.random.default_rng(9)
    await store.apply(GraphBatch([ent(i, v) for i, v in enumerate(unit(rng, 5))]))
    await store.delete_scope(Scope(user_id="u1"))
    assert store._vec is None and store._dims is None
    # Kuzu 0.11's index finds nothing once every indexed row was deleted; a new table avoids that
    wide = [
        Entity(name=f"w{i}", user_id="u1", id=f"w{i}", embedding=rng.normal(size=12).tolist())
        for i in range(12)
    ]
    await store.apply(GraphBatch(wide))
    queries.clear()
    got = await store.similar_entities(Scope(user_id="u1"), wide[3].embedding or [], limit=10)
    assert len(got) == 10 and got[0][0].id == "w3"
    assert used(queries, "array_cosine_similarity") == 0
    with pytest.raises(InvalidInputError):
        await store.similar_entities(Scope(user_id="u1"), [1.0, 0.0], limit=3)
    with pytest.raises(InvalidInputError):
        await store.apply(GraphBatch([Entity(name="bad", user_id="u1", embedding=[float("nan")] * 12)]))


async def test_reopen_keeps_the_index(tmp_path: Path, queries: list[str]) -> None:
    rng = np.random.default_rng(10)
    vecs = unit(rng, 30)
    s = KuzuGraphStore(path=str(tmp_path / "g.kuzu"), buffer_pool_size=POOL)
    await s.apply(GraphBatch([ent(i, v) for i, v in enumerate(vecs)]))
    await s.aclose()
    s2 = KuzuGraphStore(path=str(tmp_path / "g.kuzu"), buffer_pool_size=POOL)
    try:
        queries.clear()
        got = await s2.similar_entities(Scope(user_id="u1"), vecs[4].tolist(), limit=5)
        assert got[0][0].id == "u1-4" and len(got) == 5
        assert used(queries, "QUERY_VECTOR_INDEX") == 1 and used(queries, "array_cosine_similarity") == 0
        with pytest.raises(InvalidInputError):  # the dims survive the reopen too
            await s2.apply(GraphBatch([Entity(name="x", user_id="u1", embedding=[1.0, 2.0])]))
    finally:
        await s2.aclose()


async def test_closed_store_refuses(tmp_path: Path) -> None:
    from engram.core.errors import ProviderError

    s = KuzuGraphStore(path=":memory:", buffer_pool_size=POOL)
    await s.apply(GraphBatch([Entity(name="a", user_id="u1")]))
    await s.aclose()
    with pytest.raises(ProviderError):
        await s.entities(Scope(user_id="u1"))
