"""engram's VectorStoreConformance suite on the Qdrant store: local mode in memory and in a folder,
and a real Qdrant server over REST and over gRPC.

The server classes are marked ``integration`` and run when ``ENGRAM_TEST_QDRANT_URL`` is set
(``ENGRAM_TEST_QDRANT_GRPC_PORT`` as well for gRPC)::

    python scripts/qdrant_server.py start --state /tmp/qdrant-test
    export $(cat /tmp/qdrant-test/qdrant.env)
    uv run pytest plugins/engram-vector-qdrant -m integration
    python scripts/qdrant_server.py stop --state /tmp/qdrant-test

Each check on the server gets its own collection (a random name), dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from engram.testing import VectorStoreConformance
from engram.vector.qdrant import QdrantVectorStore

URL = os.environ.get("ENGRAM_TEST_QDRANT_URL")
GRPC_PORT = os.environ.get("ENGRAM_TEST_QDRANT_GRPC_PORT")
NEEDS_SERVER = (
    "needs a Qdrant server: run `python scripts/qdrant_server.py start --state DIR` and set "
    "ENGRAM_TEST_QDRANT_URL (nox -s integration does both)"
)


class _Reopenable(VectorStoreConformance):
    """The suite on a store that keeps its data (a folder, a server): reopening it is a new
    store on the same config."""

    async def reopen(self, provider: QdrantVectorStore) -> QdrantVectorStore:
        await provider.aclose()
        return QdrantVectorStore(provider.config)


class TestQdrantInMemory(VectorStoreConformance):
    @pytest.fixture
    async def store(self) -> AsyncIterator[QdrantVectorStore]:
        s = QdrantVectorStore(QdrantVectorStore.Config(location=":memory:"))
        yield s
        await s.aclose()


class TestQdrantLocalFolder(_Reopenable):
    # qdrant-client's folder mode commits every point to its SQLite file on its own (one fsync per
    # point: about 9 ms each on this machine), so test_batch_upsert_10k's 2 x 10K points take three
    # minutes here. The 10K check runs in memory and on the server; this class writes 1K.
    batch_size = 1_000

    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[QdrantVectorStore]:
        s = QdrantVectorStore(QdrantVectorStore.Config(path=str(tmp_path / "qdrant")))
        yield s
        await s.aclose()


async def _server_store(**options: Any) -> AsyncIterator[QdrantVectorStore]:
    config = QdrantVectorStore.Config(url=URL, collection=f"engram_test_{uuid.uuid4().hex[:12]}", **options)
    store = QdrantVectorStore(config)
    try:
        yield store
    finally:
        cleanup = QdrantVectorStore(config)  # the check may have closed its own instance
        try:
            await cleanup.reset()
        finally:
            await cleanup.aclose()
            await store.aclose()


@pytest.mark.integration
@pytest.mark.skipif(not URL, reason=NEEDS_SERVER)
class TestQdrantServer(_Reopenable):
    @pytest.fixture
    async def store(self) -> AsyncIterator[QdrantVectorStore]:
        async for s in _server_store():
            yield s


@pytest.mark.integration
@pytest.mark.skipif(
    not (URL and GRPC_PORT),
    reason=NEEDS_SERVER.replace(
        "ENGRAM_TEST_QDRANT_URL", "ENGRAM_TEST_QDRANT_URL and ENGRAM_TEST_QDRANT_GRPC_PORT"
    ),
)
class TestQdrantServerGrpc(_Reopenable):
    @pytest.fixture
    async def store(self) -> AsyncIterator[QdrantVectorStore]:
        async for s in _server_store(prefer_grpc=True, grpc_port=int(GRPC_PORT or 6334)):
            yield s
