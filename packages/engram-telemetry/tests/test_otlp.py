"""configure_otlp against a real OTLP receiver on 127.0.0.1 (engram.testing.otlp_receiver), over HTTP and
gRPC: spans and metrics arrive and decode, the resource, headers and the OTEL_* variables apply, bad
input is refused before anything is set up, and a missing SDK names the extra to install.

These tests keep OpenTelemetry's global providers untouched (``set_global=False``): globals can be
set once per process, so the checks that set them run in a subprocess (test_otlp_global.py)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest
from engram.telemetry._otlp import OTLPExport, configure_otlp
from engram.testing.otlp_receiver import OTLPReceiver, otlp_receiver
from opentelemetry import metrics as otel_metrics
from opentelemetry import trace as otel_trace

PROTOCOLS = ["http/protobuf", "grpc"]


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    yield from otlp_receiver.__wrapped__()  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def _clean_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No OTEL_* variable from the developer's shell changes what these tests configure."""
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


@pytest.fixture
def exports() -> Iterator[list[OTLPExport]]:
    """Exports made by a test are shut down after it (their exporters hold threads and channels)."""
    made: list[OTLPExport] = []
    yield made
    for export in made:
        export.shutdown(timeout=2)


def _emit(export: OTLPExport) -> None:
    """Two nested spans and a histogram point through the export's own providers."""
    assert export.tracer_provider is not None and export.meter_provider is not None
    tracer = export.tracer_provider.get_tracer("engram", "9.9")
    with tracer.start_as_current_span("outer", attributes={"engram.operation": "add", "n": 3}):
        with tracer.start_as_current_span("inner", kind=otel_trace.SpanKind.CLIENT):
            pass
    histogram = export.meter_provider.get_meter("engram").create_histogram(
        "engram.operation.duration", unit="s"
    )
    histogram.record(0.25, {"engram.operation": "add"})
    assert export.force_flush(timeout=5)


def _check_arrived(receiver: OTLPReceiver, transport: str) -> None:
    outer = receiver.wait_for_spans(1, name="outer", timeout=5)[0]
    inner = receiver.wait_for_spans(1, name="inner", timeout=5)[0]
    assert inner.parent_span_id == outer.span_id and inner.trace_id == outer.trace_id
    assert (outer.kind, inner.kind) == ("INTERNAL", "CLIENT")
    assert outer.attributes == {"engram.operation": "add", "n": 3}
    assert (outer.scope, outer.scope_version) == ("engram", "9.9")
    assert outer.transport == inner.transport == transport
    [point] = receiver.wait_for_metric("engram.operation.duration", timeout=5)
    assert (point.type, point.unit, point.count, point.sum) == ("histogram", "s", 1, 0.25)
    assert point.attributes == {"engram.operation": "add"} and point.transport == transport


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_spans_and_metrics_arrive(receiver: OTLPReceiver, exports: list[OTLPExport], protocol: str) -> None:
    endpoint = receiver.endpoint(protocol)
    export = configure_otlp(
        endpoint,
        protocol=protocol,
        headers={"X-Api-Key": "s3cret"},
        service_name="my-agent",
        set_global=False,
        metric_export_interval=3600,  # only force_flush exports, so the test sees one point
    )
    exports.append(export)
    assert (export.endpoint, export.protocol, export.enabled, export.is_global) == (
        endpoint,
        protocol,
        True,
        False,
    )
    if protocol == "grpc":
        assert export.traces_endpoint == export.metrics_endpoint == endpoint
    else:
        assert export.traces_endpoint == endpoint + "/v1/traces"
        assert export.metrics_endpoint == endpoint + "/v1/metrics"
    _emit(export)
    transport = "grpc" if protocol == "grpc" else "http"
    _check_arrived(receiver, transport)
    assert export.service_name == "my-agent"
    for item in [*receiver.spans, *receiver.metric_points]:
        assert item.resource["service.name"] == "my-agent"
        assert item.headers["x-api-key"] == "s3cret"
    assert {r.signal for r in receiver.requests} == {"traces", "metrics"}


