"""engram.testing.otlp_receiver: real OTLP/HTTP and OTLP/gRPC requests (built with opentelemetry-proto,
sent with urllib and a grpcio stub, and once by the OpenTelemetry SDK's own exporters) are decoded
into plain Python values."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from typing import Any

import grpc
import pytest
from engram.testing.otlp_receiver import OTLPReceiver, ReceivedSpan, otlp_receiver
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1 import trace_pb2


@pytest.fixture
def receiver():
    """The module's own pytest fixture, used as an ordinary generator here."""
    yield from otlp_receiver.__wrapped__()  # type: ignore[attr-defined]


TRACE_ID = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
ROOT_ID = bytes.fromhex("b7ad6b7169203331")
CHILD_ID = bytes.fromhex("00f067aa0ba902b7")


def _kv(key: str, value: Any) -> KeyValue:
    return KeyValue(key=key, value=_any(value))


def _any(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, list):
        return AnyValue(array_value=ArrayValue(values=[_any(v) for v in value]))
    return AnyValue(string_value=value)


def _resource(service: str = "svc") -> Resource:
    return Resource(attributes=[_kv("service.name", service)])


def _trace_request() -> trace_service_pb2.ExportTraceServiceRequest:
    root = trace_pb2.Span(
        trace_id=TRACE_ID,
        span_id=ROOT_ID,
        name="engram.add",
        kind=trace_pb2.Span.SPAN_KIND_INTERNAL,
        start_time_unix_nano=1_000_000_000,
        end_time_unix_nano=1_250_000_000,
        attributes=[
            _kv("engram.operation", "add"),
            _kv("engram.add.infer", False),
            _kv("engram.results.count", 2),
            _kv("ratio", 0.5),
            _kv("engram.search.paths", ["dense", "lexical"]),
        ],
        status=trace_pb2.Status(code=trace_pb2.Status.STATUS_CODE_ERROR, message="boom"),
        events=[trace_pb2.Span.Event(name="exception", attributes=[_kv("exception.type", "ValueError")])],
    )
    child = trace_pb2.Span(
        trace_id=TRACE_ID,
        span_id=CHILD_ID,
        parent_span_id=ROOT_ID,
        name="embeddings hash",
        kind=trace_pb2.Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=1_100_000_000,
        end_time_unix_nano=1_200_000_000,
    )
    return trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                resource=_resource(),
                scope_spans=[
                    trace_pb2.ScopeSpans(
                        scope=InstrumentationScope(name="engram", version="0.1.0"), spans=[root, child]
                    )
                ],
            )
        ]
    )


def _metrics_request() -> metrics_service_pb2.ExportMetricsServiceRequest:
    histogram = metrics_pb2.Metric(
        name="engram.operation.duration",
        unit="s",
        description="how long",
        histogram=metrics_pb2.Histogram(
            aggregation_temporality=metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE,
            data_points=[
                metrics_pb2.HistogramDataPoint(
                    attributes=[_kv("engram.operation", "add")],
                    count=3,
                    sum=0.75,
                    min=0.1,
                    max=0.4,
                    bucket_counts=[1, 2, 0],
                    explicit_bounds=[0.2, 0.5],
                    time_unix_nano=5,
                )
            ],
        ),
    )
    counter = metrics_pb2.Metric(
        name="requests",
        unit="{request}",
        sum=metrics_pb2.Sum(
            aggregation_temporality=metrics_pb2.AGGREGATION_TEMPORALITY_DELTA,
            is_monotonic=True,
            data_points=[metrics_pb2.NumberDataPoint(as_int=7, time_unix_nano=6)],
        ),
    )
    gauge = metrics_pb2.Metric(
        name="temperature",
        unit="Cel",
        gauge=metrics_pb2.Gauge(data_points=[metrics_pb2.NumberDataPoint(as_double=21.5)]),
    )
    return metrics_service_pb2.ExportMetricsServiceRequest(
        resource_metrics=[
            metrics_pb2.ResourceMetrics(
                resource=_resource(),
                scope_metrics=[
                    metrics_pb2.ScopeMetrics(
                        scope=InstrumentationScope(name="engram"), metrics=[histogram, counter, gauge]
                    )
                ],
            )
        ]
    )


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


