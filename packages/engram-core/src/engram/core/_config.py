"""Configuration: :class:`MemoryConfig`, from code, an ``engram.toml`` file, or ``ENGRAM_*`` variables."""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ._context import ContextConfig
from ._decay import DecayConfig
from ._ranking import BoostConfig
from .errors import ConfigurationError

__all__ = ["ENV_PREFIX", "FusionConfig", "GraphConfig", "InferConfig", "MemoryConfig", "SearchConfig"]

ENV_PREFIX = "ENGRAM_"
PROVIDER_FIELDS = ("llm", "embedder", "vector_store", "graph_store", "history_store", "reranker")


class FusionConfig(BaseModel):
    """How dense (cosine) and lexical (BM25) rankings are combined.

    Attributes:
        method: ``"rsf"``, relative score fusion (each list's scores min-max normalised to [0, 1]
            and summed with the weights; Weaviate's ``relativeScoreFusion``); ``"dbsf"``,
            distribution-based score fusion (scores normalised by mean ± 3 standard deviations;
            Qdrant's DBSF); ``"rrf"``, reciprocal rank fusion, ``sum(w / (k + rank))``
            (Cormack, Clarke and Büttcher, SIGIR 2009).
        dense_weight, lexical_weight: each path's weight (>= 0; they need not sum to 1). Defaults
            0.4 / 0.6: on LoCoMo dev, with the boosts on, R@10 0.745 against 0.731 at 0.5 / 0.5
            and 0.739 at 0.3 / 0.7 (FTS5 BM25 alone beats the local model's cosine alone there,
            0.604 to 0.497). Weights, not ranks, are fused, so a path's confidence counts.
        rrf_k: RRF's rank constant ``k``.
    """

    model_config = ConfigDict(extra="forbid")

    method: Literal["rsf", "dbsf", "rrf"] = "rsf"
    dense_weight: float = Field(default=0.4, ge=0)
    lexical_weight: float = Field(default=0.6, ge=0)
    rrf_k: int = Field(default=60, ge=1)


class RerankConfig(BaseModel):
    """How search uses ``MemoryConfig.reranker`` (nothing is reranked without one).

    Attributes:
        candidates: how many of the best fused hits the reranker sees (at least the caller's
            limit); the rest keep their fused order below them.
    """

    model_config = ConfigDict(extra="forbid")

    candidates: int = Field(default=20, ge=1, le=1000)


class SearchConfig(BaseModel):
    """Search defaults.

    Attributes:
        fusion: see :class:`FusionConfig`.
        candidates: how many hits each recall path fetches before fusion (at least the caller's
            limit). 20 measured as good as 50 on LoCoMo dev (R@10 0.745 vs 0.742 with the default
            boosts; 0.658 vs 0.659 with fusion alone) and about a fifth faster at 10K memories.
        path_timeout: seconds each recall path may take.
        threshold: default minimum final score, or ``None`` for none.
        archive_floor: when the best active memory's dense score (cosine similarity, in [-1, 1])
            is below this, or nothing active matches, archived versions (superseded or deleted by
            the LLM pipeline) are recalled too and ranked with the active ones, marked
            ``"archived": true``. ``None`` turns the fallback off. 0.25 sits between the cosines
            all-MiniLM-L6-v2 gives unrelated sentences (mostly below 0.2) and related ones.
        boost: neighbour expansion and the query-aware boosts added to the fused score; see
            :class:`BoostConfig`.
        rerank: how a configured reranker (``MemoryConfig.reranker``) is used; see
            :class:`RerankConfig`.
        decay: the retention factor on scores (off by default); see :class:`DecayConfig`.
        context: context-aware weighting by task type and memory type (off by default); see
            :class:`ContextConfig`.
    """

    model_config = ConfigDict(extra="forbid")

    fusion: FusionConfig = FusionConfig()
    candidates: int = Field(default=20, ge=1, le=10_000)
    path_timeout: float = Field(default=30.0, gt=0)
    threshold: float | None = None
    archive_floor: float | None = Field(default=0.25, ge=-1, le=1)
    boost: BoostConfig = BoostConfig()
    rerank: RerankConfig = RerankConfig()
    decay: DecayConfig = DecayConfig()
    context: ContextConfig = ContextConfig()