def test_the_endpoint_is_a_base_url_with_or_without_a_slash(
    receiver: OTLPReceiver, exports: list[OTLPExport]
) -> None:
    export = configure_otlp(receiver.http_endpoint + "/", set_global=False)
    exports.append(export)
    assert export.traces_endpoint == receiver.http_endpoint + "/v1/traces"
    _emit(export)
    _check_arrived(receiver, "http")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_configured_by_the_variables_alone(
    receiver: OTLPReceiver, exports: list[OTLPExport], monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint(protocol))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=acme,authorization=Bearer%20t0k")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test,service.version=1.2")
    export = configure_otlp(set_global=False)
    exports.append(export)
    assert (export.endpoint, export.protocol, export.service_name) == (
        receiver.endpoint(protocol),
        protocol,
        "from-env",
    )
    _emit(export)
    _check_arrived(receiver, "grpc" if protocol == "grpc" else "http")
    for item in [*receiver.spans, *receiver.metric_points]:
        assert item.resource["service.name"] == "from-env"
        assert item.resource["deployment.environment.name"] == "test"
        assert item.resource["service.version"] == "1.2"
        assert item.headers["x-tenant"] == "acme" and item.headers["authorization"] == "Bearer t0k"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_header_argument_adds_to_the_variables(
    receiver: OTLPReceiver, exports: list[OTLPExport], monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=acme,x-both=env")
    export = configure_otlp(
        receiver.endpoint(protocol), protocol=protocol, headers={"X-Both": "arg"}, set_global=False
    )
    exports.append(export)
    _emit(export)
    for span in receiver.wait_for_spans(2, timeout=5):
        assert (span.headers["x-tenant"], span.headers["x-both"]) == ("acme", "arg")


def test_service_name_argument_wins_over_the_variable(
    receiver: OTLPReceiver, exports: list[OTLPExport], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    export = configure_otlp(receiver.http_endpoint, service_name="from-arg", set_global=False)
    exports.append(export)
    _emit(export)
    assert {s.resource["service.name"] for s in receiver.wait_for_spans(2, timeout=5)} == {"from-arg"}


def test_default_service_name_is_the_sdks(exports: list[OTLPExport], receiver: OTLPReceiver) -> None:
    export = configure_otlp(receiver.http_endpoint, set_global=False)
    exports.append(export)
    assert export.service_name.startswith("unknown_service")


def test_endpoint_argument_wins_over_every_endpoint_variable(
    receiver: OTLPReceiver, exports: list[OTLPExport], monkeypatch: pytest.MonkeyPatch
) -> None:
    nowhere = "http://127.0.0.1:9"  # the discard port: nothing listens there
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", nowhere)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", nowhere + "/v1/traces")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", nowhere + "/v1/metrics")
    export = configure_otlp(receiver.http_endpoint, set_global=False)
    exports.append(export)
    _emit(export)
    _check_arrived(receiver, "http")


def test_signal_variable_is_a_full_url_over_http(
    receiver: OTLPReceiver, exports: list[OTLPExport], monkeypatch: pytest.MonkeyPatch
) -> None:
    """OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is used as given (the spec: no path is appended), while
    metrics follow OTEL_EXPORTER_OTLP_ENDPOINT plus /v1/metrics."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.http_endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", receiver.http_endpoint + "/v1/traces")
    export = configure_otlp(set_global=False)
    exports.append(export)
    assert export.traces_endpoint == receiver.http_endpoint + "/v1/traces"
    assert export.metrics_endpoint == receiver.http_endpoint + "/v1/metrics"
    _emit(export)
    _check_arrived(receiver, "http")


def test_traces_only_and_metrics_only(receiver: OTLPReceiver, exports: list[OTLPExport]) -> None:
    traces_only = configure_otlp(receiver.http_endpoint, metrics=False, set_global=False)
    metrics_only = configure_otlp(receiver.http_endpoint, traces=False, set_global=False)
    exports += [traces_only, metrics_only]
    assert traces_only.meter_provider is None and traces_only.metrics_endpoint is None
    assert metrics_only.tracer_provider is None and metrics_only.traces_endpoint is None
    assert traces_only.tracer_provider is not None and metrics_only.meter_provider is not None
    with traces_only.tracer_provider.get_tracer("t").start_as_current_span("only-span"):
        pass
    metrics_only.meter_provider.get_meter("m").create_counter("only.counter").add(2)
    assert traces_only.force_flush(5) and metrics_only.force_flush(5)
    receiver.wait_for_spans(1, name="only-span", timeout=5)
    assert receiver.wait_for_metric("only.counter", timeout=5)[-1].value == 2
    assert {(r.signal, r.items) for r in receiver.requests} == {("traces", 1), ("metrics", 1)}


def test_metrics_export_on_the_interval(receiver: OTLPReceiver, exports: list[OTLPExport]) -> None:
    export = configure_otlp(
        receiver.http_endpoint, traces=False, metric_export_interval=0.05, set_global=False
    )
    exports.append(export)
    assert export.meter_provider is not None
    export.meter_provider.get_meter("m").create_counter("ticks").add(1)
    # no flush: the periodic reader sends it within the interval
    assert receiver.wait_for_metric("ticks", timeout=5)[0].value == 1


def test_shutdown_flushes_once_and_is_final(receiver: OTLPReceiver) -> None:
    with configure_otlp(receiver.http_endpoint, set_global=False) as export:
        assert export.tracer_provider is not None
        with export.tracer_provider.get_tracer("t").start_as_current_span("before-exit"):
            pass
    # leaving the block flushed the batch and shut down
    receiver.wait_for_spans(1, name="before-exit", timeout=5)
    assert export.is_shutdown and export.force_flush() is False
    export.shutdown()  # a second shutdown is a no-op
    with export.tracer_provider.get_tracer("t").start_as_current_span("after-exit"):
        pass
    assert not any(s.name == "after-exit" for s in receiver.spans)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_export_timeout_bounds_shutdown_when_the_collector_is_down(protocol: str) -> None:
    import socket
    import time

    with socket.socket() as sock:  # a port with nothing listening
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    export = configure_otlp(dead, protocol=protocol, export_timeout=0.5, set_global=False)
    _emit_without_flush(export)
    started = time.monotonic()
    export.shutdown()
    # one span batch and one metric export, each given up after about 0.5 s (the SDK's default: 10 s)
    assert time.monotonic() - started < 3


def _emit_without_flush(export: OTLPExport) -> None:
    assert export.tracer_provider is not None and export.meter_provider is not None
    with export.tracer_provider.get_tracer("t").start_as_current_span("lost"):
        pass
    export.meter_provider.get_meter("m").create_counter("lost").add(1)


def test_sdk_disabled_exports_nothing(
    receiver: OTLPReceiver, exports: list[OTLPExport], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    before = _globals()
    export = configure_otlp(receiver.http_endpoint, set_global=True)  # disabled: nothing is made global
    exports.append(export)
    assert (export.enabled, export.is_global) == (False, False)
    assert export.tracer_provider is not None
    span = export.tracer_provider.get_tracer("t").start_span("x")
    assert not span.is_recording()
    span.end()
    assert export.force_flush(2)
    assert receiver.requests == [] and _globals() == before


def _globals() -> tuple[object, object]:
    return otel_trace.get_tracer_provider(), otel_metrics.get_meter_provider()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"protocol": "http/json"}, "http/json is not supported"),
        ({"protocol": "zmq"}, "protocol must be one of http/protobuf, grpc, got 'zmq'"),
        ({"endpoint": "127.0.0.1:4318"}, "http:// or https:// URL with a host"),
        ({"endpoint": "ftp://host:21"}, "http:// or https:// URL"),
        ({"endpoint": "http://:4318"}, "with a host"),
        ({"endpoint": "http://host:99999"}, "is not a valid URL"),
        (
            {"endpoint": "http://host:4318/v1/traces"},
            "base URL: engram appends /v1/traces.*use http://host:4318",
        ),
        ({"endpoint": "http://host:4317/x", "protocol": "grpc"}, "OTLP/gRPC endpoint has no path"),
        ({"endpoint": "http://host:4318?x=1"}, "query or fragment"),
        ({"endpoint": ""}, "must be a URL"),
        ({"headers": {"bad name": "v"}}, "not a valid HTTP header name"),
        ({"headers": {"x-a": "line\nbreak"}}, "without line breaks"),
        ({"headers": [("x-a", "b")]}, "must be a mapping"),
        ({"service_name": " "}, "service_name must be a non-empty string"),
        ({"traces": False, "metrics": False}, "nothing to export"),
        ({"metric_export_interval": 0}, "positive number of seconds"),
        ({"metric_export_interval": float("nan")}, "positive number of seconds"),
        ({"export_timeout": -1}, "export_timeout must be a positive number of seconds"),
        ({"export_timeout": True}, "export_timeout must be a positive number of seconds"),
    ],
)
def test_bad_arguments_change_nothing(kwargs: dict[str, object], message: str) -> None:
    before = _globals()
    endpoint = kwargs.pop("endpoint", "http://127.0.0.1:4318")
    with pytest.raises(ValueError, match=message):
        configure_otlp(endpoint, set_global=True, **kwargs)  # type: ignore[arg-type]
    assert _globals() == before


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        (
            {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
            "OTEL_EXPORTER_OTLP_PROTOCOL: http/json is not supported",
        ),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "udp"}, "OTEL_EXPORTER_OTLP_PROTOCOL must be one of"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "localhost:4317"}, "OTEL_EXPORTER_OTLP_ENDPOINT must be an http"),
        (
            {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "collector/v1/traces"},
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT must",
        ),
    ],
)
def test_bad_variables_change_nothing(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], message: str
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    before = _globals()
    with pytest.raises(ValueError, match=message):
        configure_otlp(set_global=True)
    assert _globals() == before


def test_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if engram[otlp] were not installed: the SDK's modules cannot be imported."""
    for name in list(sys.modules):
        if name.startswith(("opentelemetry.sdk", "opentelemetry.exporter")):
            monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk", None)
    before = _globals()
    with pytest.raises(ImportError, match=r'pip install "engram\[otlp\]"') as info:
        configure_otlp("http://127.0.0.1:4318", set_global=True)
    assert "opentelemetry.sdk" in str(info.value)
    assert _globals() == before


def test_missing_grpc_exporter_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(sys.modules):
        if name.startswith("opentelemetry.exporter.otlp.proto.grpc"):
            monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.grpc", None)
    with pytest.raises(
        ImportError, match=r'opentelemetry.exporter.otlp.proto.grpc.*pip install "engram\[otlp\]"'
    ):
        configure_otlp("http://127.0.0.1:4317", protocol="grpc", set_global=False)


def test_importing_engram_telemetry_does_not_import_the_sdk() -> None:
    """engram.telemetry exports configure_otlp lazily: neither importing the package nor reading the
    name imports the SDK, the exporters or grpc."""
    import subprocess

    code = (
        "import sys, engram.telemetry, engram.telemetry._otlp as o; "
        "assert engram.telemetry.configure_otlp is o.configure_otlp; "
        "assert engram.telemetry.OTLPExport is o.OTLPExport; "
        "assert not [m for m in sys.modules if m.startswith(('opentelemetry.sdk', 'opentelemetry.exporter', 'grpc'))]; "
        "print('ok')"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