PROTOBUF = {"Content-Type": "application/x-protobuf"}


def _check_trace(spans: list[ReceivedSpan], transport: str) -> None:
    by_name = {s.name: s for s in spans}
    root, child = by_name["engram.add"], by_name["embeddings hash"]
    assert root.trace_id == child.trace_id == TRACE_ID.hex()
    assert root.span_id == ROOT_ID.hex() and root.parent_span_id is None
    assert child.parent_span_id == ROOT_ID.hex()
    assert (root.kind, child.kind) == ("INTERNAL", "CLIENT")
    assert (root.status_code, root.status_message, child.status_code) == ("ERROR", "boom", "UNSET")
    assert root.attributes == {
        "engram.operation": "add",
        "engram.add.infer": False,
        "engram.results.count": 2,
        "ratio": 0.5,
        "engram.search.paths": ["dense", "lexical"],
    }
    assert root.resource == {"service.name": "svc"}
    assert (root.scope, root.scope_version) == ("engram", "0.1.0")
    assert root.duration == pytest.approx(0.25)
    assert root.events == [{"name": "exception", "attributes": {"exception.type": "ValueError"}}]
    assert root.transport == child.transport == transport


@pytest.mark.parametrize("compression", [None, "gzip", "deflate"])
def test_http_protobuf_traces(receiver: OTLPReceiver, compression: str | None) -> None:
    body = _trace_request().SerializeToString()
    headers = dict(PROTOBUF, Authorization="Bearer t0ken")
    if compression == "gzip":
        body = gzip.compress(body)
    elif compression == "deflate":
        body = zlib.compress(body)
    if compression:
        headers["Content-Encoding"] = compression
    status, reply = _post(receiver.http_endpoint + "/v1/traces", body, headers)
    assert status == 200
    assert (
        trace_service_pb2.ExportTraceServiceResponse.FromString(reply)
        == trace_service_pb2.ExportTraceServiceResponse()
    )
    _check_trace(receiver.wait_for_spans(2, timeout=1), "http")
    [req] = receiver.requests
    assert (req.signal, req.encoding, req.compression, req.items) == ("traces", "protobuf", compression, 2)
    assert req.headers["authorization"] == "Bearer t0ken" and req.size == len(body)


def test_http_json_traces_with_hex_ids(receiver: OTLPReceiver) -> None:
    from google.protobuf import json_format

    data = json_format.MessageToDict(_trace_request())
    # OTLP/JSON spells ids in hex (protobuf's own JSON mapping would use base64)
    for span in data["resourceSpans"][0]["scopeSpans"][0]["spans"]:
        for key in ("traceId", "spanId", "parentSpanId"):
            if key in span:
                import base64

                span[key] = base64.b64decode(span[key]).hex()
    status, reply = _post(
        receiver.http_endpoint + "/v1/traces",
        json.dumps(data).encode(),
        {"Content-Type": "application/json"},
    )
    assert (status, json.loads(reply)) == (200, {})
    _check_trace(receiver.wait_for_spans(2, timeout=1), "http")
    assert receiver.requests[0].encoding == "json"


