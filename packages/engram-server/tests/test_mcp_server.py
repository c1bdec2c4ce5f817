"""``create_server`` in process (the SDK's in-memory client): telemetry, arguments, the lifespan."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from engram.core import AsyncMemory
from engram.core.errors import ConfigurationError, InvalidScopeError, ProviderError, ProviderTimeoutError
from engram.server.mcp import create_server
from mcp import Client
from mcp.types import CallToolResult
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode


def _config(tmp_path: Path) -> dict[str, Any]:
    return {"vector_store": f"sqlite:///{tmp_path / 'e.db'}", "embedder": "hash"}


async def test_one_span_per_tool_call_parent_of_the_engine_span(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    server = create_server(_config(tmp_path), default_scope={"user_id": "maya"}, tracer_provider=provider)
    async with Client(server) as client:
        ok = await client.call_tool("search_memory", {"query": "anything"})
        bad = await client.call_tool("get_memory", {"memory_id": "missing"})
    assert isinstance(ok, CallToolResult) and not ok.is_error
    assert isinstance(bad, CallToolResult) and bad.is_error
    spans = exporter.get_finished_spans()
    tools = [s for s in spans if s.name.startswith("execute_tool ")]
    assert [s.name for s in tools] == ["execute_tool search_memory", "execute_tool get_memory"]
    search, get = tools
    assert search.kind is SpanKind.INTERNAL
    assert search.instrumentation_scope is not None and search.instrumentation_scope.name == "engram"
    assert dict(search.attributes or {}) == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "search_memory",
    }
    assert search.status.status_code is StatusCode.UNSET
    assert get.status.status_code is StatusCode.ERROR
    assert (get.attributes or {})["error.type"] == "engram.core.errors.MemoryNotFoundError"
    assert [e.name for e in get.events] == ["exception"]
    # The engine's operation span is the tool span's child.
    (op,) = [s for s in spans if s.name == "engram.search"]
    assert op.parent is not None and op.parent.span_id == search.context.span_id
    provider.shutdown()


async def test_a_memory_passed_in_is_used_and_left_open(tmp_path: Path) -> None:
    async with AsyncMemory(_config(tmp_path)) as mem:
        await mem.add("Kept outside the server", user_id="ana", infer=False)
        server = create_server(mem)
        async with Client(server) as client:
            result = await client.call_tool("list_memories", {"user_id": "ana"})
            missing = await client.call_tool("list_memories", {})
        assert isinstance(result, CallToolResult)
        assert [m["memory"] for m in result.structured_content["results"]] == ["Kept outside the server"]  # type: ignore[index]
        assert isinstance(missing, CallToolResult) and missing.is_error
        assert "InvalidScopeError: no scope" in missing.content[0].text  # type: ignore[union-attr]
        assert await mem.count() == 1  # still open after the server stopped


async def test_full_reset_when_allowed(tmp_path: Path) -> None:
    server = create_server(_config(tmp_path), allow_full_reset=True)
    async with Client(server) as client:
        for user in ("a", "b"):
            await client.call_tool("add_memory", {"messages": f"fact of {user}", "user_id": user})
        refused = await client.call_tool("reset_memories", {"everything": True})
        mixed = await client.call_tool(
            "reset_memories", {"everything": True, "confirm": True, "user_id": "a"}
        )
        done = await client.call_tool("reset_memories", {"everything": True, "confirm": True})
        left = await client.call_tool("list_memories", {"user_id": "a"})
    assert isinstance(refused, CallToolResult) and refused.is_error
    assert "would delete all 2 memories of every scope" in refused.content[0].text  # type: ignore[union-attr]
    assert isinstance(mixed, CallToolResult) and mixed.is_error
    assert isinstance(done, CallToolResult) and done.structured_content == {
        "deleted": 2,
        "scope": None,
        "message": "Reset: deleted 2 memories and all history",
    }
    assert isinstance(left, CallToolResult) and left.structured_content["results"] == []  # type: ignore[index]


def test_bad_default_scope_is_refused() -> None:
    with pytest.raises(InvalidScopeError):
        create_server(None, default_scope={"user_id": ""})
    with pytest.raises(ConfigurationError, match="user_id, agent_id and run_id"):
        create_server(None, default_scope={"user": "maya"})


@pytest.mark.parametrize(
    ("exc", "shown"),
    [
        (
            ProviderError("connect to db-host-7.internal:6333 failed: secret reply", provider="qdrant"),
            "ProviderError: the qdrant provider failed; see the server log",
        ),
        (
            ProviderTimeoutError("db-host-7.internal timed out after 30 s", provider="openai"),
            "ProviderTimeoutError: the openai provider did not answer in time; see the server log",
        ),
        (
            ProviderError("/var/lib/secret/x.db is locked"),
            "ProviderError: a provider failed; see the server log",
        ),
        (
            ExceptionGroup("tg", [ProviderError("db-host-7.internal refused", provider="neo4j")]),
            "ProviderError: the neo4j provider failed; see the server log",
        ),
    ],
)
async def test_provider_errors_name_only_the_provider(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    exc: BaseException,
    shown: str,
) -> None:
    """A provider's message can carry hosts, paths or a server's reply: the client sees only the
    provider's name; the details go to the server's log."""
    async with AsyncMemory(_config(tmp_path)) as mem:

        async def boom(*_: Any, **__: Any) -> Any:
            raise exc

        monkeypatch.setattr(mem, "search", boom)  # a real provider failure needs a remote server
        async with Client(create_server(mem, default_scope={"user_id": "u"})) as client:
            with caplog.at_level(logging.ERROR, logger="engram.server.mcp"):
                result = await client.call_tool("search_memory", {"query": "q"})
    assert isinstance(result, CallToolResult) and result.is_error
    assert [c.text for c in result.content] == [shown]  # type: ignore[union-attr]
    (record,) = [r for r in caplog.records if r.name == "engram.server.mcp"]
    assert record.exc_info is not None
    detail = str(record.exc_info[1]) + "".join(str(e) for e in getattr(record.exc_info[1], "exceptions", ()))
    assert "db-host-7" in detail or "/var/lib/secret" in detail


async def test_input_errors_keep_their_message(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    server = create_server(_config(tmp_path), default_scope={"user_id": "u"})
    async with Client(server) as client:
        with caplog.at_level(logging.ERROR, logger="engram.server.mcp"):
            bad = await client.call_tool("search_memory", {"query": "q", "filters": {"topic": {"near": 1}}})
    assert isinstance(bad, CallToolResult) and bad.is_error
    assert bad.content[0].text.startswith("InvalidFilterError: ")  # type: ignore[union-attr]
    assert "near" in bad.content[0].text  # type: ignore[union-attr]
    assert not [r for r in caplog.records if r.name == "engram.server.mcp"]  # not a server failure
