"""RerankerConformance on a small real reranker, and on broken ones that must fail the right checks.

No reranker ships in engram yet, so the suite is tested here on :class:`OverlapReranker`, a real,
deterministic word-overlap scorer, and on deliberately broken variants of it.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest
from engram.core.errors import InvalidInputError
from engram.testing import CAPABILITIES, RerankerConformance, assert_ranking
from engram.testing._requires import requirements_of
from pydantic import BaseModel, ConfigDict, Field

_TOKEN = re.compile(r"\w+", re.UNICODE)


class OverlapReranker:
    """Cosine similarity of word-count vectors (the vector space model of Salton, Wong and Yang,
    "A vector space model for automatic indexing", CACM 1975): lower-cased ``\\w+`` tokens, the
    first ``max_tokens`` of each text. Ties keep the documents' order."""

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        max_tokens: int = Field(512, ge=1)

    capabilities = frozenset({"lexical", "pointwise"})

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or self.Config()
        self.closed = 0

    def _bag(self, text: str) -> Counter[str]:
        return Counter(_TOKEN.findall(text.lower())[: self.config.max_tokens])

    def _score(self, q: Counter[str], doc: str) -> float:
        d = self._bag(doc)
        dot = sum(n * d[t] for t, n in q.items())
        norm = math.sqrt(sum(n * n for n in q.values())) * math.sqrt(sum(n * n for n in d.values()))
        return dot / norm if norm else 0.0

    def _check(self, documents: Sequence[str], top_n: int | None) -> None:
        if isinstance(documents, str) or any(not isinstance(d, str) for d in documents):
            raise InvalidInputError("documents must be a sequence of strings")
        if top_n is not None and top_n < 1:
            raise InvalidInputError(f"top_n must be at least 1 or None, got {top_n}")

    async def rerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> list[tuple[int, float]]:
        self._check(documents, top_n)
        q = self._bag(query)
        scored = sorted(((i, self._score(q, d)) for i, d in enumerate(documents)), key=lambda p: (-p[1], p[0]))
        return scored if top_n is None else scored[:top_n]

    async def aclose(self) -> None:
        self.closed += 1


class TestOverlapReranker(RerankerConformance):
    @pytest.fixture
    async def reranker(self):
        r = OverlapReranker()
        yield r
        await r.aclose()


# -- broken rerankers: each must fail the check that covers its fault ----------------------------------


class Unsorted(OverlapReranker):
    async def rerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> list[tuple[int, float]]:
        return (await super().rerank(query, documents, top_n=top_n))[::-1]


class IgnoresTopN(OverlapReranker):
    async def rerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> list[tuple[int, float]]:
        return await super().rerank(query, documents)


class FirstNotBest(OverlapReranker):
    """Honours top_n by cutting the documents before scoring them."""

    async def rerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> list[tuple[int, float]]:
        return await super().rerank(query, documents[:top_n] if top_n else documents, top_n=top_n)


class AcceptsZeroTopN(OverlapReranker):
    async def rerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> list[tuple[int, float]]:
        return [] if top_n is not None and top_n < 1 else await super().rerank(query, documents, top_n=top_n)


class NaNScores(OverlapReranker):
    def _score(self, q: Counter[str], doc: str) -> float:
        return math.nan if "lisbon" in doc.lower() else super()._score(q, doc)


class StringIndexes(OverlapReranker):
    async def rerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> list[tuple[int, float]]:
        return [(str(i), s) for i, s in await super().rerank(query, documents, top_n=top_n)]  # type: ignore[misc]


class DuplicateIndex(OverlapReranker):
    async def rerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> list[tuple[int, float]]:
        out = await super().rerank(query, documents, top_n=top_n)
        return [out[0], *out[:-1]] if len(out) > 1 else out


class FailsOnEmpty(OverlapReranker):
    async def rerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> list[tuple[int, float]]:
        if not documents:
            raise ValueError("no documents")
        return await super().rerank(query, documents, top_n=top_n)


class DependsOnNeighbours(OverlapReranker):
    """Normalises scores by the best of the call (a listwise scorer claiming "pointwise")."""

    async def rerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> list[tuple[int, float]]:
        out = await super().rerank(query, documents, top_n=top_n)
        best = max((s for _, s in out), default=0.0) or 1.0
        return [(i, s / best) for i, s in out]


