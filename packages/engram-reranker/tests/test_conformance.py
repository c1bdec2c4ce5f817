"""The reranker conformance suite against LLMReranker, its LLM being ``openai`` on the local
OpenAI-compatible server (see conftest.py), once with every document shown to the model and once
with ``max_documents=3`` (the rest follow the ranked ones in input order)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, ClassVar

import pytest
from engram.reranker.llm import LLMReranker
from engram.testing import RerankerConformance
from engram.testing.llm_server import LLMServer


class TestLLMReranker(RerankerConformance):
    # The reranker declares "listwise"; the local server's model ranks by shared words, so the
    # lexical check holds here too ("semantic" needs a real model; "pointwise" is not true of it).
    capabilities: ClassVar[frozenset[str] | None] = frozenset({"listwise", "lexical"})
    options: ClassVar[dict[str, Any]] = {}

    @pytest.fixture
    async def reranker(self, shared_ranking_server: LLMServer, helpers: Any) -> AsyncIterator[LLMReranker]:
        r = LLMReranker(llm=helpers.llm_spec(shared_ranking_server), **self.options)
        yield r
        await r.aclose()


class TestLLMRerankerCapped(TestLLMReranker):
    options: ClassVar[dict[str, Any]] = {"max_documents": 3}
