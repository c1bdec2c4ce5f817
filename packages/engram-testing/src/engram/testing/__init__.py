"""engram.testing: conformance suites every provider of a kind must pass.

The suites are pytest mixins: a provider's test class inherits one and supplies the provider as a
fixture (``store`` for vector stores, ``history_store`` for history stores, ``graph_store`` for
graph stores, ``embedder`` for :class:`EmbedderConformance`, ``llm`` for :class:`LLMConformance`,
``reranker`` for :class:`RerankerConformance`). Checks that exercise
an optional feature are marked with :func:`requires` and skipped, naming the missing capability,
when the provider's ``capabilities`` frozenset lacks it::

    import pytest
    from engram.testing import HistoryStoreConformance, VectorStoreConformance

    class TestSQLiteVectorStore(VectorStoreConformance, HistoryStoreConformance):
        @pytest.fixture
        async def store(self, tmp_path):
            s = SQLiteVectorStore(SQLiteVectorStore.Config(path=str(tmp_path / "engram.db")))
            yield s
            await s.aclose()

        @pytest.fixture
        def history_store(self, store):
            return store

        async def reopen(self, provider):
            await provider.aclose()
            return SQLiteVectorStore(SQLiteVectorStore.Config(path=provider.config.path))

An LLM's test class also implements ``async def script(self, llm, replies)``, which makes the next
calls get these :class:`ScriptedReply` objects (text, a JSON object, tool calls, a server error or a
timeout) from its test double; :func:`script_llm_server` does it for the local LLM server (see
:class:`LLMConformance` for an example).

Capabilities the suites know, each explained in :data:`CAPABILITIES`: vector stores ``"lexical"``,
``"history"``, ``"persistent"``, ``"archive"``, ``"substring_filters"``, ``"string_range_filters"``;
embedders ``"semantic"``; rerankers ``"semantic"``, ``"lexical"``, ``"pointwise"``; LLMs ``"json"``,
``"tools"``, ``"remote"``.

A real local HTTP server standing in for remote LLM APIs (OpenAI chat completions and embeddings,
Anthropic Messages; scripted replies and injected faults) is in :mod:`engram.testing.llm_server`
(:class:`LLMServer`, :class:`Reply`, :class:`Fault`, and the ``llm_server`` pytest fixture).
:mod:`engram.testing.strategies` holds hypothesis strategies (filters, query strings, scopes, metadata)
for property tests; the fixed datasets and nasty query strings are exported here too.
"""

from . import strategies
from ._data import (
    BASE_TIME,
    COMBINATIONS,
    NASTY_QUERIES,
    filter_dataset,
    filter_probes,
    make_item,
    mid,
    query_scopes,
    random_unit,
    scope_dataset,
)
from ._embedder import EmbedderConformance, assert_embeddings
from ._graph import GraphStoreConformance
from ._history import HistoryStoreConformance
from ._llm import LLMConformance, ScriptedReply, script_llm_server
from ._requires import (
    CAPABILITIES,
    FILTER_CAPABILITIES,
    ProviderSuite,
    capabilities_of,
    filter_requirements,
    requirements_of,
    requires,
)
from ._reranker import RerankerConformance, assert_ranking
from ._vector import VectorStoreConformance, assert_same_event, assert_same_item, newest_first
from .llm_server import Fault, LLMServer, RecordedRequest, Reply

__all__ = [
    "BASE_TIME",
    "CAPABILITIES",
    "COMBINATIONS",
    "FILTER_CAPABILITIES",
    "NASTY_QUERIES",
    "EmbedderConformance",
    "Fault",
    "GraphStoreConformance",
    "HistoryStoreConformance",
    "LLMConformance",
    "LLMServer",
    "ProviderSuite",
    "RecordedRequest",
    "Reply",
    "RerankerConformance",
    "ScriptedReply",
    "VectorStoreConformance",
    "assert_embeddings",
    "assert_ranking",
    "assert_same_event",
    "assert_same_item",
    "capabilities_of",
    "filter_dataset",
    "filter_probes",
    "filter_requirements",
    "make_item",
    "mid",
    "newest_first",
    "query_scopes",
    "random_unit",
    "requirements_of",
    "requires",
    "scope_dataset",
    "script_llm_server",
    "strategies",
]
