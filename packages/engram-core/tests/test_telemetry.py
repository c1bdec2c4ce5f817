"""The engine's spans and metrics (docs/telemetry.md), read back through the OpenTelemetry SDK's
in-memory span exporter and metric reader, with providers passed to each memory.

The stores are the real in-process ones (SQLite in memory, the memory store, the SQLite and memory
graph stores), the embedder the hash embedder, and the LLM the scripted provider.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from engram.core import AsyncMemory, LLMResponse, Memory
from engram.core._prompts import DECIDE_V1, EXTRACT_USER_V1, GRAPH_DECIDE_V1, GRAPH_EXTRACT_V1
from engram.core._tracing import TracedEmbedder, TracedVectorStore, traced, unwrap
from engram.core.errors import MemoryNotFoundError, ProviderError
from engram.embedding.hash import HashEmbedder
from engram.llm.scripted import ScriptedLLM
from engram.telemetry import get_telemetry
from engram.vector.memory import MemoryVectorStore
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

USER = "alice-7f3c9e"  # must never appear in an attribute
AGENT = "agent-b41d"
RUN = "run-0c2e"


@dataclass
class Otel:
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.name == name]

    def one(self, name: str) -> ReadableSpan:
        found = self.named(name)
        assert len(found) == 1, (name, [s.name for s in self.spans()])
        return found[0]

    def children(self, parent: ReadableSpan) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.parent is not None and s.parent.span_id == parent.context.span_id]

    def points(self, metric: str) -> list[tuple[dict[str, Any], Any, str]]:
        """(attributes, data point, unit) of every data point of a metric."""
        data = self.reader.get_metrics_data()
        out = []
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == metric:
                        out += [(dict(p.attributes), p, m.unit) for p in m.data.data_points]
        return out

    def memory(self, config: dict[str, Any]) -> AsyncMemory:
        return AsyncMemory(config, tracer_provider=self.tracer_provider, meter_provider=self.meter_provider)


@pytest.fixture
def otel() -> Iterator[Otel]:
    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[reader])
    yield Otel(tp, mp, exporter, reader)
    tp.shutdown()
    mp.shutdown()


def sqlite_config(**extra: Any) -> dict[str, Any]:
    return {"vector_store": "sqlite:///:memory:", "embedder": "hash", **extra}


def facts(*texts: str, input_tokens: int = 120, output_tokens: int = 9, model: str = "scripted-x") -> LLMResponse:
    return LLMResponse(
        text=json.dumps({"facts": [{"text": t, "type": "preference", "category": "preference"} for t in texts]}),
        model=model, input_tokens=input_tokens, output_tokens=output_tokens,
    )


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


# -- add ---------------------------------------------------------------------------------------


async def test_add_verbatim_span_tree(otel: Otel) -> None:
    async with otel.memory(sqlite_config()) as mem:
        out = await mem.add(
            [{"role": "user", "content": "I like tea"}, {"role": "assistant", "content": "Noted"}],
            user_id=USER, infer=False,
        )
    assert len(out["results"]) == 2
    add = otel.one("engram.add")
    assert add.kind == SpanKind.INTERNAL and add.parent is None
    assert add.status.status_code == StatusCode.UNSET
    a = attrs(add)
    assert a["engram.operation"] == "add" and a["engram.scope.kind"] == "user"
    assert a["engram.add.infer"] is False and a["engram.add.messages"] == 2
    assert (a["engram.actions.add"], a["engram.actions.update"], a["engram.actions.delete"]) == (2, 0, 0)
    assert a["engram.actions.none"] == 0 and a["engram.results.count"] == 2
    kids = otel.children(add)
    # the SQLite store keeps the history itself: no separate history write
    assert sorted(s.name for s in kids) == ["embeddings", "engram.vector_store.write"]
    assert all(s.kind == SpanKind.CLIENT for s in kids)
    embed = next(s for s in kids if s.name == "embeddings")
    e = attrs(embed)
    assert e["gen_ai.operation.name"] == "embeddings" and e["gen_ai.system"] == "hash"
    assert e["gen_ai.provider.name"] == "hash"
    assert (e["engram.embed.count"], e["engram.embed.kind"]) == (2, "document")
    assert e["gen_ai.embeddings.dimension.count"] == 384
    write = attrs(next(s for s in kids if s.name == "engram.vector_store.write"))
    assert write["db.system.name"] == "sqlite" and write["db.operation.name"] == "write"
    assert write["engram.provider"] == "sqlite"
    assert (write["engram.write.upserts"], write["engram.write.deletes"]) == (2, 0)


async def test_a_separate_history_store_gets_its_span(otel: Otel) -> None:
    async with otel.memory({"vector_store": "memory", "embedder": HashEmbedder(dims=16)}) as mem:
        await mem.add("I like tea", user_id=USER, infer=False)
        assert len(await mem.history((await mem.get_all(user_id=USER))["results"][0]["id"])) == 1
    add = otel.one("engram.add")
    names = sorted(s.name for s in otel.children(add))
    assert names == ["embeddings", "engram.history_store.add_events", "engram.vector_store.write"]
    hist = otel.one("engram.history_store.add_events")
    assert attrs(hist)["db.system.name"] == "sqlite" and attrs(hist)["engram.history.events"] == 1
    # the vector store was given as a name, the embedder as an instance (name from its module)
    assert attrs(otel.one("engram.vector_store.write"))["db.system.name"] == "memory"
    assert attrs(otel.one("embeddings"))["gen_ai.embeddings.dimension.count"] == 16
    history = otel.one("engram.history")
    assert [s.name for s in otel.children(history)] == ["engram.history_store.history"]
    assert attrs(history)["engram.results.count"] == 1


async def test_add_infer_span_tree_with_llm_spans_and_token_usage(otel: Otel) -> None:
    decide = LLMResponse(
        text=json.dumps({"actions": [{"fact": 0, "event": "UPDATE", "id": 0, "text": "Likes green tea"},
                                     {"fact": 1, "event": "NONE"}]}),
        model="scripted-y", input_tokens=300, output_tokens=20,
    )
    llm = ScriptedLLM(replies=[facts("Likes tea"), facts("Likes green tea", "Likes tea a lot",
                                                          input_tokens=130, output_tokens=11), decide])
    async with otel.memory(sqlite_config(llm=llm)) as mem:
        await mem.add("I like tea", user_id=USER, agent_id=AGENT)
        otel.exporter.clear()
        out = await mem.add("I like green tea now", user_id=USER, agent_id=AGENT)
    assert [r["event"] for r in out["results"]] == ["UPDATE"]
    add = otel.one("engram.add")
    a = attrs(add)
    assert a["engram.scope.kind"] == "user+agent" and a["engram.add.infer"] is True
    assert (a["engram.actions.add"], a["engram.actions.update"], a["engram.actions.delete"]) == (0, 1, 0)
    assert a["engram.actions.none"] == 1 and a["engram.add.facts"] == 2 and a["engram.results.count"] == 1
    chats = otel.named("chat scripted")
    assert len(chats) == 2
    assert all(c.parent is not None and c.parent.span_id == add.context.span_id for c in chats)
    by_task = {attrs(c)["engram.llm.task"]: attrs(c) for c in chats}
    assert set(by_task) == {"extract_facts", "decide"}
    ex, de = by_task["extract_facts"], by_task["decide"]
    for c in (ex, de):
        assert c["gen_ai.operation.name"] == "chat" and c["gen_ai.system"] == "scripted"
        assert c["gen_ai.provider.name"] == "scripted" and c["gen_ai.request.model"] == "scripted"
        assert c["gen_ai.output.type"] == "json"
    assert (ex["gen_ai.usage.input_tokens"], ex["gen_ai.usage.output_tokens"]) == (130, 11)
    assert ex["gen_ai.response.model"] == "scripted-x"
    assert (de["gen_ai.usage.input_tokens"], de["gen_ai.usage.output_tokens"]) == (300, 20)
    assert de["gen_ai.response.model"] == "scripted-y"
    # related-memory recall runs one store search per fact in a task group: still children of the add
    searches = otel.named("engram.vector_store.search")
    assert len(searches) == 2
    assert all(s.parent is not None and s.parent.span_id == add.context.span_id for s in searches)
    assert {attrs(s)["engram.query.mode"] for s in searches} == {"dense"}
    write = attrs(otel.one("engram.vector_store.write"))
    assert (write["engram.write.upserts"], write["engram.write.archive"]) == (1, 1)
    # every span of the add is in its trace
    assert {s.context.trace_id for s in otel.spans()} == {add.context.trace_id}


async def test_a_failing_llm_call_is_an_error_on_its_span_not_on_the_add(otel: Otel) -> None:
    llm = ScriptedLLM(replies=[])  # raises ProviderError: the pipeline stores the message verbatim
    async with otel.memory(sqlite_config(llm=llm)) as mem:
        out = await mem.add("I like tea", user_id=USER)
    assert "fallback" in out["infer"]
    chat = otel.one("chat scripted")
    assert chat.status.status_code == StatusCode.ERROR
    assert attrs(chat)["error.type"] == "engram.core.errors.ProviderError"
    assert [e.name for e in chat.events] == ["exception"]
    add = otel.one("engram.add")
    assert add.status.status_code == StatusCode.UNSET and "error.type" not in attrs(add)
    assert attrs(add)["engram.actions.add"] == 1
    duration = otel.points("gen_ai.client.operation.duration")
    assert any(p[0].get("error.type") == "engram.core.errors.ProviderError" for p in duration)


class Brain:
    """Answers engram's prompts by prompt, so fact and graph calls can run in any order."""

    def __init__(self) -> None:
        self.llm = ScriptedLLM(respond=self._respond)

    def _respond(self, messages: list[dict[str, Any]], options: dict[str, Any]) -> str:
        system = messages[0]["content"]
        if system == EXTRACT_USER_V1:
            return json.dumps({"facts": ["Alice lives in Paris"]})
        if system == DECIDE_V1:
            return json.dumps({"actions": [{"fact": 0, "event": "ADD"}]})
        if system == GRAPH_EXTRACT_V1:
            return json.dumps({
                "entities": [{"name": "Alice", "type": "Person"}, {"name": "Paris", "type": "City"}],
                "relations": [{"source": "Alice", "relation": "lives_in", "destination": "Paris"}],
            })
        if system == GRAPH_DECIDE_V1:
            return json.dumps({"contradicted": []})
        raise AssertionError(system[:60])


