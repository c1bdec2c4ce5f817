"""The reranker conformance suite: a pytest mixin every reranker's tests inherit."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import anyio
import pytest
from engram.core.errors import InvalidInputError

from ._embedder import InstanceHook
from ._requires import ProviderSuite, requires, skip_unless_capable

__all__ = ["RerankerConformance", "assert_ranking"]

SCORE_TOLERANCE = 1e-4
"""Largest difference allowed between two scores of the same (query, document) pair, relative to
``max(1, |score|)``: the same pair scored twice, in another call, beside other documents, or
concurrently."""

QUERY = "Which drink does the user like in the morning?"

DOCS = [
    "The user drinks green tea every morning.",
    "The user lives in Lisbon and works night shifts.",
    "The user's sister plays the piano.",
    "In the morning the user walks the dog before work.",
    "The user dislikes coffee.",
]

#: ``(query, documents, index of the relevant one)``: the relevant document shares the meaning and
#: none of the query's words, and is never first, so a word-overlap scorer (all zero, ties kept in
#: order) does not pass by chance.
SEMANTIC_CASES = (
    ("How do I fix a flat bicycle tire?",
     ["Quarterly earnings beat analyst expectations.", "The train to Lisbon leaves at noon.",
      "Patching punctured bike tyres takes glue and rubber patches."], 2),
    ("My cat keeps scratching the sofa.",
     ["Museums open on Tuesdays.", "Kittens claw at couches every evening.",
      "Interest rates rose by a quarter point."], 1),
)

#: ``(query, documents, index of the one sharing the query's words)``.
LEXICAL_CASES = (
    ("red apple pie recipe",
     ["How to change the engine oil of a car", "Grandma's red apple pie recipe with cinnamon",
      "Lecture notes on quantum physics"], 1),
    ("Lisbon tram 28 timetable",
     ["Tram 28 in Lisbon runs every ten minutes; see the timetable.", "Berlin has many bicycle lanes.",
      "A recipe for lemon cake."], 0),
)


def _relative(a: float, b: float) -> float:
    return abs(a - b) / max(1.0, abs(a), abs(b))


def assert_ranking(out: Any, n: int, top_n: int | None = None) -> dict[int, float]:
    """Check one ``rerank`` result over ``n`` documents and return it as ``{index: score}``.

    The result must be a ``list`` of ``(index, score)`` pairs (tuples or lists of two): ``index``
    an ``int`` in ``range(n)``, each index at most once, ``score`` a finite ``float`` (an ``int``
    is accepted), scores non-increasing; ``min(top_n, n)`` pairs, or ``n`` when ``top_n`` is ``None``.

    Raises:
        AssertionError: naming the first rule broken.
    """
    assert isinstance(out, list), f"rerank returned a {type(out).__name__}, expected a list"
    want = n if top_n is None else min(top_n, n)
    assert len(out) == want, f"rerank returned {len(out)} results for {n} documents and top_n={top_n}, expected {want}"
    scores: dict[int, float] = {}
    previous = math.inf
    for pos, pair in enumerate(out):
        assert isinstance(pair, tuple | list) and len(pair) == 2, f"result {pos} is {pair!r}, expected (index, score)"
        index, score = pair
        assert isinstance(index, int) and not isinstance(index, bool), f"index {index!r} is a {type(index).__name__}"
        assert 0 <= index < n, f"index {index} is outside the {n} documents"
        assert index not in scores, f"index {index} appears twice"
        assert isinstance(score, float | int) and not isinstance(score, bool), (
            f"score {score!r} is a {type(score).__name__}, expected a float"
        )
        assert math.isfinite(score), f"score {score!r} of document {index} is not finite"
        assert score <= previous, f"result {pos} (score {score}) ranks below a lower score {previous}: not best first"
        previous = score
        scores[index] = float(score)
    return scores


def _same_scores(got: dict[int, float], want: dict[int, float], what: str) -> None:
    assert got.keys() == want.keys(), f"{what}: indexes {sorted(got)} != {sorted(want)}"
    worst = max((_relative(got[i], want[i]) for i in got), default=0.0)
    assert worst <= SCORE_TOLERANCE, f"{what}: scores differ by up to {worst:.3g} (tolerance {SCORE_TOLERANCE:g})"


class RerankerConformance(InstanceHook, ProviderSuite):
    """Checks every :class:`~engram.core.Reranker` must pass. Inherit it in a pytest class::

        class TestMyReranker(RerankerConformance):
            @pytest.fixture
            async def reranker(self):
                r = MyReranker(MyReranker.Config(model="small"))
                yield r
                await r.aclose()

    The suite never closes the ``reranker`` fixture's instance, so an expensive model may be loaded
    once and shared (a session-scoped fixture); the lifecycle checks build their own instances with
    :meth:`new_instance` (default ``type(reranker)(reranker.config)``) and close them.

    The rules checked (the :class:`~engram.core.Reranker` protocol says only "``(index into
    documents, relevance)`` pairs, most relevant first"; these make it precise):

    - ``rerank(query, documents, top_n=None)`` returns a ``list`` of ``(index, score)``: ``index``
      an ``int`` into ``documents``, each at most once; ``score`` a finite ``float``, higher is more
      relevant, the list sorted best first. The scale of the scores is the provider's own.
    - ``top_n=None`` returns every document; ``top_n >= 1`` returns ``min(top_n, len(documents))``.
    - ``top_n`` of ``0`` or below raises :class:`~engram.core.errors.InvalidInputError` (for any
      ``documents``, empty included).
    - No documents returns ``[]``.
    - A bare ``str`` instead of a sequence of documents, or a document that is not a ``str``,
      raises :class:`~engram.core.errors.InvalidInputError`.
    - Duplicate documents are allowed, and each is ranked.
    - The same call gives the same scores (within :data:`SCORE_TOLERANCE`), whether made again,
      concurrently with others, or by a new instance.
    - Unicode, emoji and control characters are accepted, and so are documents longer than the model
      takes (truncated, not refused). (Empty queries and documents are not checked.)
    - ``aclose()`` may be called twice, and before any use; a new instance works after another was
      closed.
    - With ``"pointwise"``: a document's score depends only on the query and that document, so it
      is the same alone, beside other documents, at another position, for each copy of a duplicate,
      and with ``top_n`` (which then keeps exactly the best of the full ranking).
    - With ``"semantic"``: a document that means what the query asks ranks first among unrelated
      ones while sharing few of its words (:data:`SEMANTIC_CASES`).
    - With ``"lexical"``: the document that shares the query's words ranks first
      (:data:`LEXICAL_CASES`).
    """

    @pytest.fixture(autouse=True)
    def _engram_reranker_requirements(self, request: pytest.FixtureRequest, reranker: Any) -> None:
        skip_unless_capable(request, reranker)

    async def test_rerank_ranks_every_document_best_first(self, reranker: Any) -> None:
        assert_ranking(await reranker.rerank(QUERY, DOCS), len(DOCS))
        assert_ranking(await reranker.rerank(QUERY, DOCS, top_n=None), len(DOCS))

    @pytest.mark.parametrize("top_n", [1, 3, 5, 50])
    async def test_rerank_top_n_cuts_the_list(self, reranker: Any, top_n: int) -> None:
        assert_ranking(await reranker.rerank(QUERY, DOCS, top_n=top_n), len(DOCS), top_n)

    @requires("pointwise")
    @pytest.mark.parametrize("top_n", [1, 3])
    async def test_rerank_top_n_keeps_the_best(self, reranker: Any, top_n: int) -> None:
        full = assert_ranking(await reranker.rerank(QUERY, DOCS), len(DOCS))
        part = assert_ranking(await reranker.rerank(QUERY, DOCS, top_n=top_n), len(DOCS), top_n)
        _same_scores(part, {i: full[i] for i in part}, f"top_n={top_n} vs a full ranking")
        best = sorted(full.values(), reverse=True)[:top_n]
        got = sorted(part.values(), reverse=True)
        assert all(_relative(a, b) <= SCORE_TOLERANCE for a, b in zip(got, best, strict=True)), (
            f"top_n={top_n} kept scores {got}, the best are {best}"
        )

    @pytest.mark.parametrize("top_n", [0, -1])
    async def test_rerank_rejects_top_n_below_one(self, reranker: Any, top_n: int) -> None:
        for documents in (DOCS, []):
            with pytest.raises(InvalidInputError):
                await reranker.rerank(QUERY, documents, top_n=top_n)

    async def test_rerank_no_documents(self, reranker: Any) -> None:
        assert await reranker.rerank(QUERY, []) == []
        assert await reranker.rerank(QUERY, [], top_n=3) == []

    async def test_rerank_rejects_a_bare_string_and_non_strings(self, reranker: Any) -> None:
        with pytest.raises(InvalidInputError):
            await reranker.rerank(QUERY, "one document as a bare string")
        for bad in (["fine", 3], [None], [b"bytes"]):
            with pytest.raises(InvalidInputError):
                await reranker.rerank(QUERY, bad)

    async def test_rerank_duplicates_are_each_ranked(self, reranker: Any) -> None:
        docs = [DOCS[0], DOCS[1], DOCS[0], DOCS[1], DOCS[0]]
        assert_ranking(await reranker.rerank(QUERY, docs), len(docs))

    async def test_rerank_is_deterministic(self, reranker: Any) -> None:
        full = assert_ranking(await reranker.rerank(QUERY, DOCS), len(DOCS))
        _same_scores(assert_ranking(await reranker.rerank(QUERY, DOCS), len(DOCS)), full, "the same call twice")

    @requires("pointwise")
    async def test_rerank_duplicates_score_the_same(self, reranker: Any) -> None:
        docs = [DOCS[0], DOCS[1], DOCS[0], DOCS[1], DOCS[0]]
        scores = assert_ranking(await reranker.rerank(QUERY, docs), len(docs))
        for group in ((0, 2, 4), (1, 3)):
            values = [scores[i] for i in group]
            assert max(_relative(values[0], v) for v in values) <= SCORE_TOLERANCE, (
                f"the same document scored {values} at positions {group}"
            )

    @requires("pointwise")
    async def test_rerank_score_does_not_depend_on_neighbours(self, reranker: Any) -> None:
        full = assert_ranking(await reranker.rerank(QUERY, DOCS), len(DOCS))
        reversed_ = assert_ranking(await reranker.rerank(QUERY, DOCS[::-1]), len(DOCS))
        _same_scores({len(DOCS) - 1 - i: s for i, s in reversed_.items()}, full, "the documents reversed")
        alone = {i: assert_ranking(await reranker.rerank(QUERY, [d]), 1)[0] for i, d in enumerate(DOCS)}
        _same_scores(alone, full, "each document alone")

    async def test_rerank_accepts_awkward_text(self, reranker: Any) -> None:
        sentence = "The user keeps a diary about tea, trains and the piano. "
        docs = ["naïve café 🍵 crème brûlée", "日本語のテキスト", "مرحبا بالعالم", sentence * 1000, "emoji 🎉🚀",
                "tab\tand\nnew line"]
        assert_ranking(await reranker.rerank("tea ☕ ünïcode 日本", docs), len(docs))

    async def test_rerank_many_documents(self, reranker: Any) -> None:
        docs = [f"Note {i}: the user mentioned {('tea', 'Lisbon', 'the piano', 'chess')[i % 4]} on day {i}."
                for i in range(100)]
        assert_ranking(await reranker.rerank(QUERY, docs), 100)
        assert_ranking(await reranker.rerank(QUERY, docs, top_n=10), 100, 10)

    @requires("semantic")
    async def test_rerank_semantic_relevance(self, reranker: Any) -> None:
        await _check_cases(reranker, SEMANTIC_CASES)

    @requires("lexical")
    async def test_rerank_lexical_relevance(self, reranker: Any) -> None:
        await _check_cases(reranker, LEXICAL_CASES)

    async def test_rerank_concurrent_calls_match_sequential(self, reranker: Any) -> None:
        queries = [QUERY, "Where does the user live?", "Who plays the piano?", "What does the user dislike?"] * 2
        sequential = [assert_ranking(await reranker.rerank(q, DOCS), len(DOCS)) for q in queries]
        concurrent: list[dict[int, float]] = [{} for _ in queries]

        async def run(i: int) -> None:
            concurrent[i] = assert_ranking(await reranker.rerank(queries[i], DOCS), len(DOCS))

        async with anyio.create_task_group() as tg:
            for i in range(len(queries)):
                tg.start_soon(run, i)
        for i, (got, want) in enumerate(zip(concurrent, sequential, strict=True)):
            _same_scores(got, want, f"query {i} concurrently vs sequentially")

    async def test_rerank_aclose_is_idempotent_and_a_new_instance_works(self, reranker: Any) -> None:
        want = assert_ranking(await reranker.rerank(QUERY, DOCS), len(DOCS))
        for _ in range(2):
            other = await self.new_instance(reranker)
            try:
                _same_scores(assert_ranking(await other.rerank(QUERY, DOCS), len(DOCS)), want, "a new instance")
            finally:
                await other.aclose()
                await other.aclose()

    async def test_rerank_aclose_before_use_is_harmless(self, reranker: Any) -> None:
        unused = await self.new_instance(reranker)
        await unused.aclose()
        await unused.aclose()


async def _check_cases(reranker: Any, cases: Sequence[tuple[str, list[str], int]]) -> None:
    for query, docs, relevant in cases:
        out = await reranker.rerank(query, docs)
        assert_ranking(out, len(docs))
        assert out[0][0] == relevant, f"{query!r}: {docs[out[0][0]]!r} ranked first, expected {docs[relevant]!r}"
