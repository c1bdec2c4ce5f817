"""MemoryVectorStore against the vector store conformance suite."""

from __future__ import annotations

import pytest
from engram.core import RehearsalStore, VectorStore
from engram.testing import VectorStoreConformance
from engram.vector.memory import MemoryVectorStore


class TestMemoryVectorStore(VectorStoreConformance):
    @pytest.fixture
    async def store(self):
        s = MemoryVectorStore()
        yield s
        await s.aclose()


def test_is_a_vector_store() -> None:
    assert isinstance(MemoryVectorStore(), VectorStore)
    assert isinstance(MemoryVectorStore(), RehearsalStore)
    assert {"archive", "rehearsal", "substring_filters", "string_range_filters"} <= MemoryVectorStore.capabilities
    assert not {"lexical", "history", "persistent"} & MemoryVectorStore.capabilities
    assert isinstance(MemoryVectorStore.from_url("memory://"), MemoryVectorStore)