async def test_graph_extraction_spans_run_in_a_task_group_under_the_add(otel: Otel) -> None:
    async with otel.memory(sqlite_config(llm=Brain().llm, graph_store="sqlite")) as mem:
        out = await mem.add("I live in Paris", user_id=USER)
        assert out["relations"]["added"]
    add = otel.one("engram.add")
    tasks = sorted(attrs(c)["engram.llm.task"] for c in otel.named("chat scripted"))
    assert tasks == ["extract_facts", "graph_extract"]
    graph_spans = [s for s in otel.spans() if s.name.startswith("engram.graph_store.")]
    assert "engram.graph_store.apply" in {s.name for s in graph_spans}
    for s in [*graph_spans, *otel.named("chat scripted"), *otel.named("embeddings")]:
        assert s.parent is not None and s.parent.span_id == add.context.span_id, s.name
        assert attrs(s).get("db.system.name", "sqlite") == "sqlite"


# -- search ------------------------------------------------------------------------------------


async def test_search_paths_reflect_what_ran(otel: Otel) -> None:
    # archive_floor=None: the archive is searched only when asked (the hash embedder's cosines are
    # low enough to trigger the fallback otherwise)
    async with otel.memory(sqlite_config(search={"archive_floor": None})) as mem:
        await mem.add(["Alice lives in Paris", "Bob likes jazz"], user_id=USER, infer=False)
        otel.exporter.clear()
        out = await mem.search("where does Alice live", user_id=USER, limit=1)
        search = otel.one("engram.search")
        a = attrs(search)
        assert a["engram.search.paths"] == ("dense", "lexical", "neighbors")
        assert a["engram.search.limit"] == 1 and a["engram.results.count"] == len(out["results"]) == 1
        assert a["engram.scope.kind"] == "user" and "engram.search.missing" not in a
        kids = otel.children(search)
        assert sorted(s.name for s in kids) == [
            "embeddings", "engram.vector_store.neighbors", "engram.vector_store.search", "engram.vector_store.search"
        ]
        modes = sorted(attrs(s)["engram.query.mode"] for s in kids if s.name == "engram.vector_store.search")
        assert modes == ["dense", "lexical"]
        assert attrs(next(s for s in kids if s.name == "embeddings"))["engram.embed.kind"] == "query"
        otel.exporter.clear()
        await mem.search("where does Alice live", user_id=USER, include_archived=True)
        a = attrs(otel.one("engram.search"))
        assert a["engram.search.paths"] == ("dense", "lexical", "archive", "neighbors")
        archived = [attrs(s)["engram.query.archived"] for s in otel.named("engram.vector_store.search")]
        assert sorted(archived) == [False, False, True, True]


