"""The embedder and reranker conformance suites against the fastembed providers, on the models the
tests build (see conftest.py).

- Embedder: fastembed's own handling of ``sentence-transformers/all-MiniLM-L6-v2`` on a folder laid
  out as its hub repository, and a model of the user's own (the local embedder's pooled build).
- Reranker: the bag-of-word-pieces cross-encoder graph. It is not a trained model, so the class
  declares ``lexical`` (shared words rank first, which that graph does) instead of the provider's
  ``semantic``: the relevance of a real cross-encoder is not tested offline.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import anyio
import pytest
from engram.embedding.fastembed import FastEmbedEmbedder, FastEmbedReranker
from engram.testing import EmbedderConformance, RerankerConformance

P = TypeVar("P", FastEmbedEmbedder, FastEmbedReranker)


def opened(provider: P) -> Iterator[P]:
    """The provider loaded once, for a whole class (the suites never close the shared instance)."""
    anyio.run(provider.load)
    yield provider
    anyio.run(provider.aclose)


@pytest.fixture(scope="class")
def hub_layout_embedder(hub_dir: Path) -> Iterator[FastEmbedEmbedder]:
    yield from opened(FastEmbedEmbedder(model_path=hub_dir, batch_size=16))


@pytest.fixture(scope="class")
def own_model_embedder(pooled_dir: Path) -> Iterator[FastEmbedEmbedder]:
    yield from opened(FastEmbedEmbedder(model_path=pooled_dir, pooling="none", batch_size=16))


@pytest.fixture(scope="class")
def shared_reranker(reranker_dir: Path) -> Iterator[FastEmbedReranker]:
    yield from opened(FastEmbedReranker(model_path=reranker_dir, batch_size=16))


class TestFastEmbedEmbedderHubLayout(EmbedderConformance):
    @pytest.fixture
    def embedder(self, hub_layout_embedder: FastEmbedEmbedder) -> FastEmbedEmbedder:
        return hub_layout_embedder


class TestFastEmbedEmbedderOwnModel(EmbedderConformance):
    @pytest.fixture
    def embedder(self, own_model_embedder: FastEmbedEmbedder) -> FastEmbedEmbedder:
        return own_model_embedder


class TestFastEmbedReranker(RerankerConformance):
    capabilities = frozenset({"pointwise", "lexical"})  # the test graph: word overlap, not a trained model

    @pytest.fixture
    def reranker(self, shared_reranker: FastEmbedReranker) -> FastEmbedReranker:
        return shared_reranker
