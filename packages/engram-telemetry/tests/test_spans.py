"""engram.telemetry's span scopes on their own, read back through the SDK's in-memory exporter."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import anyio
import pytest
from engram.telemetry import (
    GenAIClient,
    Telemetry,
    current_llm_task,
    error_type,
    get_telemetry,
    llm_task,
)
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode


@pytest.fixture
def traced() -> Iterator[tuple[Telemetry, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield Telemetry(tracer_provider=provider), exporter
    provider.shutdown()


def test_operation_span_name_kind_scope_and_children(traced: tuple[Telemetry, InMemorySpanExporter]) -> None:
    tel, exporter = traced

    class Scope:
        kind = "user+run"

    with tel.operation("search") as op:
        assert op.recording
        op.set_scope(Scope())
        op.set("engram.search.limit", 5)
        with tel.client_span("engram.vector_store.search", {"db.system.name": "sqlite"}) as call:
            assert trace.get_current_span() is call.span
    child, parent = exporter.get_finished_spans()
    assert (parent.name, parent.kind, child.kind) == ("engram.search", SpanKind.INTERNAL, SpanKind.CLIENT)
    assert dict(parent.attributes) == {
        "engram.operation": "search", "engram.scope.kind": "user+run", "engram.search.limit": 5
    }
    assert child.parent is not None and child.parent.span_id == parent.context.span_id
    assert dict(child.attributes) == {"db.system.name": "sqlite"}
    assert trace.get_current_span() is trace.INVALID_SPAN  # detached again


def test_an_escaping_exception_is_recorded_and_reraised(traced: tuple[Telemetry, InMemorySpanExporter]) -> None:
    tel, exporter = traced
    with pytest.raises(KeyError), tel.operation("get"):
        raise KeyError("x")
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR and span.status.description == "KeyError: 'x'"
    assert span.attributes["error.type"] == "KeyError"
    assert [e.name for e in span.events] == ["exception"]


def test_error_type_is_module_qualified_except_builtins() -> None:
    class Local(Exception):
        pass

    assert error_type(TimeoutError()) == "TimeoutError"
    assert error_type(Local()) == f"{__name__}.test_error_type_is_module_qualified_except_builtins.<locals>.Local"


def test_genai_span_names_and_usage(traced: tuple[Telemetry, InMemorySpanExporter]) -> None:
    tel, exporter = traced
    chat = GenAIClient(tel, "chat", "openai", "gpt-x")
    with chat.span() as s:
        s.usage(chat, "gpt-x-2025", 12, 3)
    bare = GenAIClient(tel, "embeddings", "hash", None)
    with bare.span():
        pass
    first, second = exporter.get_finished_spans()
    assert (first.name, second.name) == ("chat gpt-x", "embeddings")
    assert dict(first.attributes) == {
        "gen_ai.operation.name": "chat", "gen_ai.system": "openai", "gen_ai.provider.name": "openai",
        "engram.provider": "openai", "gen_ai.request.model": "gpt-x", "gen_ai.response.model": "gpt-x-2025",
        "gen_ai.usage.input_tokens": 12, "gen_ai.usage.output_tokens": 3,
    }
    assert "gen_ai.request.model" not in second.attributes and second.kind == SpanKind.CLIENT


async def test_llm_task_reaches_tasks_started_inside_and_is_reset() -> None:
    seen: list[str | None] = []

    async def child() -> None:
        seen.append(current_llm_task())

    with llm_task("decide"):
        async with anyio.create_task_group() as tg:
            tg.start_soon(child)
    seen.append(current_llm_task())
    assert seen == ["decide", None]


def test_the_default_telemetry_is_shared_and_uses_the_api_globals() -> None:
    assert get_telemetry() is get_telemetry()
    assert get_telemetry(tracer_provider=TracerProvider()) is not get_telemetry()


def test_importing_the_package_never_imports_the_sdk() -> None:
    code = (
        "import sys, engram.telemetry as t\n"
        "assert 'opentelemetry.sdk' not in sys.modules\n"
        "with t.get_telemetry().operation('add') as op: assert not op.recording\n"
        "assert 'opentelemetry.sdk' not in sys.modules\n"
        "assert callable(t.configure_otlp) and t.OTLPExport.__name__ == 'OTLPExport'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