async def test_search_on_a_store_without_lexical_runs_dense_only(otel: Otel) -> None:
    async with otel.memory({"vector_store": "memory", "embedder": "hash"}) as mem:
        await mem.add("Alice lives in Paris", user_id=USER, infer=False)
        await mem.search("Alice", user_id=USER)
    assert attrs(otel.one("engram.search"))["engram.search.paths"] == ("dense", "neighbors")


async def test_search_with_a_graph_runs_entity_and_graph_paths(otel: Otel) -> None:
    config = sqlite_config(llm=Brain().llm, graph_store="sqlite", search={"archive_floor": None})
    async with otel.memory(config) as mem:
        await mem.add("I live in Paris", user_id=USER)
        otel.exporter.clear()
        out = await mem.search("where does Alice live", user_id=USER)
    assert out["relations"]
    search = otel.one("engram.search")
    assert attrs(search)["engram.search.paths"] == ("dense", "lexical", "entity", "graph", "neighbors")
    graph = [s for s in otel.spans() if s.name.startswith("engram.graph_store.")]
    assert {s.name for s in graph} == {"engram.graph_store.entities", "engram.graph_store.neighbors"}
    for s in graph:  # started inside nested task groups, still children of the search
        assert s.parent is not None and s.parent.span_id == search.context.span_id
    neighbors = attrs(otel.one("engram.graph_store.neighbors"))
    assert neighbors["engram.results.count"] >= 1 and neighbors["db.system.name"] == "sqlite"


