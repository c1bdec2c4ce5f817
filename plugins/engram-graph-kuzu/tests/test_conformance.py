"""The graph store conformance suite against Kuzu: a database file, and an in-memory database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from engram.graph.kuzu import KuzuGraphStore
from engram.testing import GraphStoreConformance

POOL = 64 << 20  # 64 MiB buffer pool: many databases are open during a test run


class TestKuzuGraphStore(GraphStoreConformance):
    @pytest.fixture
    async def graph_store(self, tmp_path: Any) -> AsyncIterator[KuzuGraphStore]:
        store = KuzuGraphStore(
            KuzuGraphStore.Config(path=str(tmp_path / "graph.kuzu"), buffer_pool_size=POOL)
        )
        yield store
        await store.aclose()

    async def reopen(self, provider: KuzuGraphStore) -> KuzuGraphStore:
        await provider.aclose()
        return KuzuGraphStore(provider.config)


class TestKuzuGraphStoreInMemory(GraphStoreConformance):
    big = 2_000  # the large-batch check is the file store's; keep this copy quick

    @pytest.fixture
    async def graph_store(self) -> AsyncIterator[KuzuGraphStore]:
        store = KuzuGraphStore(KuzuGraphStore.Config(path=":memory:", buffer_pool_size=POOL))
        yield store
        await store.aclose()
