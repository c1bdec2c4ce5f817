"""The reranker conformance suite against CohereReranker over the local Cohere /v2/rerank server
(engram.testing.rerank_server on 127.0.0.1), once in one request per call and once split into small
batches that are merged by score."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import ClassVar

import pytest
from engram.reranker.cohere import CohereReranker
from engram.testing import RerankerConformance
from engram.testing.rerank_server import RerankServer
from pydantic import SecretStr

KEY = "co-conformance-key"


@pytest.fixture(scope="module")
def server() -> Iterator[RerankServer]:
    with RerankServer(api_key=KEY) as s:
        yield s


class TestCohereReranker(RerankerConformance):
    # The provider declares only "remote": what else holds depends on the server behind base_url.
    # The local server scores each document alone and by shared words, so it is also these
    # ("semantic", which Cohere's own models are, cannot be checked without them).
    capabilities: ClassVar[frozenset[str] | None] = frozenset({"remote", "pointwise", "lexical"})

    @pytest.fixture
    async def reranker(self, server: RerankServer) -> AsyncIterator[CohereReranker]:
        r = CohereReranker(CohereReranker.Config(base_url=server.base_url, api_key=SecretStr(KEY)))
        yield r
        await r.aclose()


class TestCohereRerankerInBatches(TestCohereReranker):
    @pytest.fixture
    async def reranker(self, server: RerankServer) -> AsyncIterator[CohereReranker]:
        r = CohereReranker(
            CohereReranker.Config(
                base_url=server.base_url, api_key=SecretStr(KEY), max_documents_per_request=2
            )
        )
        yield r
        await r.aclose()