def test_grpc_traces_metrics_and_logs(receiver: OTLPReceiver) -> None:
    log_request = logs_service_pb2.ExportLogsServiceRequest(
        resource_logs=[
            logs_pb2.ResourceLogs(
                resource=_resource("logger-svc"),
                scope_logs=[
                    logs_pb2.ScopeLogs(
                        scope=InstrumentationScope(name="app"),
                        log_records=[
                            logs_pb2.LogRecord(
                                body=_any("hello"),
                                severity_text="WARN",
                                severity_number=logs_pb2.SEVERITY_NUMBER_WARN,
                                trace_id=TRACE_ID,
                                span_id=ROOT_ID,
                                attributes=[_kv("n", 1)],
                            )
                        ],
                    )
                ],
            )
        ]
    )
    metadata = (("x-tenant", "acme"),)
    with grpc.insecure_channel(f"127.0.0.1:{receiver.grpc_port}") as channel:
        trace_service_pb2_grpc.TraceServiceStub(channel).Export(
            _trace_request(), metadata=metadata, timeout=5
        )
        metrics_service_pb2_grpc.MetricsServiceStub(channel).Export(
            _metrics_request(), metadata=metadata, timeout=5
        )
        logs_service_pb2_grpc.LogsServiceStub(channel).Export(log_request, metadata=metadata, timeout=5)
    spans = receiver.wait_for_spans(2, timeout=1)
    _check_trace(spans, "grpc")
    assert all(s.headers["x-tenant"] == "acme" for s in spans)
    _check_metrics(receiver, "grpc")
    [log] = receiver.wait_for_logs(1, timeout=1)
    assert (log.body, log.severity_text, log.severity_number) == ("hello", "WARN", 13)
    assert (log.trace_id, log.span_id, log.attributes) == (TRACE_ID.hex(), ROOT_ID.hex(), {"n": 1})
    assert (log.resource, log.scope) == ({"service.name": "logger-svc"}, "app")
    assert [(r.transport, r.signal) for r in receiver.requests] == [
        ("grpc", "traces"),
        ("grpc", "metrics"),
        ("grpc", "logs"),
    ]


def _check_metrics(receiver: OTLPReceiver, transport: str) -> None:
    [hist] = receiver.wait_for_metric("engram.operation.duration", timeout=1)
    assert (hist.type, hist.unit, hist.description, hist.temporality) == (
        "histogram",
        "s",
        "how long",
        "CUMULATIVE",
    )
    assert (hist.count, hist.sum, hist.min, hist.max) == (3, 0.75, 0.1, 0.4)
    assert (hist.bucket_counts, hist.explicit_bounds) == ([1, 2, 0], [0.2, 0.5])
    assert hist.attributes == {"engram.operation": "add"} and hist.value is None
    [counter] = receiver.wait_for_metric("requests", timeout=1)
    assert (counter.type, counter.value, counter.monotonic, counter.temporality) == ("sum", 7, True, "DELTA")
    [gauge] = receiver.wait_for_metric("temperature", where=lambda p: p.value == 21.5, timeout=1)
    assert (gauge.type, gauge.temporality, gauge.monotonic) == ("gauge", None, None)
    assert hist.transport == counter.transport == gauge.transport == transport
    assert hist.resource == {"service.name": "svc"} and hist.scope == "engram"


def test_http_metrics(receiver: OTLPReceiver) -> None:
    status, _ = _post(
        receiver.http_endpoint + "/v1/metrics", _metrics_request().SerializeToString(), PROTOBUF
    )
    assert status == 200
    _check_metrics(receiver, "http")


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "says"),
    [
        ("/v1/spans", b"", PROTOBUF, 404, "/v1/traces"),
        ("/v1/traces", b"\x00", {"Content-Type": "text/plain"}, 415, "text/plain"),
        ("/v1/traces", b"\xff\xff\xff", PROTOBUF, 400, "cannot decode the traces request"),
        ("/v1/traces", b"not gzip", dict(PROTOBUF, **{"Content-Encoding": "gzip"}), 400, "gzip"),
        ("/v1/traces", b"{", {"Content-Type": "application/json"}, 400, "cannot decode"),
        ("/v1/traces", b"x", dict(PROTOBUF, **{"Content-Encoding": "br"}), 400, "br"),
    ],
)
def test_http_rejects_what_it_cannot_decode(
    receiver: OTLPReceiver, path: str, body: bytes, headers: dict[str, str], status: int, says: str
) -> None:
    code, reply = _post(receiver.http_endpoint + path, body, headers)
    assert code == status and says in reply.decode()
    assert receiver.spans == [] and receiver.requests == []


