"""engram's own spans and metrics over the wire: an AsyncMemory add (verbatim, and inferred with the
scripted LLM) and a search, exported by configure_otlp over OTLP/HTTP and OTLP/gRPC to a real receiver
on 127.0.0.1 and decoded from protobuf: span names, parent links (every provider span's chain reaches
the operation span, all in one trace), kinds and the contract's attributes (docs/telemetry.md)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from engram.core import AsyncMemory, LLMResponse
from engram.llm.scripted import ScriptedLLM
from engram.telemetry._otlp import OTLPExport, configure_otlp
from engram.testing.otlp_receiver import OTLPReceiver, ReceivedSpan, otlp_receiver

USER = "maya-5e1f0c"  # an id that must never appear in an exported attribute
AGENT = "coach-77a1"


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    yield from otlp_receiver.__wrapped__()  # type: ignore[attr-defined]


@pytest.fixture(params=["http/protobuf", "grpc"])
def export(
    request: pytest.FixtureRequest, receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch
) -> Iterator[OTLPExport]:
    """Export to the receiver; the arguments win over any OTEL_* variable but these two."""
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_HEADERS", raising=False)
    protocol = request.param
    with configure_otlp(
        receiver.endpoint(protocol),
        protocol=protocol,
        service_name="engram-e2e",
        metric_export_interval=3600,  # only the explicit flush exports
        set_global=False,  # the process's globals stay free; the providers go to AsyncMemory
    ) as made:
        yield made


def _memory(export: OTLPExport, **config: Any) -> AsyncMemory:
    return AsyncMemory(
        {"vector_store": "sqlite:///:memory:", "embedder": "hash", **config},
        tracer_provider=export.tracer_provider,
        meter_provider=export.meter_provider,
    )


def _tree(receiver: OTLPReceiver, op: str) -> tuple[ReceivedSpan, list[ReceivedSpan]]:
    """The one ``engram.<op>`` span and all spans whose parent chain reaches it."""
    [root] = receiver.wait_for_spans(1, name=f"engram.{op}", timeout=5)
    assert root.parent_span_id is None and root.kind == "INTERNAL" and root.status_code == "UNSET"
    assert (root.scope, root.resource["service.name"]) == ("engram", "engram-e2e")
    below = [s for s in receiver.spans if root in receiver.ancestors(s)]
    return root, below


def _check_common(receiver: OTLPReceiver, root: ReceivedSpan, below: list[ReceivedSpan]) -> None:
    # every span received belongs to this operation: one trace, no orphans
    assert {s.span_id for s in receiver.spans} == {root.span_id} | {s.span_id for s in below}
    assert {s.trace_id for s in receiver.spans} == {root.trace_id}
    for span in below:
        assert span.kind == "CLIENT", span.name
        assert span.scope == "engram"
        assert USER not in json.dumps(span.attributes) and AGENT not in json.dumps(span.attributes)
    assert USER not in json.dumps(root.attributes)


async def test_add_verbatim(receiver: OTLPReceiver, export: OTLPExport) -> None:
    async with _memory(export) as mem:
        out = await mem.add("I drink green tea every morning", user_id=USER, infer=False)
    assert export.force_flush(5)
    root, below = _tree(receiver, "add")
    _check_common(receiver, root, below)
    a = root.attributes
    assert a["engram.operation"] == "add" and a["engram.scope.kind"] == "user"
    assert (a["engram.add.infer"], a["engram.add.messages"]) == (False, 1)
    assert (a["engram.actions.add"], a["engram.actions.update"], a["engram.actions.delete"]) == (1, 0, 0)
    assert a["engram.results.count"] == len(out["results"]) == 1
    by_name = {s.name: s for s in below}
    embed = by_name["embeddings"]  # the hash embedder has no model name
    assert embed.parent_span_id == root.span_id
    assert embed.attributes["gen_ai.operation.name"] == "embeddings"
    assert embed.attributes["gen_ai.provider.name"] == embed.attributes["gen_ai.system"] == "hash"
    assert embed.attributes["engram.embed.count"] == 1 and embed.attributes["engram.embed.kind"] == "document"
    assert embed.attributes["gen_ai.embeddings.dimension.count"] > 0
    write = by_name["engram.vector_store.write"]
    assert write.parent_span_id == root.span_id
    assert write.attributes["db.operation.name"] == "write"
    assert write.attributes["db.system.name"] == write.attributes["engram.provider"] == "sqlite"
    assert (write.attributes["engram.write.upserts"], write.attributes["engram.write.deletes"]) == (1, 0)
    [duration] = receiver.wait_for_metric("engram.operation.duration", timeout=5)
    assert (duration.unit, duration.type, duration.count) == ("s", "histogram", 1)
    assert duration.attributes == {"engram.operation": "add"}
    assert (
        duration.sum is not None
        and 0 < duration.sum < 30
        and duration.resource["service.name"] == "engram-e2e"
    )


async def test_search(receiver: OTLPReceiver, export: OTLPExport) -> None:
    async with _memory(export) as mem:
        await mem.add("I drink green tea every morning", user_id=USER, infer=False)
        await mem.add("My sister lives in Lisbon", user_id=USER, infer=False)
        assert export.force_flush(5)
        receiver.clear()
        found = await mem.search("what do I drink?", user_id=USER, limit=3)
    assert export.force_flush(5)
    root, below = _tree(receiver, "search")
    _check_common(receiver, root, below)
    a = root.attributes
    assert a["engram.operation"] == "search" and a["engram.scope.kind"] == "user"
    assert a["engram.search.limit"] == 3
    assert a["engram.results.count"] == len(found["results"]) == 2
    # a string array survives the protobuf round trip as a list
    assert isinstance(a["engram.search.paths"], list) and "dense" in a["engram.search.paths"]
    assert set(a["engram.search.paths"]) <= {"dense", "lexical", "entity", "graph", "archive", "neighbors"}
    names = [s.name for s in below]
    assert "embeddings" in names and "engram.vector_store.search" in names
    query_embed = next(s for s in below if s.name == "embeddings")
    assert query_embed.attributes["engram.embed.kind"] == "query"
    for search in (s for s in below if s.name == "engram.vector_store.search"):
        assert search.attributes["db.operation.name"] == "search"
        assert isinstance(search.attributes["engram.results.count"], int)
    points = receiver.wait_for_metric(
        "engram.operation.duration", where=lambda p: p.attributes == {"engram.operation": "search"}, timeout=5
    )
    assert points[-1].count == 1


def _facts(*texts: str, input_tokens: int, output_tokens: int) -> LLMResponse:
    body = {"facts": [{"text": t, "type": "preference", "category": "preference"} for t in texts]}
    return LLMResponse(
        text=json.dumps(body), model="scripted-x", input_tokens=input_tokens, output_tokens=output_tokens
    )


async def test_add_inferred_with_the_scripted_llm(receiver: OTLPReceiver, export: OTLPExport) -> None:
    decide = LLMResponse(
        text=json.dumps({"actions": [{"fact": 0, "event": "UPDATE", "id": 0, "text": "Drinks green tea"}]}),
        model="scripted-y",
        input_tokens=210,
        output_tokens=17,
    )
    llm = ScriptedLLM(
        replies=[
            _facts("Drinks tea", input_tokens=90, output_tokens=8),
            _facts("Drinks green tea", input_tokens=95, output_tokens=9),
            decide,
        ]
    )
    async with _memory(export, llm=llm) as mem:
        await mem.add("I drink tea", user_id=USER, agent_id=AGENT)
        assert export.force_flush(5)
        receiver.clear()
        out = await mem.add("These days I drink green tea", user_id=USER, agent_id=AGENT)
    assert [r["event"] for r in out["results"]] == ["UPDATE"]
    assert export.force_flush(5)
    root, below = _tree(receiver, "add")
    _check_common(receiver, root, below)
    a = root.attributes
    assert (a["engram.scope.kind"], a["engram.add.infer"]) == ("user+agent", True)
    assert (a["engram.actions.add"], a["engram.actions.update"], a["engram.actions.delete"]) == (0, 1, 0)
    chats = {s.attributes["engram.llm.task"]: s for s in below if s.name == "chat scripted"}
    assert set(chats) == {"extract_facts", "decide"}
    for chat in chats.values():
        c = chat.attributes
        assert (c["gen_ai.operation.name"], c["gen_ai.system"], c["gen_ai.provider.name"]) == (
            "chat",
            "scripted",
            "scripted",
        )
        assert c["gen_ai.request.model"] == "scripted" and c["gen_ai.output.type"] == "json"
    extract, decided = chats["extract_facts"].attributes, chats["decide"].attributes
    assert (extract["gen_ai.usage.input_tokens"], extract["gen_ai.usage.output_tokens"]) == (95, 9)
    assert (decided["gen_ai.usage.input_tokens"], decided["gen_ai.usage.output_tokens"]) == (210, 17)
    assert (extract["gen_ai.response.model"], decided["gen_ai.response.model"]) == (
        "scripted-x",
        "scripted-y",
    )
    # the token histogram, by type, for the decide call of this add (cumulative since the first add)
    tokens = receiver.wait_for_metric("gen_ai.client.token.usage", timeout=5)
    assert {p.unit for p in tokens} == {"{token}"}
    by_type = {
        p.attributes["gen_ai.token.type"]: p
        for p in tokens
        if p.attributes.get("gen_ai.request.model") == "scripted"
        and p.attributes["gen_ai.operation.name"] == "chat"
    }
    assert set(by_type) == {"input", "output"}
    # first add: extract 90/8 (one fact, no stored memories: no decide call); second: 95/9 + 210/17
    assert (by_type["input"].sum, by_type["output"].sum) == (90 + 95 + 210, 8 + 9 + 17)
