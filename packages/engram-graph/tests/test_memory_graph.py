"""The memory graph store: the conformance suite plus what is particular to it."""

from __future__ import annotations

import pytest
from engram.core import Entity, GraphBatch, GraphStore, Registry, Scope
from engram.core.errors import InvalidInputError
from engram.graph.memory import MemoryGraphStore
from engram.testing import GraphStoreConformance


class TestMemoryGraphStore(GraphStoreConformance):
    @pytest.fixture
    async def graph_store(self):
        g = MemoryGraphStore()
        yield g
        await g.aclose()


def test_is_a_graph_store() -> None:
    assert isinstance(MemoryGraphStore(), GraphStore)
    assert MemoryGraphStore.capabilities == frozenset()
    assert isinstance(MemoryGraphStore.from_url("memory://"), MemoryGraphStore)
    assert isinstance(Registry().create("graph_store", "memory"), MemoryGraphStore)
    assert isinstance(
        Registry().create("graph_store", {"provider": "memory", "config": {}}), MemoryGraphStore
    )


async def test_key_held_by_another_entity_is_refused() -> None:
    g = MemoryGraphStore()
    first = Entity(name="Alice", user_id="u")
    await g.apply(GraphBatch(entities=[first]))
    with pytest.raises(InvalidInputError, match="key"):
        await g.apply(GraphBatch(entities=[Entity(name="ALICE.", user_id="u")]))
    await g.apply(
        GraphBatch(entities=[Entity(name="Alice", user_id="u", agent_id="a")])
    )  # another exact scope
    renamed = Entity(name="Alicia", user_id="u", id=first.id)
    await g.apply(GraphBatch(entities=[renamed, Entity(name="alice", user_id="u")]))  # the key is freed
    assert sorted(e.key for e in await g.entities(Scope(user_id="u"))) == ["alice", "alice", "alicia"]
