"""``AsyncMemory.search`` with the ``llm`` reranker, end to end: the memory's LLM is ``openai`` on the
local OpenAI-compatible server (:class:`engram.testing.llm_server.LLMServer`, a real HTTP server on
127.0.0.1), the store SQLite in memory, the embedder the hash embedder. The server's "model" ranks
the passages it is shown in reverse (the last listed first), so a search that really follows the
reranker returns the fused order turned upside down, which a search that ignored it could not.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from engram.core import AsyncMemory
from engram.core.errors import ConfigurationError
from engram.reranker.llm import LLMReranker
from engram.testing.llm_server import LLMServer, RecordedRequest, Reply
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

USER = "maya"
QUERY = "what does maya drink in the morning"
MEMORIES = [
    "Maya drinks green tea every morning.",
    "Maya drinks coffee only in the afternoon.",
    "In the morning Maya walks her dog.",
    "Maya likes to drink cold water after running.",
    "Maya's brother drinks espresso in the morning.",
    "Maya lives in Lisbon near the river.",
    "Maya plays chess on Sunday mornings.",
    "The morning train to Porto leaves at seven.",
]


def reverse_ranking(helpers: Any) -> Any:
    """The server's model: the passages of the prompt, last listed first."""

    def answer(request: RecordedRequest) -> Reply:
        return Reply.json({"ranking": sorted(helpers.passages_of(request), reverse=True)})

    return answer


@pytest.fixture
def server(helpers: Any) -> Iterator[LLMServer]:
    with LLMServer(default=reverse_ranking(helpers)) as s:
        yield s


def config(server: LLMServer | None, helpers: Any, **extra: Any) -> dict[str, Any]:
    c: dict[str, Any] = {"vector_store": "sqlite:///:memory:", "embedder": "hash", "telemetry": False}
    if server is not None:
        c["llm"] = helpers.llm_spec(server)
    return {**c, **extra}


async def filled(cfg: dict[str, Any], memories: list[str] = MEMORIES, **kwargs: Any) -> AsyncMemory:
    memory = AsyncMemory(cfg, **kwargs)
    for text in memories:
        await memory.add(text, user_id=USER, infer=False)
    return memory


def chat(server: LLMServer) -> list[RecordedRequest]:
    return server.requests_for("openai")


async def fused(helpers: Any, limit: int, memories: list[str] = MEMORIES) -> list[dict[str, Any]]:
    """The results of the same search on the same memories without a reranker (nor an LLM)."""
    async with await filled(config(None, helpers), memories) as plain:
        return (await plain.search(QUERY, user_id=USER, limit=limit))["results"]


async def test_search_follows_the_rerankers_order_with_one_llm_call(server: LLMServer, helpers: Any) -> None:
    before = await fused(helpers, limit=20)
    assert len(before) == len(MEMORIES)
    async with await filled(config(server, helpers, reranker="llm")) as memory:
        assert chat(server) == []  # add(infer=False) asks the LLM nothing
        out = (await memory.search(QUERY, user_id=USER, limit=5))["results"]
        (request,) = chat(server)
        # every fused hit (8, below the default 20 candidates) was shown, best fused first
        assert list(helpers.passages_of(request).values()) == [r["memory"] for r in before]
        assert f"Query: {QUERY}" in helpers.prompt_of(request)
        # the results are the server's ranking: the fused order reversed, cut to the limit
        assert [r["memory"] for r in out] == [r["memory"] for r in reversed(before)][:5]
        assert [r["memory"] for r in out] != [r["memory"] for r in before][:5]
        n = len(MEMORIES)
        assert [r["scores"]["rerank"] for r in out] == pytest.approx([1 - p / n for p in range(5)])
        for r in out:  # the fused per-path scores are kept beside the reranker's
            assert {"dense", "lexical"} <= set(r["scores"])
        scores = [r["score"] for r in out]
        assert scores == sorted(scores, reverse=True)
        # the score stays on the fused scale: the reranker's first gets the best fused score, and
        # with every hit reranked the last (not returned here) gets the lowest
        assert scores[0] == pytest.approx(before[0]["score"])
        everything = (await memory.search(QUERY, user_id=USER, limit=20))["results"]
        assert len(chat(server)) == 2
        assert everything[-1]["score"] == pytest.approx(before[-1]["score"])
        assert everything[-1]["memory"] == before[0]["memory"]


async def test_limit_and_threshold_apply_after_reranking(server: LLMServer, helpers: Any) -> None:
    before = await fused(helpers, limit=20)
    async with await filled(config(server, helpers, reranker="llm")) as memory:
        for limit in (1, 2, 7):
            out = (await memory.search(QUERY, user_id=USER, limit=limit))["results"]
            assert len(out) == limit
            assert out[0]["memory"] == before[-1]["memory"]
        assert len(chat(server)) == 3
        # a threshold between the fused extremes keeps the reranked hits whose remapped score reaches it
        middle = (before[0]["score"] + before[-1]["score"]) / 2
        kept = (await memory.search(QUERY, user_id=USER, limit=20, threshold=middle))["results"]
        assert 0 < len(kept) < len(MEMORIES)
        assert all(r["score"] >= middle for r in kept)
        assert [r["memory"] for r in kept] == [r["memory"] for r in reversed(before)][: len(kept)]


