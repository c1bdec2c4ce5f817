"""The whole vector store conformance suite from engram-testing, against the store saved to a file
and kept in memory only. Checks for capabilities the store does not declare (lexical, history,
archive; and persistent for the in-memory store) are skipped, each naming the capability."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from engram.testing import VectorStoreConformance
from engram_vector_example import ExampleVectorStore


class TestExampleVectorStoreFile(VectorStoreConformance):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[ExampleVectorStore]:
        s = ExampleVectorStore(ExampleVectorStore.Config(path=str(tmp_path / "memories.npz")))
        yield s
        await s.aclose()

    async def reopen(self, provider: ExampleVectorStore) -> ExampleVectorStore:
        await provider.aclose()
        return ExampleVectorStore(provider.config)


class TestExampleVectorStoreInMemory(VectorStoreConformance):
    @pytest.fixture
    async def store(self) -> AsyncIterator[ExampleVectorStore]:
        s = ExampleVectorStore()
        yield s
        await s.aclose()
