"""Every embedder in engram-embedding against :class:`engram.testing.EmbedderConformance`.

``local`` is the real all-MiniLM-L6-v2, loaded once for this module from the normal per-user cache
(the ``slow`` tests in ``test_local.py`` build it there on a machine's first run); ``openai`` talks to
:class:`engram.testing.llm_server.LLMServer`'s embeddings endpoint on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest
from engram.embedding.hash import HashEmbedder
from engram.embedding.local import LocalEmbedder
from engram.embedding.openai import OpenAIEmbedder
from engram.testing import EmbedderConformance
from engram.testing.llm_server import LLMServer, llm_server  # noqa: F401  (registers the fixture)


class TestHashEmbedder(EmbedderConformance):
    @pytest.fixture
    async def embedder(self):
        e = HashEmbedder(dims=64)
        yield e
        await e.aclose()



@pytest.fixture(scope="module")
def minilm() -> Iterator[LocalEmbedder]:
    """The real model, loaded once for the module (the suite never closes the shared instance)."""
    e = LocalEmbedder()
    anyio.run(e.load)
    yield e
    anyio.run(e.aclose)


@pytest.mark.slow
class TestLocalEmbedder(EmbedderConformance):

    @pytest.fixture
    def embedder(self, minilm: LocalEmbedder) -> LocalEmbedder:
        return minilm

    async def new_instance(self, provider: LocalEmbedder) -> LocalEmbedder:
        """Open the files the shared instance uses (no model search or build again)."""
        assert provider.model_files is not None
        return LocalEmbedder(provider.config.model_copy(update={"model_dir": provider.model_files.model.parent}))


class TestOpenAIEmbedder(EmbedderConformance):
    """No ``dims`` in the config: the width (16, the server's default) is learnt from the first answer."""

    @pytest.fixture
    async def embedder(self, llm_server: LLMServer):  # noqa: F811  (the imported fixture)
        e = OpenAIEmbedder(base_url=llm_server.openai_url, model="test-embed", timeout=5.0, max_retries=0)
        yield e
        await e.aclose()
