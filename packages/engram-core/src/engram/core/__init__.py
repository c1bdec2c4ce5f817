"""engram.core: types, provider protocols, the registry, configuration, errors and the engine."""

from . import errors
from ._config import ENV_PREFIX, FusionConfig, InferConfig, MemoryConfig, SearchConfig
from ._filters import And, Cmp, Filter, Not, Or, matches, parse_filters
from ._fusion import fuse, normalize_dbsf, normalize_minmax
from ._http import error_text, parse_retry_after, server_message, url_fields
from ._memory import AsyncMemory, fuse_hits, index_text
from ._protocols import LLM, Embedder, GraphStore, HistoryStore, Reranker, VectorStore
from ._registry import FIRST_PARTY_EXTRAS, KINDS, Registry
from ._sync import Memory
from ._types import (
    Event,
    HistoryEvent,
    LLMResponse,
    MemoryItem,
    Message,
    Relation,
    Scope,
    ScoredMemory,
    SearchMode,
    VectorQuery,
    WriteBatch,
    content_hash,
    normalize_messages,
    parse_time,
    utcnow,
)

__all__ = [
    "ENV_PREFIX",
    "FIRST_PARTY_EXTRAS",
    "KINDS",
    "LLM",
    "And",
    "AsyncMemory",
    "Cmp",
    "Embedder",
    "Event",
    "Filter",
    "FusionConfig",
    "GraphStore",
    "HistoryEvent",
    "HistoryStore",
    "InferConfig",
    "LLMResponse",
    "Memory",
    "MemoryConfig",
    "MemoryItem",
    "Message",
    "Not",
    "Or",
    "Registry",
    "Relation",
    "Reranker",
    "Scope",
    "ScoredMemory",
    "SearchConfig",
    "SearchMode",
    "VectorQuery",
    "VectorStore",
    "WriteBatch",
    "content_hash",
    "error_text",
    "errors",
    "fuse",
    "fuse_hits",
    "index_text",
    "matches",
    "normalize_dbsf",
    "normalize_messages",
    "normalize_minmax",
    "parse_filters",
    "parse_retry_after",
    "parse_time",
    "server_message",
    "url_fields",
    "utcnow",
]
