"""``AsyncMemory.search`` with the ``fastembed`` reranker, end to end and offline: the cross-encoder is
the small ONNX graph conftest.py builds (``reranker_dir``; every test here runs with
``HF_HUB_OFFLINE=1``), the store SQLite in memory, the embedder the hash embedder. The expected
order is the reranker's own, run directly on the texts search sent it; the graph scores bags of
word pieces, which orders these memories differently from engram's fusion."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from engram.core import AsyncMemory
from engram.embedding.fastembed import FastEmbedReranker

USER = "alice"
QUERY = "where does alice live now"
MEMORIES = [
    "Alice lives in Oslo now, she moved in 2021.",
    "Where Alice lived before Oslo: Bergen, then Trondheim.",
    "Alice does not like the cold weather in Oslo.",
    "Bob lives in Lisbon now.",
    "Alice plays the cello on Fridays.",
    "Now and then Alice visits her sister in Bergen.",
    "The weather in Oslo is cold in winter.",
]
BASE = {"vector_store": "sqlite:///:memory:", "embedder": "hash", "telemetry": False}


async def memory_with(config: dict[str, Any]) -> AsyncMemory:
    memory = AsyncMemory(config)
    for text in MEMORIES:
        await memory.add(text, user_id=USER, infer=False)
    return memory


@pytest.fixture
async def fused() -> list[str]:
    """Every memory, in the order search ranks them with no reranker."""
    async with await memory_with(BASE) as plain:
        return [r["memory"] for r in (await plain.search(QUERY, user_id=USER, limit=20))["results"]]


@pytest.mark.parametrize("form", ["instance", "spec"])
async def test_search_reorders_by_the_cross_encoder(
    form: str, reranker_dir: Path, fused: list[str], reference_scores: Callable[[str, list[str]], np.ndarray]
) -> None:
    assert len(fused) == len(MEMORIES)
    direct = FastEmbedReranker(model_path=reranker_dir)
    ranked = await direct.rerank(QUERY, fused)
    await direct.aclose()
    expected = [fused[i] for i, _ in ranked]
    assert expected[:3] != fused[:3]  # the cross-encoder disagrees with the fusion: the test can fail
    want = reference_scores(QUERY, fused)  # onnxruntime on the same file, without fastembed
    assert expected[0] == fused[int(np.argmax(want))]
    reranker: Any = (
        FastEmbedReranker(model_path=reranker_dir)
        if form == "instance"
        else {"provider": "fastembed", "config": {"model_path": str(reranker_dir)}}
    )
    async with await memory_with({**BASE, "reranker": reranker}) as memory:
        out = (await memory.search(QUERY, user_id=USER, limit=5))["results"]
    assert [r["memory"] for r in out] == expected[:5]
    relevance = dict((fused[i], s) for i, s in ranked)
    for r in out:
        assert r["scores"]["rerank"] == pytest.approx(relevance[r["memory"]], abs=1e-5)
    scores = [r["score"] for r in out]
    assert scores == sorted(scores, reverse=True)


async def test_only_the_candidates_are_scored(reranker_dir: Path, fused: list[str]) -> None:
    reranker = FastEmbedReranker(model_path=reranker_dir)
    config = {**BASE, "reranker": reranker, "search": {"rerank": {"candidates": 3}}}
    async with await memory_with(config) as memory:
        out = (await memory.search(QUERY, user_id=USER, limit=2))["results"]
        direct = await reranker.rerank(QUERY, fused[:3])
    assert [r["memory"] for r in out] == [fused[i] for i, _ in direct[:2]]
    assert {r["memory"] for r in out} <= set(fused[:3])