def test_wait_times_out_naming_what_arrived(receiver: OTLPReceiver) -> None:
    _post(receiver.http_endpoint + "/v1/traces", _trace_request().SerializeToString(), PROTOBUF)
    assert len(receiver.wait_for_spans(1, name="embeddings hash", timeout=1)) == 1
    started = time.monotonic()
    with pytest.raises(
        TimeoutError, match=r"engram.search.*received so far: \['embeddings hash', 'engram.add'\]"
    ):
        receiver.wait_for_spans(1, name="engram.search", timeout=0.2)
    assert 0.2 <= time.monotonic() - started < 2
    with pytest.raises(TimeoutError, match="metric 'nope'"):
        receiver.wait_for_metric("nope", timeout=0.05)


def test_tree_helpers(receiver: OTLPReceiver) -> None:
    _post(receiver.http_endpoint + "/v1/traces", _trace_request().SerializeToString(), PROTOBUF)
    spans = receiver.wait_for_spans(2, timeout=1)
    root = next(s for s in spans if s.name == "engram.add")
    child = next(s for s in spans if s.name != "engram.add")
    assert receiver.children(root) == [child] and receiver.children(child) == []
    assert receiver.ancestors(child) == [root] and receiver.ancestors(root) == []
    assert receiver.trace(TRACE_ID.hex()) == spans
    assert receiver.render_tree().splitlines() == [
        "engram.add  [INTERNAL] 250.0 ms  ERROR boom",
        "  embeddings hash  [CLIENT] 100.0 ms",
    ]
    assert "engram.operation='add'" in receiver.render_tree(attributes=True)
    receiver.clear()
    assert receiver.spans == [] and receiver.requests == [] and receiver.render_tree() == ""


def test_sdk_exporters_reach_it_over_both_protocols(receiver: OTLPReceiver) -> None:
    """The OpenTelemetry SDK's own OTLP exporters, HTTP and gRPC, with their default gzip off and on."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    exporters = {
        "http": HttpExporter(endpoint=receiver.http_endpoint + "/v1/traces", compression=Compression.Gzip),
        "grpc": GrpcExporter(endpoint=receiver.grpc_endpoint, insecure=True),
    }
    for transport, exporter in exporters.items():
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        with provider.get_tracer("sdk-test").start_as_current_span(
            f"outer-{transport}", attributes={"k": [1.5, 2.5]}
        ):
            with provider.get_tracer("sdk-test").start_as_current_span(f"inner-{transport}"):
                pass
        provider.shutdown()
    spans = receiver.wait_for_spans(4, timeout=5)
    for transport in exporters:
        outer = next(s for s in spans if s.name == f"outer-{transport}")
        [inner] = receiver.children(outer)
        assert inner.name == f"inner-{transport}" and inner.transport == outer.transport == transport
        assert outer.attributes == {"k": [1.5, 2.5]} and outer.scope == "sdk-test"
        assert outer.resource["telemetry.sdk.language"] == "python"
    assert {r.compression for r in receiver.requests if r.transport == "http"} == {"gzip"}


def test_taken_port_is_an_oserror() -> None:
    with OTLPReceiver() as first:
        with pytest.raises(OSError):
            OTLPReceiver(http_port=first.http_port).start()
        with pytest.raises(OSError, match="gRPC"):
            OTLPReceiver(grpc_port=first.grpc_port).start()


def test_command_line_prints_json_lines() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "engram.testing.otlp_receiver", "--http-port", "0", "--grpc-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    try:
        assert proc.stdout is not None
        listening = json.loads(proc.stdout.readline())
        assert listening["type"] == "listening"
        assert listening["http"].startswith("http://127.0.0.1:") and listening["grpc"].startswith(
            "http://127.0.0.1:"
        )
        status, _ = _post(listening["http"] + "/v1/traces", _trace_request().SerializeToString(), PROTOBUF)
        assert status == 200
        lines = [json.loads(proc.stdout.readline()) for _ in range(2)]
        assert {line["name"] for line in lines} == {"engram.add", "embeddings hash"}
        assert all(line["type"] == "span" and line["trace_id"] == TRACE_ID.hex() for line in lines)
    finally:
        proc.terminate()
        proc.wait(10)
