"""engram.testing: conformance suites every provider of a kind must pass.

The suites are pytest mixins: a provider's test class inherits one and supplies the provider as a
fixture (``store`` for vector stores, ``history_store`` for history stores). Checks that exercise
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

Known capabilities: ``"lexical"``, ``"history"``, ``"persistent"`` (see :data:`CAPABILITIES`).
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
from ._graph import GraphStoreConformance
from ._history import HistoryStoreConformance
from ._requires import CAPABILITIES, FILTER_CAPABILITIES, ProviderSuite, capabilities_of, filter_requirements, requires
from ._vector import VectorStoreConformance, assert_same_event, assert_same_item, newest_first
from .llm_server import Fault, LLMServer, RecordedRequest, Reply

__all__ = [
    "BASE_TIME",
    "CAPABILITIES",
    "FILTER_CAPABILITIES",
    "COMBINATIONS",
    "NASTY_QUERIES",
    "Fault",
    "GraphStoreConformance",
    "HistoryStoreConformance",
    "LLMServer",
    "ProviderSuite",
    "RecordedRequest",
    "Reply",
    "VectorStoreConformance",
    "assert_same_event",
    "assert_same_item",
    "capabilities_of",
    "filter_requirements",
    "filter_dataset",
    "filter_probes",
    "make_item",
    "mid",
    "newest_first",
    "query_scopes",
    "random_unit",
    "requires",
    "scope_dataset",
    "strategies",
]
