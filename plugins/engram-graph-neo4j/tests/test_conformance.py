"""The graph store conformance suite against a real Neo4j 5.13+ / 2025.x server.

Runs only when ``ENGRAM_TEST_NEO4J_URI`` is set (with ``ENGRAM_TEST_NEO4J_USER``,
``ENGRAM_TEST_NEO4J_PASSWORD`` and optionally ``ENGRAM_TEST_NEO4J_DATABASE``), for example::

    docker run --rm -p 7687:7687 -e NEO4J_AUTH=neo4j/engram-test-pw neo4j:5
    ENGRAM_TEST_NEO4J_URI=bolt://localhost:7687 ENGRAM_TEST_NEO4J_USER=neo4j \\
        ENGRAM_TEST_NEO4J_PASSWORD=engram-test-pw uv run pytest plugins/engram-graph-neo4j -q

Every check starts from and leaves an empty engram graph: the fixture calls ``reset()`` (which
deletes only engram's own labels and its vector index) before and after. Do not point it at a
database whose engram data you want to keep.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
from engram.graph.neo4j import Neo4jGraphStore
from pydantic import SecretStr

try:
    from engram.testing import GraphStoreConformance
except ImportError:  # the suite is not in this engram-testing yet
    pytest.skip("engram.testing has no GraphStoreConformance yet", allow_module_level=True)

URI = os.environ.get("ENGRAM_TEST_NEO4J_URI")

pytestmark = pytest.mark.skipif(not URI, reason="needs a Neo4j 5 server: set ENGRAM_TEST_NEO4J_URI")


def _config() -> Neo4jGraphStore.Config:
    return Neo4jGraphStore.Config(
        uri=URI or "bolt://localhost:7687",
        username=os.environ.get("ENGRAM_TEST_NEO4J_USER", "neo4j"),
        password=SecretStr(pw) if (pw := os.environ.get("ENGRAM_TEST_NEO4J_PASSWORD")) else None,
        database=os.environ.get("ENGRAM_TEST_NEO4J_DATABASE") or None,
    )


class TestNeo4jGraphStore(GraphStoreConformance):
    @pytest.fixture
    async def graph_store(self) -> AsyncIterator[Neo4jGraphStore]:
        store = Neo4jGraphStore(_config())
        await store.reset()
        try:
            yield store
        finally:
            cleanup = Neo4jGraphStore(store.config)  # the check may have closed its own instance
            try:
                await cleanup.reset()
            finally:
                await cleanup.aclose()
                await store.aclose()

    async def reopen(self, provider: Neo4jGraphStore) -> Neo4jGraphStore:
        await provider.aclose()
        return Neo4jGraphStore(provider.config)
