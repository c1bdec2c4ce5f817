"""Provider-call spans: a thin tracing proxy per provider kind (docs/telemetry.md).

:class:`AsyncMemory` wraps each provider it builds in the proxy of its kind. A proxy forwards every
attribute to the provider (``capabilities``, ``path``, ``dims``, extra methods) and wraps the
kind's protocol methods in a CLIENT span; the LLM and embedder proxies follow the OpenTelemetry
GenAI conventions and record the ``gen_ai.client.*`` metrics. The engine keeps the raw providers
for identity checks, ``aclose()`` and its public properties.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from engram.telemetry import (
    DB_OPERATION_NAME,
    DB_SYSTEM_NAME,
    ENGRAM_EMBED_COUNT,
    ENGRAM_EMBED_KIND,
    ENGRAM_HISTORY_EVENTS,
    ENGRAM_LLM_TASK,
    ENGRAM_PROVIDER,
    ENGRAM_QUERY_ARCHIVED,
    ENGRAM_QUERY_MODE,
    ENGRAM_RERANK_DOCUMENTS,
    ENGRAM_RERANK_TOP_N,
    ENGRAM_RESULTS_COUNT,
    ENGRAM_WRITE_ARCHIVE,
    ENGRAM_WRITE_DELETES,
    ENGRAM_WRITE_UPSERTS,
    GEN_AI_EMBEDDINGS_DIMENSION_COUNT,
    GEN_AI_OUTPUT_TYPE,
    GEN_AI_REQUEST_MAX_TOKENS,
    GEN_AI_REQUEST_TEMPERATURE,
    GenAIClient,
    Telemetry,
    current_llm_task,
)

from ._registry import URL_SCHEME_ALIASES

__all__ = ["provider_model", "provider_name", "traced", "unwrap"]

Attrs = dict[str, Any]


def provider_name(kind: str, spec: Any, provider: Any) -> str:
    """The name a provider was configured by (``"sqlite"``, ``"openai"``, the URL's scheme), or
    for an instance or class, the ``<name>`` of its ``engram.<kind>.<name>`` module, else its
    class name in lower case."""
    if hasattr(spec, "provider") and isinstance(spec.provider, str):  # a pydantic provider spec
        return spec.provider
    if isinstance(spec, str):
        if "://" in spec:
            scheme = urlsplit(spec).scheme
            return URL_SCHEME_ALIASES.get((kind, scheme), scheme.split("+", 1)[0])
        return spec
    if isinstance(spec, Mapping) and isinstance(spec.get("provider"), str):
        return spec["provider"]
    cls = provider if isinstance(provider, type) else type(provider)
    parts = cls.__module__.split(".")
    if len(parts) >= 3 and parts[0] == "engram":
        return parts[2]
    return cls.__name__.lower()


def provider_model(provider: Any) -> str | None:
    """The model a provider calls: its ``model`` attribute, else ``config.model``, when a string."""
    model = getattr(provider, "model", None)
    if not isinstance(model, str):
        model = getattr(getattr(provider, "config", None), "model", None)
    return model if isinstance(model, str) and model else None


class _Proxy:
    """Forwards every attribute it does not define to the provider it wraps."""

    __slots__ = ("_inner", "_name", "_spans", "_tel")

    _kind = ""

    def __init__(self, inner: Any, name: str, telemetry: Telemetry) -> None:
        self._inner, self._name, self._tel = inner, name, telemetry
        self._spans: dict[str, tuple[str, Attrs]] = {}

    def __getattr__(self, name: str) -> Any:  # only called for names the proxy lacks
        return getattr(object.__getattribute__(self, "_inner"), name)

    def __repr__(self) -> str:
        return f"<traced {self._inner!r}>"

    def _store_attrs(self, method: str) -> tuple[str, Attrs]:
        """``engram.<kind>.<method>`` and its static attributes, built once per method."""
        got = self._spans.get(method)
        if got is None:
            got = self._spans[method] = (
                f"engram.{self._kind}.{method}",
                {DB_SYSTEM_NAME: self._name, DB_OPERATION_NAME: method, ENGRAM_PROVIDER: self._name},
            )
        return got

    async def aclose(self) -> None:
        await self._inner.aclose()


def _count(result: Any) -> Attrs:
    return {ENGRAM_RESULTS_COUNT: len(result)}


def _store_method(
    method: str,
    before: Callable[[tuple[Any, ...], dict[str, Any]], Attrs] | None = None,
    after: Callable[[Any], Attrs] | None = None,
) -> Callable[..., Any]:
    """A proxy method: one CLIENT span around the provider's ``method``, with attributes from
    its arguments (``before``) and its result (``after``), computed only when the span records."""

    async def call(self: _Proxy, *args: Any, **kwargs: Any) -> Any:
        name, attrs = self._store_attrs(method)
        with self._tel.client_span(name, attrs) as s:
            if before is not None and s.recording:
                s.span.set_attributes(before(args, kwargs))
            result = await getattr(self._inner, method)(*args, **kwargs)
            if after is not None and s.recording:
                s.span.set_attributes(after(result))
            return result

    call.__name__ = call.__qualname__ = method
    return call


def _write_attrs(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Attrs:
    batch = args[0] if args else kwargs["batch"]
    return {
        ENGRAM_WRITE_UPSERTS: len(batch.upserts), ENGRAM_WRITE_DELETES: len(batch.deletes),
        ENGRAM_WRITE_ARCHIVE: len(batch.archive),
    }


def _query_attrs(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Attrs:
    query = args[0] if args else kwargs["query"]
    return {ENGRAM_QUERY_MODE: query.mode, ENGRAM_QUERY_ARCHIVED: query.archived}


def _events_attrs(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Attrs:
    events = args[0] if args else kwargs["events"]
    return {ENGRAM_HISTORY_EVENTS: len(events)}


def _graph_write_attrs(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Attrs:
    batch = args[0] if args else kwargs["batch"]
    return {
        ENGRAM_WRITE_UPSERTS: len(batch.entities) + len(batch.relations),
        ENGRAM_WRITE_DELETES: len(batch.delete_entities) + len(batch.delete_relations),
    }


class TracedVectorStore(_Proxy):
    __slots__ = ()
    _kind = "vector_store"
    write = _store_method("write", before=_write_attrs)
    get = _store_method("get", after=_count)
    list = _store_method("list", after=_count)
    count = _store_method("count")
    search = _store_method("search", before=_query_attrs, after=_count)
    reset = _store_method("reset")
    # Only called on stores with the "rehearsal" capability (engram.core._decay.rehearse).
    record_access = _store_method("record_access", after=lambda n: {ENGRAM_RESULTS_COUNT: n})
    # Only called on stores with the "neighbors" capability (search's neighbour expansion).
    neighbors = _store_method("neighbors", after=lambda found: {ENGRAM_RESULTS_COUNT: sum(map(len, found.values()))})


class TracedHistoryStore(_Proxy):
    __slots__ = ()
    _kind = "history_store"
    add_events = _store_method("add_events", before=_events_attrs)
    history = _store_method("history", after=_count)
    reset = _store_method("reset")


class TracedGraphStore(_Proxy):
    __slots__ = ()
    _kind = "graph_store"
    apply = _store_method("apply", before=_graph_write_attrs)
    entities = _store_method("entities", after=_count)
    similar_entities = _store_method("similar_entities", after=_count)
    relations = _store_method("relations", after=_count)
    neighbors = _store_method("neighbors", after=_count)
    delete_memories = _store_method("delete_memories", after=lambda n: {ENGRAM_RESULTS_COUNT: n})
    delete_scope = _store_method("delete_scope")
    reset = _store_method("reset")


def _rerank_attrs(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Attrs:
    documents = args[1] if len(args) > 1 else kwargs["documents"]
    attrs: Attrs = {ENGRAM_RERANK_DOCUMENTS: len(documents)}
    if kwargs.get("top_n") is not None:
        attrs[ENGRAM_RERANK_TOP_N] = kwargs["top_n"]
    return attrs


class TracedReranker(_Proxy):
    __slots__ = ()
    _kind = "reranker"
    rerank = _store_method("rerank", before=_rerank_attrs, after=_count)


class TracedLLM(_Proxy):
    """``chat {model}`` spans (GenAI conventions) with token usage and ``engram.llm.task``."""

    __slots__ = ("_client",)

    def __init__(self, inner: Any, name: str, telemetry: Telemetry) -> None:
        super().__init__(inner, name, telemetry)
        self._client = GenAIClient(telemetry, "chat", name, provider_model(inner))

    async def generate(self, messages: Sequence[dict[str, Any]], **options: Any) -> Any:
        client = self._client
        with client.span() as s:
            if s.recording:
                span = s.span
                task = current_llm_task()
                if task is not None:
                    span.set_attribute(ENGRAM_LLM_TASK, task)
                if options.get("temperature") is not None:
                    span.set_attribute(GEN_AI_REQUEST_TEMPERATURE, options["temperature"])
                if options.get("max_tokens") is not None:
                    span.set_attribute(GEN_AI_REQUEST_MAX_TOKENS, options["max_tokens"])
                structured = options.get("response_format") is not None or bool(options.get("tools"))
                span.set_attribute(GEN_AI_OUTPUT_TYPE, "json" if structured else "text")
            reply = await self._inner.generate(messages, **options)
            s.usage(client, getattr(reply, "model", None), getattr(reply, "input_tokens", None),
                    getattr(reply, "output_tokens", None))
            return reply


class TracedEmbedder(_Proxy):
    """``embeddings {model}`` spans (GenAI conventions) and the GenAI duration metric."""

    __slots__ = ("_client",)

    def __init__(self, inner: Any, name: str, telemetry: Telemetry) -> None:
        super().__init__(inner, name, telemetry)
        self._client = GenAIClient(telemetry, "embeddings", name, provider_model(inner))

    @property
    def dims(self) -> int:
        return self._inner.dims

    async def embed(self, texts: Sequence[str], **options: Any) -> Any:
        with self._client.span() as s:
            if s.recording:
                s.span.set_attributes(
                    {ENGRAM_EMBED_COUNT: len(texts), ENGRAM_EMBED_KIND: options.get("kind", "document")}
                )
            vectors = await self._inner.embed(texts, **options)
            if s.recording:
                shape = getattr(vectors, "shape", ())
                if len(shape) == 2:
                    s.span.set_attribute(GEN_AI_EMBEDDINGS_DIMENSION_COUNT, int(shape[1]))
            return vectors


_PROXIES: dict[str, type[_Proxy]] = {
    "llm": TracedLLM,
    "embedder": TracedEmbedder,
    "vector_store": TracedVectorStore,
    "graph_store": TracedGraphStore,
    "history_store": TracedHistoryStore,
    "reranker": TracedReranker,
}


def traced(kind: str, provider: Any, spec: Any, telemetry: Telemetry | None) -> Any:
    """``provider`` wrapped in its kind's tracing proxy; as is when ``telemetry`` is ``None``."""
    if telemetry is None or provider is None:
        return provider
    return _PROXIES[kind](provider, provider_name(kind, spec, provider), telemetry)


def unwrap(provider: Any) -> Any:
    """The provider behind a tracing proxy (the argument itself when it is not one)."""
    return provider._inner if isinstance(provider, _Proxy) else provider


class NoSpan:
    """Stands in for :class:`~engram.telemetry.SpanScope` when telemetry is off."""

    __slots__ = ()
    recording = False

    def __enter__(self) -> NoSpan:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def set(self, key: str, value: Any) -> None:
        return None

    def set_scope(self, scope: Any) -> None:
        return None


NO_SPAN = NoSpan()