class Flaky(OverlapReranker):
    """Adds a different offset on every call (a sampling LLM at a high temperature)."""

    async def rerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> list[tuple[int, float]]:
        self.closed += 1  # reuse the counter as a call number
        return [(i, s + 0.01 * self.closed) for i, s in await super().rerank(query, documents, top_n=top_n)]


class NotLexical(OverlapReranker):
    async def rerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> list[tuple[int, float]]:
        self._check(documents, top_n)
        out = [(i, float(-len(d))) for i, d in enumerate(documents)]  # shortest first
        out.sort(key=lambda p: (-p[1], p[0]))
        return out if top_n is None else out[:top_n]


class AcloseTwiceFails(OverlapReranker):
    async def aclose(self) -> None:
        if self.closed:
            raise RuntimeError("already closed")
        self.closed += 1


#: (broken reranker, the check that must catch it, the check's parameters, what the check raises)
BROKEN: list[tuple[type[OverlapReranker], str, dict[str, Any], type[BaseException]]] = [
    (Unsorted, "test_rerank_ranks_every_document_best_first", {}, AssertionError),
    (IgnoresTopN, "test_rerank_top_n_cuts_the_list", {"top_n": 1}, AssertionError),
    (FirstNotBest, "test_rerank_top_n_keeps_the_best", {"top_n": 1}, AssertionError),
    (AcceptsZeroTopN, "test_rerank_rejects_top_n_below_one", {"top_n": 0}, pytest.fail.Exception),
    (NaNScores, "test_rerank_ranks_every_document_best_first", {}, AssertionError),
    (StringIndexes, "test_rerank_ranks_every_document_best_first", {}, AssertionError),
    (DuplicateIndex, "test_rerank_duplicates_are_each_ranked", {}, AssertionError),
    (FailsOnEmpty, "test_rerank_no_documents", {}, ValueError),
    (DependsOnNeighbours, "test_rerank_score_does_not_depend_on_neighbours", {}, AssertionError),
    (Flaky, "test_rerank_is_deterministic", {}, AssertionError),
    (Flaky, "test_rerank_concurrent_calls_match_sequential", {}, AssertionError),
    (NotLexical, "test_rerank_lexical_relevance", {}, AssertionError),
    (AcloseTwiceFails, "test_rerank_aclose_is_idempotent_and_a_new_instance_works", {}, RuntimeError),
]


@pytest.mark.parametrize(
    ("cls", "check", "args", "error"), BROKEN, ids=[f"{c.__name__}-{n.removeprefix('test_rerank_')}" for c, n, *_ in BROKEN]
)
async def test_a_broken_reranker_fails_its_check(
    cls: type[OverlapReranker], check: str, args: dict[str, Any], error: type[BaseException]
) -> None:
    with pytest.raises(error):
        await getattr(TestOverlapReranker(), check)(cls(), **args)


async def test_the_reference_passes_the_checks_the_broken_ones_fail() -> None:
    """The broken variants differ from the reference only in their fault: the reference passes each."""
    for _, check, args, _ in BROKEN:
        await getattr(TestOverlapReranker(), check)(OverlapReranker(), **args)


async def test_aclose_hook_builds_from_config() -> None:
    ref = OverlapReranker(OverlapReranker.Config(max_tokens=7))
    other = await TestOverlapReranker().new_instance(ref)
    assert type(other) is OverlapReranker and other is not ref and other.config.max_tokens == 7


def test_assert_ranking_accepts_lists_and_ints() -> None:
    assert assert_ranking([[1, 2], (0, 1.5)], 2) == {1: 2.0, 0: 1.5}
    with pytest.raises(AssertionError, match="expected 1"):
        assert_ranking([(0, 1.0), (1, 0.5)], 2, top_n=1)
    with pytest.raises(AssertionError, match="bool"):
        assert_ranking([(True, 1.0)], 2, top_n=1)
    with pytest.raises(AssertionError, match="outside"):
        assert_ranking([(2, 1.0)], 2, top_n=1)


def test_reranker_checks_are_marked() -> None:
    assert requirements_of(RerankerConformance.test_rerank_semantic_relevance) == {"semantic"}
    assert requirements_of(RerankerConformance.test_rerank_lexical_relevance) == {"lexical"}
    assert requirements_of(RerankerConformance.test_rerank_score_does_not_depend_on_neighbours) == {"pointwise"}
    assert requirements_of(RerankerConformance.test_rerank_ranks_every_document_best_first) == frozenset()
    assert {"semantic", "lexical", "pointwise"} <= set(CAPABILITIES)
