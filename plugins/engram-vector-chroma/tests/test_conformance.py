"""The vector store conformance suite against Chroma: in memory, on a folder, and on a server.

Each test gets its own collection (a unique name), deleted afterwards: chromadb keeps one
in-memory database per process (and one per folder), shared by every client of it. The server
checks need ``ENGRAM_TEST_CHROMA_URL`` (``scripts/chroma_server.py`` starts a server and prints it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from engram.testing import VectorStoreConformance
from engram.testing._requires import requirements_of
from engram.vector.chroma import ChromaVectorStore


async def dispose(store: ChromaVectorStore) -> None:
    """Delete the test's collection with a fresh client, then close both."""
    again = ChromaVectorStore(store.config)
    try:
        await again.reset()
    finally:
        await again.aclose()
        await store.aclose()


async def reopen_same(provider: ChromaVectorStore) -> ChromaVectorStore:
    await provider.aclose()
    return ChromaVectorStore(provider.config)


class TestChromaInMemory(VectorStoreConformance):
    # The 10K batch runs on a folder and on the server (the same engine as in memory): keep this copy quick.
    batch_size = 2_000

    @pytest.fixture
    async def store(self, collection: str) -> AsyncIterator[ChromaVectorStore]:
        s = ChromaVectorStore(path=":memory:", collection=collection)
        yield s
        await dispose(s)


class TestChromaPersistent(VectorStoreConformance):
    @pytest.fixture
    async def store(self, tmp_path: Path, collection: str) -> AsyncIterator[ChromaVectorStore]:
        s = ChromaVectorStore(path=str(tmp_path / "chroma"), collection=collection)
        yield s
        await s.aclose()  # the folder goes with tmp_path

    async def reopen(self, provider: ChromaVectorStore) -> ChromaVectorStore:
        return await reopen_same(provider)


@pytest.mark.integration
class TestChromaServer(VectorStoreConformance):
    """The suite against a ``chroma run`` server, without the checks that need a capability the
    store lacks (set to ``None`` below): ``nox -s integration`` fails on any skipped integration
    test, and those would skip by design. The embedded classes above show them skipped, with why."""

    @pytest.fixture
    async def store(self, server: tuple[str, int], collection: str) -> AsyncIterator[ChromaVectorStore]:
        s = ChromaVectorStore(host=server[0], port=server[1], collection=collection)
        yield s
        await dispose(s)

    async def reopen(self, provider: ChromaVectorStore) -> ChromaVectorStore:
        return await reopen_same(provider)


for _name in dir(VectorStoreConformance):
    if _name.startswith("test_") and requirements_of(getattr(VectorStoreConformance, _name)) - ChromaVectorStore.capabilities:
        setattr(TestChromaServer, _name, None)