class InferConfig(BaseModel):
    """``add(..., infer=True)`` settings.

    Attributes:
        timeout: seconds one LLM call of the pipeline may take in all (the provider's own retries
            included) before the pipeline gives up on it and keeps the input.
    """

    model_config = ConfigDict(extra="forbid")

    timeout: float = Field(default=120.0, gt=0)


SINGLE_VALUED = (
    "lives_in", "works_at", "works_for", "employed_by", "married_to", "engaged_to", "dating", "based_in",
    "located_in", "studies_at", "reports_to", "has_job_title", "has_role", "has_age", "has_status",
)


class GraphConfig(BaseModel):
    """Graph memory settings (used when ``graph_store`` is set; see :mod:`engram.core._graph`).

    Attributes:
        entity_threshold: cosine similarity of name embeddings at or above which a new name is
            merged into a stored entity of the same scope. 0.9: with the local MiniLM, "NYC" and
            "New York" score 0.94 and "Acme Corp" and "Acme Corporation" 0.98, while "Berlin" and
            "Munich" score 0.71 and "Alice" and "Alice Smith" 0.82 (kept apart: maybe two people).
        query_entity_threshold: ``None`` (default): an entity counts as named by a question when
            one of the question's word n-grams is its key. A number also counts the entities whose
            name embedding is within that cosine of the question's (0.75 is a sensible value: "Tell
            me about Paris" and "Paris" score 0.79, an unrelated question and a name about 0.2).
            Off by default: one more store call per search, about 3 ms at 3K entities on two
            cores (benchmarks/bench_graph.py), for names the exact match mostly finds already.
        depth: hops graph recall walks from the question's entities (1-5).
        relations: at most this many relations returned by search.
        entity_boost: ``score += entity_boost * e`` for a memory mentioning the question's entities
            (``e`` in [0, 1]); 0.1 is a tie-breaker on the rsf scale, never a rewrite of it.
        graph_boost: ``score += graph_boost / hops`` for a memory that stated a recalled relation.
        single_valued: relation names that hold one value at a time, for the rule used when the
            LLM's contradiction decision cannot be used (and shown to the LLM as a hint).
    """

    model_config = ConfigDict(extra="forbid")

    entity_threshold: float = Field(default=0.9, ge=-1, le=1)
    query_entity_threshold: float | None = Field(default=None, ge=-1, le=1)
    depth: int = Field(default=2, ge=1, le=5)
    relations: int = Field(default=20, ge=0, le=1000)
    entity_boost: float = Field(default=0.1, ge=0)
    graph_boost: float = Field(default=0.05, ge=0)
    single_valued: tuple[str, ...] = SINGLE_VALUED


