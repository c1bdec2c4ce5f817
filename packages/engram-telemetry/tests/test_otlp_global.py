"""configure_otlp(set_global=True), each case in a fresh Python process (OpenTelemetry's global
providers can be set once per process): the API's globals become the export's providers, a second
call raises, an application's own global provider is left alone, and spans still waiting in the
batch at exit are flushed by the atexit hook."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
from engram.testing.otlp_receiver import OTLPReceiver, otlp_receiver


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    yield from otlp_receiver.__wrapped__()  # type: ignore[attr-defined]


def _python(code: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **env},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_global_providers_and_flush_at_exit(receiver: OTLPReceiver, protocol: str) -> None:
    out = _python(
        """
        import os
        from opentelemetry import metrics, trace
        from engram.telemetry import configure_otlp

        export = configure_otlp(os.environ["ENDPOINT"], protocol=os.environ["PROTOCOL"], service_name="glob")
        assert export.is_global
        assert trace.get_tracer_provider() is export.tracer_provider
        assert metrics.get_meter_provider() is export.meter_provider
        try:
            configure_otlp(os.environ["ENDPOINT"], protocol=os.environ["PROTOCOL"])
        except RuntimeError as exc:
            print("second:", exc)
        # providers of one's own are still possible, and the globals are unchanged
        other = configure_otlp(os.environ["ENDPOINT"], set_global=False)
        assert not other.is_global and trace.get_tracer_provider() is export.tracer_provider
        other.shutdown()
        # through the API's globals, as a library would; no flush: the atexit hook sends them
        with trace.get_tracer("app").start_as_current_span("app-root"):
            with trace.get_tracer("lib").start_as_current_span("lib-child"):
                pass
        metrics.get_meter("app").create_counter("app.requests").add(5)
        """,
        ENDPOINT=receiver.endpoint(protocol),
        PROTOCOL=protocol,
    )
    assert "second: configure_otlp(set_global=True) already ran in this process" in out
    assert f"exporting to {receiver.endpoint(protocol)} over {protocol}" in out
    root = receiver.wait_for_spans(1, name="app-root", timeout=5)[0]
    [child] = receiver.children(root)
    assert (child.name, child.scope, root.resource["service.name"]) == ("lib-child", "lib", "glob")
    assert receiver.wait_for_metric("app.requests", timeout=5)[-1].value == 5


def test_an_applications_own_global_provider_is_left_alone(receiver: OTLPReceiver) -> None:
    out = _python(
        """
        import os
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.trace import TracerProvider
        from engram.telemetry import configure_otlp

        mine = TracerProvider()
        trace.set_tracer_provider(mine)
        try:
            configure_otlp(os.environ["ENDPOINT"])
        except RuntimeError as exc:
            print("refused:", exc)
        assert trace.get_tracer_provider() is mine
        assert type(metrics.get_meter_provider()).__name__ == "_ProxyMeterProvider"  # not set either
        # metrics only: the meter provider is still free
        export = configure_otlp(os.environ["ENDPOINT"], traces=False)
        assert metrics.get_meter_provider() is export.meter_provider
        print("metrics global:", export.is_global)
        """,
        ENDPOINT=receiver.http_endpoint,
    )
    assert "refused: a global OpenTelemetry tracer provider (TracerProvider) is already set" in out
    assert "Pass set_global=False" in out
    assert "metrics global: True" in out


def test_the_variables_alone_with_the_global_providers(receiver: OTLPReceiver) -> None:
    _python(
        """
        from opentelemetry import trace
        from engram.telemetry import configure_otlp

        configure_otlp()
        with trace.get_tracer("env").start_as_current_span("from-env"):
            pass
        """,
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.grpc_endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
        OTEL_SERVICE_NAME="env-svc",
    )
    span = receiver.wait_for_spans(1, name="from-env", timeout=5)[0]
    assert (span.transport, span.resource["service.name"]) == ("grpc", "env-svc")


def test_engram_picks_up_global_providers_set_after_it_started(receiver: OTLPReceiver) -> None:
    """An AsyncMemory made before configure_otlp still exports: engram asks the API's globals lazily."""
    _python(
        """
        import asyncio, os
        from engram.core import AsyncMemory
        from engram.telemetry import configure_otlp

        async def main():
            mem = AsyncMemory({"vector_store": "sqlite:///:memory:", "embedder": "hash"})
            await mem.add("I drink tea", user_id="u1", infer=False)  # before: not exported
            configure_otlp(os.environ["ENDPOINT"], service_name="late")
            await mem.add("I drink coffee too", user_id="u1", infer=False)
            await mem.aclose()

        asyncio.run(main())
        """,
        ENDPOINT=receiver.http_endpoint,
    )
    [add] = receiver.wait_for_spans(1, name="engram.add", timeout=5)
    assert add.resource["service.name"] == "late" and add.attributes["engram.add.messages"] == 1
    assert {s.trace_id for s in receiver.spans} == {add.trace_id}
    assert "embeddings" in {s.name for s in receiver.children(add)}