class FailingLexicalStore(MemoryVectorStore):
    capabilities = MemoryVectorStore.capabilities | {"lexical"}

    async def search(self, query: Any) -> Any:
        if query.mode == "lexical":
            raise ProviderError("lexical index is down", provider="test")
        return await super().search(query)


async def test_a_failed_search_path_is_named_and_its_span_is_an_error(otel: Otel) -> None:
    async with otel.memory({"vector_store": FailingLexicalStore(), "embedder": "hash"}) as mem:
        await mem.add("Alice lives in Paris", user_id=USER, infer=False)
        out = await mem.search("Alice", user_id=USER)
    assert "lexical" in out["missing"]
    a = attrs(otel.one("engram.search"))
    assert a["engram.search.paths"] == ("dense", "lexical", "neighbors") and a["engram.search.missing"] == ("lexical",)
    failed = [s for s in otel.named("engram.vector_store.search") if s.status.status_code == StatusCode.ERROR]
    assert len(failed) == 1 and attrs(failed[0])["engram.query.mode"] == "lexical"
    assert attrs(failed[0])["db.system.name"] == "failinglexicalstore"  # an instance outside engram.*


# -- the other operations ----------------------------------------------------------------------


async def test_every_public_operation_has_its_span(otel: Otel) -> None:
    async with otel.memory(sqlite_config(graph_store="memory")) as mem:
        added = await mem.add(["one", "two"], user_id=USER, run_id=RUN, infer=False)
        mid = added["results"][0]["id"]
        assert (await mem.get(mid))["memory"] == "one"
        assert len((await mem.get_all(user_id=USER))["results"]) == 2
        await mem.get_graph(user_id=USER)
        assert await mem.count(user_id=USER) == 2
        await mem.update(mid, "uno")
        assert len(await mem.history(mid)) == 2
        items = await mem.export_items()
        assert await mem.import_items(items) == 2
        await mem.delete(mid)
        assert (await mem.delete_all(user_id=USER))["deleted"] == 1
        await mem.reset()
    ops = [s for s in otel.spans() if s.parent is None]
    names = [s.name for s in ops]
    assert names == [
        "engram.add", "engram.get", "engram.get_all", "engram.get_graph", "engram.count", "engram.update",
        "engram.history", "engram.export", "engram.import", "engram.delete", "engram.delete_all", "engram.reset",
    ]
    for s in ops:
        assert attrs(s)["engram.operation"] == s.name.removeprefix("engram.")
        assert s.kind == SpanKind.INTERNAL and s.status.status_code == StatusCode.UNSET
        assert otel.children(s), f"{s.name} has no provider span"
    by = {s.name: attrs(s) for s in ops}
    assert by["engram.add"]["engram.scope.kind"] == "user+run"
    assert by["engram.get_all"]["engram.scope.kind"] == "user" and by["engram.get_all"]["engram.results.count"] == 2
    assert by["engram.get"]["engram.results.count"] == 1
    assert by["engram.history"]["engram.results.count"] == 2
    assert by["engram.export"]["engram.results.count"] == 2 and "engram.scope.kind" not in by["engram.export"]
    assert by["engram.import"]["engram.results.count"] == 2
    assert by["engram.delete_all"]["engram.results.count"] == 1
    assert by["engram.get_graph"]["engram.graph.entities"] == 0
    assert {s.name for s in otel.children(ops[-1])} == {
        "engram.graph_store.reset", "engram.vector_store.reset"
    }
    # the update re-embeds and writes the new version with the old one archived
    update_kids = sorted(s.name for s in otel.children(ops[5]))
    assert update_kids == ["embeddings", "engram.vector_store.get", "engram.vector_store.write"]


