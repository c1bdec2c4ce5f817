"""The embedder conformance suite: a pytest mixin every embedder's tests inherit."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import anyio
import numpy as np
import pytest
from engram.core.errors import InvalidInputError

from ._requires import ProviderSuite, requires, skip_unless_capable

__all__ = ["EMBED_TOLERANCE", "NORM_TOLERANCE", "EmbedderConformance", "InstanceHook", "assert_embeddings"]

EMBED_TOLERANCE = 1e-4
"""Largest difference allowed between two embeddings of the same text (per component, unit vectors):
the same text embedded twice, in another batch, at another position, or concurrently."""

NORM_TOLERANCE = 1e-3
"""Largest difference allowed between a row's L2 norm and 1 (float32 rounding)."""

_WORD = re.compile(r"\w", re.UNICODE)

#: Texts an embedder must accept: scripts, emoji, control characters, no words at all.
AWKWARD_TEXTS = (
    "naïve café, crème brûlée",
    "日本語のテキストと中文",
    "Ελληνικά και русский текст",
    "مرحبا بالعالم",
    "emoji only 🎉🚀🍵 and a flag 🇵🇹",
    "tab\tseparated\nand two\nlines",
    "zero\u200bwidth space",
    "",
    " ",
    "   \t\n  ",
    "!!! ??? ...",
)

#: ``(query, related, unrelated)``: the related text shares the meaning, not the words.
SEMANTIC_TRIPLES = (
    ("How do I fix a flat bicycle tire?", "Patching a punctured bike tyre takes glue and a rubber patch.",
     "Quarterly earnings beat analyst expectations."),
    ("My cat keeps scratching the sofa.", "The kitten claws at the couch every evening.",
     "The train to Lisbon leaves at noon."),
    ("I am allergic to peanuts.", "Nuts give me a severe allergic reaction.", "The museum opens on Tuesdays."),
)

LONG_TEXT_CHARS = 50_000


def _batch(n: int, salt: str = "") -> list[str]:
    topics = ("tea", "hiking", "Lisbon", "the piano", "her sister", "pasta", "chess", "the night shift")
    return [f"Memory {i}{salt}: the user talked about {topics[i % len(topics)]} on day {i * 7 % 31}." for i in range(n)]


def assert_embeddings(out: Any, texts: Sequence[str], dims: int) -> None:
    """Check one ``embed`` result: an ``np.ndarray`` of shape ``(len(texts), dims)``, float32,
    finite, every row of unit L2 norm (within :data:`NORM_TOLERANCE`), except that a text without
    any word character (``""``, whitespace, punctuation) may embed to the zero vector.

    Raises:
        AssertionError: naming the first rule broken.
    """
    assert isinstance(out, np.ndarray), f"embed returned a {type(out).__name__}, expected an np.ndarray"
    assert out.shape == (len(texts), dims), f"embed returned shape {out.shape}, expected {(len(texts), dims)}"
    assert out.dtype == np.float32, f"embed returned dtype {out.dtype}, expected float32"
    assert np.isfinite(out).all(), "embed returned non-finite values"
    norms = np.linalg.norm(out.astype(np.float64), axis=1)
    for i, (t, norm) in enumerate(zip(texts, norms, strict=True)):
        if abs(norm - 1.0) <= NORM_TOLERANCE:
            continue
        if norm <= NORM_TOLERANCE and not _WORD.search(t):
            continue  # nothing to embed: the zero vector is allowed
        raise AssertionError(f"row {i} ({t[:40]!r}) has L2 norm {norm:.6f}, expected 1")


def _close(got: np.ndarray, want: np.ndarray, what: str) -> None:
    diff = float(np.max(np.abs(got.astype(np.float64) - want))) if got.size else 0.0
    assert got.shape == want.shape and diff <= EMBED_TOLERANCE, (
        f"{what}: vectors differ by up to {diff:.3g} (tolerance {EMBED_TOLERANCE:g})"
    )


class InstanceHook:
    """The ``new_instance`` hook the embedder and reranker suites share."""

    async def new_instance(self, provider: Any) -> Any:
        """A second, independent instance configured like ``provider``; the suite closes it.

        The default builds ``type(provider)(provider.config)``, the way the registry builds a
        provider from its ``Config``. Override it when the provider is built differently.
        """
        config = getattr(provider, "config", None)
        if config is None:
            pytest.fail(
                f"{type(provider).__name__} has no `config`; define `async def new_instance(self, provider)` "
                f"in {type(self).__name__} to build a second instance like it"
            )
        return type(provider)(config)