async def test_rerank_candidates_caps_the_documents_in_the_prompt(server: LLMServer, helpers: Any) -> None:
    before = await fused(helpers, limit=20)
    cfg = config(server, helpers, reranker="llm", search={"rerank": {"candidates": 4}})
    async with await filled(cfg) as memory:
        out = (await memory.search(QUERY, user_id=USER, limit=2))["results"]
        (request,) = chat(server)
        # only the best 4 fused hits were sent; the server reversed them
        assert list(helpers.passages_of(request).values()) == [r["memory"] for r in before[:4]]
        assert [r["memory"] for r in out] == [before[3]["memory"], before[2]["memory"]]
        assert [r["scores"]["rerank"] for r in out] == pytest.approx([1.0, 0.75])
        # a limit above the candidates sends as many as the limit asks for
        out = (await memory.search(QUERY, user_id=USER, limit=6))["results"]
        assert len(chat(server)) == 2
        assert list(helpers.passages_of(chat(server)[1]).values()) == [r["memory"] for r in before[:6]]
        assert [r["memory"] for r in out] == [r["memory"] for r in reversed(before[:6])]


async def test_without_a_reranker_search_calls_no_llm(server: LLMServer, helpers: Any) -> None:
    before = await fused(helpers, limit=5)
    async with await filled(config(server, helpers)) as memory:
        out = (await memory.search(QUERY, user_id=USER, limit=5))["results"]
    assert chat(server) == []
    assert [r["memory"] for r in out] == [r["memory"] for r in before]
    assert all("rerank" not in r["scores"] for r in out)


async def test_a_single_hit_is_not_reranked(server: LLMServer, helpers: Any) -> None:
    async with await filled(config(server, helpers, reranker="llm"), MEMORIES[:1]) as memory:
        out = (await memory.search(QUERY, user_id=USER))["results"]
    assert [r["memory"] for r in out] == MEMORIES[:1]
    assert "rerank" not in out[0]["scores"]
    assert chat(server) == []


async def test_the_llm_reranker_needs_an_llm(helpers: Any) -> None:
    memory = AsyncMemory(config(None, helpers, reranker="llm"))
    with pytest.raises(ConfigurationError, match="reranker needs an LLM"):
        await memory.add("Maya drinks green tea.", user_id=USER, infer=False)
    with pytest.raises(ConfigurationError, match="reranker needs an LLM"):  # every use, not only the first
        await memory.search(QUERY, user_id=USER)
    await memory.aclose()


async def test_a_reranker_with_its_own_llm_needs_none_from_the_memory(
    server: LLMServer, helpers: Any
) -> None:
    before = await fused(helpers, limit=3)
    reranker = LLMReranker(llm=helpers.llm_spec(server))
    memory = await filled(config(None, helpers, reranker=reranker))
    out = (await memory.search(QUERY, user_id=USER, limit=3))["results"]
    assert len(chat(server)) == 1
    assert [r["memory"] for r in out] != [r["memory"] for r in before]
    assert out[0]["memory"] == (await fused(helpers, limit=20))[-1]["memory"]
    assert reranker._llm is not None  # the reranker built its LLM from the spec...
    await memory.aclose()
    assert reranker._llm is None  # ...and the memory's aclose closed the reranker, and so that LLM


async def test_the_rerank_span_and_its_llm_call(server: LLMServer, helpers: Any) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    cfg = {**config(server, helpers, reranker="llm"), "telemetry": True}
    async with await filled(cfg, tracer_provider=provider) as memory:
        exporter.clear()
        await memory.search(QUERY, user_id=USER, limit=3)
    spans = exporter.get_finished_spans()
    (search,) = [s for s in spans if s.name == "engram.search"]
    (rerank,) = [s for s in spans if s.name == "engram.reranker.rerank"]
    assert rerank.parent is not None and rerank.parent.span_id == search.context.span_id
    assert rerank.attributes["engram.provider"] == "llm"
    assert rerank.attributes["engram.rerank.documents"] == len(MEMORIES)
    assert rerank.attributes["engram.results.count"] == len(MEMORIES)
    (call,) = [s for s in spans if s.name.startswith("chat")]
    assert call.parent is not None and call.parent.span_id == rerank.context.span_id
    assert call.attributes["engram.llm.task"] == "rerank"
    provider.shutdown()


async def test_a_failing_reranker_keeps_the_fused_order_and_is_named_in_missing(helpers: Any) -> None:
    from engram.testing.llm_server import Fault

    before = await fused(helpers, limit=5)
    with LLMServer(default=Fault.status(400, "model is overloaded")) as server:
        async with await filled(config(server, helpers, reranker="llm")) as memory:
            out = await memory.search(QUERY, user_id=USER, limit=5)
    assert "rerank" in out["missing"] and "model is overloaded" in out["missing"]["rerank"]
    assert [r["id"] for r in out["results"]] != [] and [r["memory"] for r in out["results"]] == [
        r["memory"] for r in before
    ]
    assert all("rerank" not in r["scores"] for r in out["results"])