async def test_errors_are_recorded_on_the_operation_span_and_metric(otel: Otel) -> None:
    async with otel.memory(sqlite_config()) as mem:
        with pytest.raises(MemoryNotFoundError):
            await mem.update("no-such-id", "text")
        with pytest.raises(Exception, match="at least one of"):
            await mem.search("x")
    update = otel.one("engram.update")
    assert update.status.status_code == StatusCode.ERROR
    assert attrs(update)["error.type"] == "engram.core.errors.MemoryNotFoundError"
    (event,) = update.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "engram.core.errors.MemoryNotFoundError"
    assert attrs(otel.one("engram.search"))["error.type"] == "engram.core.errors.InvalidScopeError"
    points = {(p[0]["engram.operation"], p[0].get("error.type")) for p in otel.points("engram.operation.duration")}
    assert ("update", "engram.core.errors.MemoryNotFoundError") in points
    assert ("search", "engram.core.errors.InvalidScopeError") in points


class BrokenEmbedder(HashEmbedder):
    async def embed(self, texts: Sequence[str], *, kind: str = "document") -> Any:
        raise ProviderError("embedding server is down", provider="test")


async def test_a_provider_error_is_recorded_on_both_spans(otel: Otel) -> None:
    async with otel.memory({"vector_store": "memory", "embedder": BrokenEmbedder()}) as mem:
        with pytest.raises(ProviderError):
            await mem.add("hello", user_id=USER, infer=False)
    add, embed = otel.one("engram.add"), otel.one("embeddings")
    assert embed.parent is not None and embed.parent.span_id == add.context.span_id
    for s in (add, embed):
        assert s.status.status_code == StatusCode.ERROR
        assert attrs(s)["error.type"] == "engram.core.errors.ProviderError"
    assert attrs(embed)["gen_ai.system"] == "brokenembedder"


# -- the sync facade ---------------------------------------------------------------------------


def test_the_sync_facade_runs_the_call_under_the_callers_span(otel: Otel) -> None:
    tracer = otel.tracer_provider.get_tracer("app")
    with Memory(sqlite_config(), tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider) as mem:
        with tracer.start_as_current_span("app.request") as outer:
            mem.add("I like tea", user_id=USER, infer=False)
            mem.search("tea", user_id=USER)
        mem.count()  # outside: a root of its own
    app = otel.one("app.request")
    assert app.context.span_id == outer.get_span_context().span_id
    for name in ("engram.add", "engram.search"):
        s = otel.one(name)
        assert s.parent is not None and s.parent.span_id == app.context.span_id
        assert s.context.trace_id == app.context.trace_id
    assert otel.one("engram.count").parent is None


# -- metrics -----------------------------------------------------------------------------------


async def test_metrics_names_units_and_attributes(otel: Otel) -> None:
    llm = ScriptedLLM(replies=[facts("Likes tea", input_tokens=100, output_tokens=5)])
    async with otel.memory(sqlite_config(llm=llm)) as mem:
        await mem.add("I like tea", user_id=USER)
        await mem.search("tea", user_id=USER)
        await mem.search("coffee", user_id=USER)
    ops = otel.points("engram.operation.duration")
    assert {u for _, _, u in ops} == {"s"}
    counts = {a["engram.operation"]: p.count for a, p, _ in ops}
    assert counts == {"add": 1, "search": 2}
    assert all(set(a) == {"engram.operation"} for a, _, _ in ops)
    gen = {(a["gen_ai.operation.name"], a["gen_ai.system"], a.get("gen_ai.request.model")): p.count
           for a, p, u in otel.points("gen_ai.client.operation.duration") if u == "s"}
    # one chat (extraction; nothing stored yet, so no decision), one embedding in the add, one per search
    assert gen == {("chat", "scripted", "scripted"): 1, ("embeddings", "hash", None): 3}
    tokens = {a["gen_ai.token.type"]: (p.sum, p.count, u) for a, p, u in otel.points("gen_ai.client.token.usage")}
    assert tokens == {"input": (100, 1, "{token}"), "output": (5, 1, "{token}")}
    for a, _, _ in otel.points("gen_ai.client.token.usage"):
        assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.system"] == "scripted"
        assert a["gen_ai.request.model"] == "scripted"


