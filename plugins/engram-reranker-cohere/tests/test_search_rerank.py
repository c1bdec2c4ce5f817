"""``AsyncMemory.search`` with ``reranker="cohere"``, end to end: CohereReranker talks to
:class:`engram.testing.rerank_server.RerankServer`, a real Cohere ``/v2/rerank`` server on 127.0.0.1
that scores each document with a deterministic lexical relevance (BM25's saturation without IDF,
see its module). That scoring orders these memories differently from engram's fusion (hash
embeddings + BM25 with IDF), so a search that ignored the reranker would fail these tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from engram.core import AsyncMemory
from engram.testing.rerank_server import RerankServer

KEY = "co-test-search-key"
USER = "maya"
QUERY = "which city did maya move to"
MEMORIES = [
    "Maya moved to Porto in 2021 for a new job.",
    "Maya Maya Maya: the city of Lisbon, the city of Porto, the city of Braga, Maya said.",
    "Which city has the best coffee? Maya thinks Porto.",
    "Maya did not move the piano to the new flat.",
    "The city council moved the market to the river.",
    "Maya's sister moved to Berlin.",
    "Maya likes cities by the sea.",
]
BASE = {"vector_store": "sqlite:///:memory:", "embedder": "hash", "telemetry": False}


@pytest.fixture
def server() -> Iterator[RerankServer]:
    with RerankServer(api_key=KEY) as s:
        yield s


def cohere(server: RerankServer) -> dict[str, Any]:
    return {
        "provider": "cohere",
        "config": {"base_url": server.base_url, "api_key": KEY, "max_retries": 0, "timeout": 5.0},
    }


async def memory_with(config: dict[str, Any]) -> AsyncMemory:
    memory = AsyncMemory(config)
    for text in MEMORIES:
        await memory.add(text, user_id=USER, infer=False)
    return memory


@pytest.fixture
async def fused() -> list[dict[str, Any]]:
    """Every memory as search ranks it with no reranker."""
    async with await memory_with(BASE) as plain:
        return (await plain.search(QUERY, user_id=USER, limit=20))["results"]


async def test_search_order_follows_the_servers_scores(
    server: RerankServer, fused: list[dict[str, Any]]
) -> None:
    fused_order = [r["memory"] for r in fused]
    assert len(fused_order) == len(MEMORIES)
    expected = [fused_order[i] for i, _ in RerankServer.rank(QUERY, fused_order)]
    assert expected[:4] != fused_order[:4]  # the server disagrees with the fusion, so the test can fail
    async with await memory_with({**BASE, "reranker": cohere(server)}) as memory:
        assert server.rerank_requests == []
        out = (await memory.search(QUERY, user_id=USER, limit=4))["results"]
        (request,) = server.rerank_requests
        assert request.query == QUERY
        assert request.documents == fused_order  # every fused hit (7 < 20 candidates), best fused first
        assert request.bearer == KEY
        assert [r["memory"] for r in out] == expected[:4]
        for r in out:
            assert r["scores"]["rerank"] == pytest.approx(RerankServer.score(QUERY, r["memory"]))
        scores = [r["score"] for r in out]
        assert scores == sorted(scores, reverse=True)
        # the server's scores are min-max mapped onto the fused range [lowest, highest fused score]
        rel = [s for _, s in RerankServer.rank(QUERY, fused_order)]
        lo, hi = fused[-1]["score"], fused[0]["score"]
        want = [lo + (hi - lo) * (s - rel[-1]) / (rel[0] - rel[-1]) for s in rel[:4]]
        assert scores == pytest.approx(want)
        await memory.search(QUERY, user_id=USER, limit=2)
        await memory.search("Porto", user_id=USER, limit=2)
        assert len(server.rerank_requests) == 3  # one request per search


async def test_candidates_bound_the_documents_sent(server: RerankServer, fused: list[dict[str, Any]]) -> None:
    fused_order = [r["memory"] for r in fused]
    config = {**BASE, "reranker": cohere(server), "search": {"rerank": {"candidates": 3}}}
    async with await memory_with(config) as memory:
        out = (await memory.search(QUERY, user_id=USER, limit=2))["results"]
    (request,) = server.rerank_requests
    assert request.documents == fused_order[:3]
    assert [r["memory"] for r in out] == [
        fused_order[i] for i, _ in RerankServer.rank(QUERY, fused_order[:3])
    ][:2]
