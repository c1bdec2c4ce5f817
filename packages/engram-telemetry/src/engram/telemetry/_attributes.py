"""Span and metric names and attribute keys engram uses (docs/telemetry.md has the reference table).

The ``gen_ai.*``, ``db.*`` and ``error.type`` keys are the OpenTelemetry semantic conventions'
(GenAI and database client conventions); the ``engram.*`` keys are engram's own.
"""

from __future__ import annotations

# -- instrumentation scope ---------------------------------------------------------------------
SCOPE_NAME = "engram"

# -- engram operation spans --------------------------------------------------------------------
OPERATIONS = (
    "add", "search", "get", "get_all", "get_graph", "count", "update", "delete", "delete_all", "history",
    "reset", "import", "export",
)
ENGRAM_OPERATION = "engram.operation"
ENGRAM_SCOPE_KIND = "engram.scope.kind"
ENGRAM_ADD_INFER = "engram.add.infer"
ENGRAM_ADD_MESSAGES = "engram.add.messages"
ENGRAM_ADD_FACTS = "engram.add.facts"
ENGRAM_ACTIONS_ADD = "engram.actions.add"
ENGRAM_ACTIONS_UPDATE = "engram.actions.update"
ENGRAM_ACTIONS_DELETE = "engram.actions.delete"
ENGRAM_ACTIONS_NONE = "engram.actions.none"
ENGRAM_SEARCH_LIMIT = "engram.search.limit"
ENGRAM_SEARCH_PATHS = "engram.search.paths"
ENGRAM_SEARCH_MISSING = "engram.search.missing"
ENGRAM_RESULTS_COUNT = "engram.results.count"
ENGRAM_GRAPH_ENTITIES = "engram.graph.entities"
ENGRAM_GRAPH_RELATIONS = "engram.graph.relations"

# -- provider-call spans -----------------------------------------------------------------------
ENGRAM_PROVIDER = "engram.provider"
ENGRAM_LLM_TASK = "engram.llm.task"
ENGRAM_EMBED_COUNT = "engram.embed.count"
ENGRAM_EMBED_KIND = "engram.embed.kind"
ENGRAM_QUERY_MODE = "engram.query.mode"
ENGRAM_QUERY_ARCHIVED = "engram.query.archived"
ENGRAM_WRITE_UPSERTS = "engram.write.upserts"
ENGRAM_WRITE_DELETES = "engram.write.deletes"
ENGRAM_WRITE_ARCHIVE = "engram.write.archive"
ENGRAM_HISTORY_EVENTS = "engram.history.events"
ENGRAM_RERANK_DOCUMENTS = "engram.rerank.documents"
ENGRAM_RERANK_TOP_N = "engram.rerank.top_n"

GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_SYSTEM = "gen_ai.system"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_REQUEST_TEMPERATURE = "gen_ai.request.temperature"
GEN_AI_REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_OUTPUT_TYPE = "gen_ai.output.type"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_EMBEDDINGS_DIMENSION_COUNT = "gen_ai.embeddings.dimension.count"
GEN_AI_TOKEN_TYPE = "gen_ai.token.type"

DB_SYSTEM_NAME = "db.system.name"
DB_OPERATION_NAME = "db.operation.name"
ERROR_TYPE = "error.type"

# -- metrics -----------------------------------------------------------------------------------
METRIC_OPERATION_DURATION = "engram.operation.duration"
METRIC_GEN_AI_DURATION = "gen_ai.client.operation.duration"
METRIC_GEN_AI_TOKEN_USAGE = "gen_ai.client.token.usage"

# Histogram bucket advice. The GenAI ones are the semantic conventions' recommended boundaries; the
# operation one spans an in-process search (sub-millisecond) to an add waiting on an LLM (minutes).
OPERATION_DURATION_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
)
GEN_AI_DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
GEN_AI_TOKEN_BUCKETS = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)

__all__ = sorted(n for n in list(globals()) if n.isupper())