# -- privacy and the off switch ----------------------------------------------------------------


def _values(mapping: Any) -> list[str]:
    out = []
    for v in dict(mapping or {}).values():
        out += [str(x) for x in v] if isinstance(v, tuple | list) else [str(v)]
    return out


async def test_no_scope_ids_in_any_attribute(otel: Otel) -> None:
    async with otel.memory(sqlite_config(llm=Brain().llm, graph_store="sqlite")) as mem:
        out = await mem.add("I live in Paris", user_id=USER, agent_id=AGENT, run_id=RUN)
        await mem.search("Paris", user_id=USER, agent_id=AGENT, run_id=RUN)
        await mem.get_all(user_id=USER)
        await mem.get_graph(user_id=USER)
        await mem.delete_all(user_id=USER, run_id=RUN)
        assert out["results"]
    spans = otel.spans()
    assert len(spans) > 15
    values = [v for s in spans for v in [*_values(s.attributes), s.name]]
    values += [v for s in spans for e in s.events for v in _values(e.attributes)]
    data = otel.reader.get_metrics_data()
    assert data is not None
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                values += [v for p in m.data.data_points for v in _values(p.attributes)]
    for secret in (USER, AGENT, RUN):
        assert not [v for v in values if secret in v], secret


async def test_telemetry_false_emits_nothing_and_wraps_nothing(otel: Otel) -> None:
    async with otel.memory(sqlite_config(telemetry=False, llm=ScriptedLLM(replies=[facts("Likes tea")]))) as mem:
        await mem.add("I like tea", user_id=USER)
        await mem.search("tea", user_id=USER)
        assert type(mem._vector).__name__ == "SQLiteVectorStore" and mem._embedder is mem.embedder
    assert otel.spans() == []
    assert otel.points("engram.operation.duration") == []
    assert otel.points("gen_ai.client.operation.duration") == []


async def test_public_properties_are_the_providers_themselves(otel: Otel) -> None:
    vector = MemoryVectorStore()
    async with otel.memory({"vector_store": vector, "embedder": "hash"}) as mem:
        assert mem.vector_store is vector and isinstance(mem._vector, TracedVectorStore)
        assert isinstance(mem._embedder, TracedEmbedder) and mem.embedder is unwrap(mem._embedder)
        assert mem.history_store is unwrap(mem._history)
        # the proxies forward what they do not define, and keep the protocol's shape
        assert mem._vector.capabilities == vector.capabilities and mem._embedder.dims == 384
        from engram.core import Embedder, VectorStore

        assert isinstance(mem._vector, VectorStore) and isinstance(mem._embedder, Embedder)


async def test_in_store_history_is_closed_once(otel: Otel) -> None:
    closed: list[str] = []
    async with otel.memory(sqlite_config()) as mem:
        store = mem.vector_store
        assert mem.history_store is store and mem._history_in_store
        assert mem._history is not mem._vector  # two proxies, one provider
        real_aclose = store.aclose

        async def aclose() -> None:
            closed.append("vector")
            await real_aclose()

        store.aclose = aclose  # type: ignore[method-assign]
        await mem.add("x", user_id=USER, infer=False)
    assert closed == ["vector"]
    # history events went to the vector store itself (no separate history write span)
    assert "engram.history_store.add_events" not in {s.name for s in otel.spans()}