class EmbedderConformance(InstanceHook, ProviderSuite):
    """Checks every :class:`~engram.core.Embedder` must pass. Inherit it in a pytest class::

        class TestMyEmbedder(EmbedderConformance):
            @pytest.fixture
            async def embedder(self):
                e = MyEmbedder(MyEmbedder.Config(model="small"))
                yield e
                await e.aclose()

    The suite never closes the ``embedder`` fixture's instance, so an expensive model may be
    loaded once and shared (a session-scoped fixture). The lifecycle checks build their own
    instances with :meth:`new_instance` (default ``type(embedder)(embedder.config)``) and close
    them.

    The rules checked, beyond the :class:`~engram.core.Embedder` protocol's docstring:

    - ``dims`` is an ``int``; before the first call it may be ``0`` ("not known yet", for a remote
      model whose width the config does not give); once anything is embedded it is positive, equals
      the width of every result, and never changes.
    - ``embed(texts)`` returns an ``np.ndarray``, shape ``(len(texts), dims)``, dtype float32,
      finite, each row of unit L2 norm (within :data:`NORM_TOLERANCE`). A text with no word
      character at all (``""``, whitespace, punctuation) may give the zero vector instead.
    - ``embed([])`` returns shape ``(0, dims)``.
    - A text's vector depends only on the text and ``kind``: not on the call, the batch, its
      position, its neighbours or concurrent calls (within :data:`EMBED_TOLERANCE`).
    - ``kind="query"`` and ``kind="document"`` both work (they may give different vectors).
    - Any string is accepted: unicode, emoji, control characters, ``""``, whitespace only, and text
      longer than the model takes (truncated, not refused).
    - A bare ``str`` instead of a sequence of strings, or an item that is not a ``str``, raises
      :class:`~engram.core.errors.InvalidInputError`.
    - ``aclose()`` may be called twice, and before any use; a new instance works after another
      instance was closed.
    - With capability ``"semantic"``: a paraphrase scores a higher cosine with a query than an
      unrelated text does (:data:`SEMANTIC_TRIPLES`).
    """

    @pytest.fixture(autouse=True)
    def _engram_embedder_requirements(self, request: pytest.FixtureRequest, embedder: Any) -> None:
        skip_unless_capable(request, embedder)

    async def test_embed_dims_is_a_stable_int(self, embedder: Any) -> None:
        before = embedder.dims
        assert isinstance(before, int) and not isinstance(before, bool), f"dims is a {type(before).__name__}"
        assert before >= 0, f"dims is {before}"
        out = await embedder.embed(["The user likes green tea."])
        dims = embedder.dims
        assert isinstance(dims, int) and dims > 0, f"dims is {dims!r} after an embed call"
        assert out.shape[1] == dims, f"vectors have {out.shape[1]} components, dims says {dims}"
        assert before in (0, dims), f"dims changed from {before} to {dims}"
        await embedder.embed(["Another text, another call."])
        assert embedder.dims == dims, f"dims changed from {dims} to {embedder.dims}"

    @pytest.mark.parametrize("n", [1, 3, 100])
    async def test_embed_returns_unit_float32_rows(self, embedder: Any, n: int) -> None:
        texts = _batch(n)
        out = await embedder.embed(texts)
        assert_embeddings(out, texts, embedder.dims)
        assert len({row.tobytes() for row in out}) == n, "different texts gave identical vectors"

    async def test_embed_empty_batch(self, embedder: Any) -> None:
        for _ in range(2):  # before anything else was embedded, and after
            out = await embedder.embed([])
            assert isinstance(out, np.ndarray), f"embed([]) returned a {type(out).__name__}"
            assert out.shape == (0, embedder.dims), f"embed([]) has shape {out.shape}, expected (0, {embedder.dims})"
            assert out.dtype == np.float32, f"embed([]) has dtype {out.dtype}"
            await embedder.embed(["something"])

    async def test_embed_is_deterministic(self, embedder: Any) -> None:
        texts = _batch(5)
        first = await embedder.embed(texts)
        _close(await embedder.embed(texts), first, "the same batch embedded twice")

    async def test_embed_row_does_not_depend_on_its_batch(self, embedder: Any) -> None:
        texts = _batch(6)
        together = await embedder.embed(texts)
        alone = np.concatenate([await embedder.embed([t]) for t in texts])
        _close(alone, together, "each text alone vs in one batch")
        reversed_ = await embedder.embed(texts[::-1])
        _close(reversed_[::-1], together, "the batch reversed")
        long_neighbour = "A much longer neighbour that pads the batch: " + "words and more words " * 40
        mixed = await embedder.embed([long_neighbour, texts[0], "x", texts[1]])
        _close(mixed[[1, 3]], together[:2], "beside a long and a short neighbour")

    @pytest.mark.parametrize("kind", ["query", "document"])
    async def test_embed_query_and_document_kinds(self, embedder: Any, kind: str) -> None:
        texts = ["Where does the user live?", "The user moved to Lisbon in 2021."]
        out = await embedder.embed(texts, kind=kind)
        assert_embeddings(out, texts, embedder.dims)
        _close(await embedder.embed(texts[:1], kind=kind), out[:1], f"kind={kind!r} alone vs in a batch")

    async def test_embed_accepts_awkward_texts(self, embedder: Any) -> None:
        texts = list(AWKWARD_TEXTS)
        out = await embedder.embed(texts)
        assert_embeddings(out, texts, embedder.dims)
        _close(await embedder.embed(texts[:3]), out[:3], "unicode texts embedded again")

    async def test_embed_truncates_very_long_text(self, embedder: Any) -> None:
        sentence = "The user keeps a diary about tea, trains and the piano. "
        long_text = (sentence * (LONG_TEXT_CHARS // len(sentence) + 1))[:LONG_TEXT_CHARS]
        texts = [long_text, "short text"]
        out = await embedder.embed(texts)
        assert_embeddings(out, texts, embedder.dims)

    @requires("semantic")
    async def test_embed_related_texts_are_closer(self, embedder: Any) -> None:
        for query, related, unrelated in SEMANTIC_TRIPLES:
            q = (await embedder.embed([query], kind="query"))[0]
            docs = await embedder.embed([related, unrelated], kind="document")
            near, far = float(docs[0] @ q), float(docs[1] @ q)
            assert near > far, f"{query!r}: cosine {near:.3f} to {related!r} is not above {far:.3f} to {unrelated!r}"

    async def test_embed_concurrent_calls_match_sequential(self, embedder: Any) -> None:
        batches = [_batch(3 + i, salt=f"/{i}") for i in range(8)]
        sequential = [await embedder.embed(b) for b in batches]
        concurrent: list[np.ndarray | None] = [None] * len(batches)

        async def run(i: int) -> None:
            concurrent[i] = await embedder.embed(batches[i])

        async with anyio.create_task_group() as tg:
            for i in range(len(batches)):
                tg.start_soon(run, i)
        for i, (got, want) in enumerate(zip(concurrent, sequential, strict=True)):
            assert got is not None
            _close(got, want, f"batch {i} embedded concurrently vs sequentially")

    async def test_embed_rejects_a_bare_string_and_non_strings(self, embedder: Any) -> None:
        with pytest.raises(InvalidInputError):
            await embedder.embed("a single string, not a list")
        for bad in ([b"bytes"], ["fine", 3], [None]):
            with pytest.raises(InvalidInputError):
                await embedder.embed(bad)

    async def test_embed_aclose_is_idempotent_and_a_new_instance_works(self, embedder: Any) -> None:
        texts = ["The user likes green tea.", "Where does the user live?"]
        want = await embedder.embed(texts)
        first = await self.new_instance(embedder)
        try:
            _close(await first.embed(texts), want, "a new instance")
        finally:
            await first.aclose()
            await first.aclose()
        second = await self.new_instance(embedder)
        try:
            _close(await second.embed(texts), want, "an instance made after another was closed")
        finally:
            await second.aclose()

    async def test_embed_aclose_before_use_is_harmless(self, embedder: Any) -> None:
        unused = await self.new_instance(embedder)
        await unused.aclose()
        await unused.aclose()