class MemoryConfig(BaseModel):
    """Everything :class:`~engram.core.AsyncMemory` needs; every field has a working default.

    Each provider field takes an instance, a registered name (``"sqlite"``), a URL
    (``"sqlite:///home/me/engram.db"``) or ``{"provider": name, "config": {...}}``.

    Attributes:
        vector_store: default ``"sqlite"`` (a file in the user's data directory).
        embedder: default ``"local"`` (all-MiniLM-L6-v2 on onnxruntime, offline).
        llm: ``None`` stores messages verbatim; an LLM enables ``add(infer=True)``.
        history_store: ``None`` uses the vector store's own history when it keeps one (the SQLite
            store does, in the same transaction as the memories), else an in-memory SQLite history.
        graph_store: ``None`` (default) keeps no graph; ``"sqlite"`` keeps entities and relations in
            the SQLite vector store's database file (its own file otherwise), ``"memory"``,
            ``"kuzu"`` or ``"neo4j"`` elsewhere. Graph extraction needs an LLM.
        reranker: off by default.
        search: see :class:`SearchConfig`.
        infer: see :class:`InferConfig`.
        graph: see :class:`GraphConfig`.
        telemetry: ``True`` (default): a span per operation and per provider call, and the
            duration and token metrics, through the OpenTelemetry API (no-ops until an SDK is
            configured; docs/telemetry.md). ``False``: no spans and no metrics from this memory.
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    vector_store: Any = "sqlite"
    embedder: Any = "local"
    llm: Any = None
    history_store: Any = None
    graph_store: Any = None
    reranker: Any = None
    search: SearchConfig = SearchConfig()
    infer: InferConfig = InferConfig()
    graph: GraphConfig = GraphConfig()
    telemetry: bool = True

    @field_validator(*PROVIDER_FIELDS)
    @classmethod
    def _provider_spec(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise ValueError("a provider name cannot be empty")
        if isinstance(value, Mapping) and "provider" not in value:
            raise ValueError('a provider mapping needs a "provider" key, e.g. {"provider": "sqlite", "config": {...}}')
        return value

    @classmethod
    def parse(cls, data: MemoryConfig | Mapping[str, Any] | None) -> MemoryConfig:
        """Validate a mapping (or pass a config through).

        Raises:
            ConfigurationError: with pydantic's field-by-field reasons.
        """
        if isinstance(data, MemoryConfig):
            return data
        try:
            return cls.model_validate(dict(data or {}))
        except ValidationError as exc:
            raise ConfigurationError(f"invalid engram configuration:\n{exc}") from None

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> MemoryConfig:
        """Read an ``engram.toml`` file (the same keys as the mapping form; ``[search.fusion]`` etc.).

        Raises:
            ConfigurationError: unreadable file, bad TOML or invalid values.
        """
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigurationError(f"cannot read config file {path}: {exc}") from None
        return cls.parse(data)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, base: MemoryConfig | Mapping[str, Any] | None = None
    ) -> MemoryConfig:
        """Build from ``ENGRAM_*`` variables layered over ``base``.

        ``__`` separates nested keys and values are read as JSON when they parse, else as strings::

            ENGRAM_VECTOR_STORE=sqlite:///data/engram.db
            ENGRAM_EMBEDDER=hash
            ENGRAM_LLM__PROVIDER=openai
            ENGRAM_LLM__CONFIG__MODEL=gpt-4.1-mini
            ENGRAM_SEARCH__FUSION__METHOD=rrf

        ``ENGRAM_CONFIG`` names an ``engram.toml`` read first. Other ``ENGRAM_*`` names that are not
        config keys (``ENGRAM_DB``, ``ENGRAM_TEST_*``) are ignored.

        Raises:
            ConfigurationError: invalid values.
        """
        env = os.environ if environ is None else environ
        data: dict[str, Any] = {}
        if base is not None:
            data = cls.parse(base).model_dump(exclude_defaults=True)
        if env.get(ENV_PREFIX + "CONFIG"):
            data = _merge(data, cls.from_toml(env[ENV_PREFIX + "CONFIG"]).model_dump(exclude_defaults=True))
        top = set(cls.model_fields)
        # Shallow names first, so ENGRAM_LLM=openai never overwrites ENGRAM_LLM__CONFIG__MODEL=...
        # whatever order the environment lists them in.
        for name, raw in sorted(env.items(), key=lambda kv: kv[0].count("__")):
            if not name.startswith(ENV_PREFIX):
                continue
            parts = [p.lower() for p in name[len(ENV_PREFIX):].split("__")]
            if parts[0] not in top or parts[0] == "config":
                continue
            try:
                value: Any = json.loads(raw)
            except ValueError:
                value = raw
            node: dict[str, Any] = data
            for p in parts[:-1]:
                child = node.get(p)
                if isinstance(child, str):  # ENGRAM_LLM=openai plus ENGRAM_LLM__CONFIG__X=...
                    child = {"provider": child}
                if not isinstance(child, dict):
                    child = {}
                node[p] = child
                node = child
            node[parts[-1]] = value
        return cls.parse(data)


def _merge(a: dict[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(out.get(k), dict) and isinstance(v, Mapping) else v
    return out