async def test_a_reranker_gets_its_span(otel: Otel) -> None:
    class Reranker:
        async def rerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> list[Any]:
            ranked = sorted(range(len(documents)), key=lambda i: -len(documents[i]))
            return [(i, float(len(documents[i]))) for i in ranked][:top_n]

        async def aclose(self) -> None:
            return None

    tel = get_telemetry(otel.tracer_provider, otel.meter_provider)
    reranker = traced("reranker", Reranker(), {"provider": "cohere", "config": {}}, tel)
    with otel.tracer_provider.get_tracer("t").start_as_current_span("parent"):
        assert await reranker.rerank("q", ["a", "ccc", "bb"], top_n=2) == [(1, 3.0), (2, 2.0)]
    span = otel.one("engram.reranker.rerank")
    a = attrs(span)
    assert span.kind == SpanKind.CLIENT and a["engram.provider"] == "cohere"
    assert (a["engram.rerank.documents"], a["engram.rerank.top_n"], a["engram.results.count"]) == (3, 2, 2)
    assert span.parent is not None and span.parent.span_id == otel.one("parent").context.span_id


async def test_nothing_is_computed_for_spans_that_do_not_record(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no SDK (the API's no-op providers) the add's outcome attributes are never built."""
    from engram.core import _memory
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.trace import NoOpTracerProvider

    def boom(*a: Any) -> Any:
        raise AssertionError("attributes built for a span that does not record")

    monkeypatch.setattr(_memory, "_add_attributes", boom)
    mem = AsyncMemory(sqlite_config(), tracer_provider=NoOpTracerProvider(), meter_provider=NoOpMeterProvider())
    async with mem:
        assert len((await mem.add("I like tea", user_id=USER, infer=False))["results"]) == 1


# -- with no SDK at all ------------------------------------------------------------------------

NO_SDK_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys
    from engram.core import AsyncMemory
    from engram.llm.scripted import ScriptedLLM
    from opentelemetry import trace

    FACTS = json.dumps({"facts": ["Likes tea", "Lives in Paris"]})
    DECIDE = json.dumps({"actions": [{"fact": 0, "event": "NONE"},
                                     {"fact": 1, "event": "UPDATE", "id": 0, "text": "Lives in Paris, France"}]})

    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("id", "created_at", "updated_at", "archived_at")}
        if isinstance(value, list) and value and all(isinstance(v, dict) and "memory" in v for v in value):
            # memories tied in score are ordered by their random ids: compare them as a set
            return sorted((strip(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    async def run(telemetry):
        llm = ScriptedLLM(replies=[FACTS, FACTS, DECIDE])
        cfg = {"vector_store": "sqlite:///:memory:", "embedder": "hash", "llm": llm, "telemetry": telemetry}
        async with AsyncMemory(cfg) as mem:
            out = [await mem.add("I like tea and live in Paris", user_id="u")]
            out.append(await mem.add("I like tea and live in Paris", user_id="u"))
            out.append(await mem.add(["verbatim one", "verbatim two"], user_id="u", infer=False))
            out.append(await mem.search("where do I live", user_id="u"))
            out.append(await mem.get_all(user_id="u"))
            out.append(await mem.count(user_id="u"))
            return strip(out)

    assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"
    off, on = asyncio.run(run(False)), asyncio.run(run(True))
    print(json.dumps({"same": off == on, "off": off}))
    assert "opentelemetry.sdk" not in sys.modules
    """
)


def test_with_no_sdk_configured_results_are_identical_to_telemetry_off() -> None:
    """In a fresh interpreter (no test has set a global provider there): the API's default no-op
    providers, telemetry on versus off, the same results; and the SDK is never imported."""
    proc = subprocess.run([sys.executable, "-c", NO_SDK_SCRIPT], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["same"] is True
    assert [r["event"] for r in got["off"][1]["results"]] == ["UPDATE"]
    assert got["off"][3]["results"], "the search found nothing"


GLOBAL_SCRIPT = textwrap.dedent(
    """
    import asyncio, json
    from engram.core import AsyncMemory
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    async def main():
        async with AsyncMemory({"vector_store": "memory", "embedder": "hash"}) as mem:
            await mem.add("before", user_id="u", infer=False)   # no provider yet: nothing recorded
            exporter = InMemorySpanExporter()
            provider = TracerProvider()
            provider.add_span_processor(SimpleSpanProcessor(exporter))
            trace.set_tracer_provider(provider)                   # set later, as configure_otlp does
            await mem.add("after", user_id="u", infer=False)
            return sorted(s.name for s in exporter.get_finished_spans())

    print(json.dumps(asyncio.run(main())))
    """
)


def test_a_global_provider_set_later_is_picked_up() -> None:
    proc = subprocess.run([sys.executable, "-c", GLOBAL_SCRIPT], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [
        "embeddings", "engram.add", "engram.history_store.add_events", "engram.vector_store.write"
    ]
