"""A real OTLP receiver on 127.0.0.1 that decodes what it receives, for telemetry tests.

:class:`OTLPReceiver` listens on two free ports of ``127.0.0.1``:

- **OTLP/HTTP** (a stdlib ``ThreadingHTTPServer``): ``POST /v1/traces``, ``/v1/metrics`` and
  ``/v1/logs`` with a protobuf body (``application/x-protobuf``) or an OTLP/JSON body
  (``application/json``, ids as hex strings), either of them plain, ``gzip`` or ``deflate``
  encoded (``Content-Encoding``). It answers with the signal's ``Export*ServiceResponse`` in the
  request's encoding, as a collector does.
- **OTLP/gRPC** (a ``grpcio`` server): the ``TraceService``, ``MetricsService`` and ``LogsService``
  of ``opentelemetry.proto.collector``.

Everything is decoded with ``opentelemetry-proto`` into plain Python values: spans
(:class:`ReceivedSpan`: name, ids as lower-case hex, kind, status, attributes, resource attributes,
scope), metric points (:class:`ReceivedMetricPoint`) and log records (:class:`ReceivedLog`); every
export request is recorded too (:class:`ReceivedRequest`: transport, signal, headers). The
``wait_for_*`` methods block until enough has arrived or raise ``TimeoutError`` saying what did.

Needs the ``otlp`` extra of engram-testing (``opentelemetry-proto``, ``grpcio``, ``protobuf``);
``engram.testing`` itself never imports this module, so import it by its full name::

    from engram.testing.otlp_receiver import OTLPReceiver

    with OTLPReceiver() as receiver:
        export = configure_otlp(receiver.http_endpoint, set_global=False)
        ...  # make spans with export.tracer_provider
        export.force_flush()
        spans = receiver.wait_for_spans(3)
        print(receiver.render_tree())

or the ``otlp_receiver`` pytest fixture (import the name into a test module or ``conftest.py``).

For manual use, ``python -m engram.testing.otlp_receiver --http-port 4318 --grpc-port 4317`` runs
one in the foreground and prints every span, metric point and log record it receives as a line of
JSON (port 0 picks a free port; the first line gives the endpoints).
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import grpc
import pytest
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

__all__ = [
    "OTLPReceiver",
    "ReceivedLog",
    "ReceivedMetricPoint",
    "ReceivedRequest",
    "ReceivedSpan",
    "Signal",
    "Transport",
    "otlp_receiver",
]

Signal = Literal["traces", "metrics", "logs"]
Transport = Literal["http", "grpc"]

_REQUESTS: dict[Signal, type[Message]] = {
    "traces": trace_service_pb2.ExportTraceServiceRequest,
    "metrics": metrics_service_pb2.ExportMetricsServiceRequest,
    "logs": logs_service_pb2.ExportLogsServiceRequest,
}
_RESPONSES: dict[Signal, type[Message]] = {
    "traces": trace_service_pb2.ExportTraceServiceResponse,
    "metrics": metrics_service_pb2.ExportMetricsServiceResponse,
    "logs": logs_service_pb2.ExportLogsServiceResponse,
}
_PATHS: dict[str, Signal] = {"/v1/traces": "traces", "/v1/metrics": "metrics", "/v1/logs": "logs"}
_MAX_BODY = 64 * 1024 * 1024  # the OTLP exporters' own default request size limit


@dataclass
class ReceivedRequest:
    """One export request.

    Attributes:
        transport: ``"http"`` or ``"grpc"``.
        signal: ``"traces"``, ``"metrics"`` or ``"logs"``.
        headers: HTTP headers or gRPC metadata, names lower-cased.
        encoding: ``"protobuf"`` or ``"json"``.
        compression: the ``Content-Encoding`` (``"gzip"``, ``"deflate"``) or ``None``.
        size: body bytes as received (compressed).
        items: spans, metric points or log records it carried.
        received: ``time.monotonic()`` when it arrived.
    """

    transport: Transport
    signal: Signal
    headers: dict[str, str]
    encoding: Literal["protobuf", "json"]
    compression: str | None
    size: int
    items: int
    received: float


class _Item:
    def to_json(self) -> dict[str, Any]:
        """This item as a JSON-serialisable dict (all fields but ``headers``)."""
        data = asdict(self)  # type: ignore[call-overload]
        del data["headers"]
        return data


@dataclass
class ReceivedSpan(_Item):
    """One decoded span.

    Attributes:
        name: the span name.
        trace_id, span_id: lower-case hex (32 and 16 characters).
        parent_span_id: lower-case hex, or ``None`` for a root span.
        kind: ``"INTERNAL"``, ``"SERVER"``, ``"CLIENT"``, ``"PRODUCER"``, ``"CONSUMER"`` or
            ``"UNSPECIFIED"``.
        status_code: ``"UNSET"``, ``"OK"`` or ``"ERROR"``; status_message its description.
        attributes: the span's attributes as plain Python values (arrays become lists).
        resource: the resource attributes (``service.name`` ...).
        scope: the instrumentation scope name (the tracer's name); scope_version its version.
        start_ns, end_ns: Unix times in nanoseconds.
        events: ``[{"name", "attributes"}]`` (an exception recorded on the span is one of them).
        transport: how it arrived, ``"http"`` or ``"grpc"``.
        headers: the headers of the request that carried it, names lower-cased.
    """

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    kind: str
    status_code: str
    status_message: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope: str
    scope_version: str
    start_ns: int
    end_ns: int
    events: list[dict[str, Any]] = field(default_factory=list)
    transport: Transport = "http"
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        """``end - start`` in seconds."""
        return (self.end_ns - self.start_ns) / 1e9


@dataclass
class ReceivedMetricPoint(_Item):
    """One decoded metric data point.

    Attributes:
        name, description, unit: the metric's (``unit`` as declared, e.g. ``"s"``, ``"{token}"``).
        type: ``"gauge"``, ``"sum"``, ``"histogram"``, ``"exponential_histogram"`` or ``"summary"``.
        attributes: the point's attributes as plain Python values.
        value: a gauge's or sum's value (``int`` or ``float``); ``None`` for the other types.
        count, sum, min, max: a histogram's (``sum``, ``min``, ``max`` are ``None`` when absent).
        bucket_counts, explicit_bounds: a histogram's buckets (``len(bounds) + 1`` counts).
        temporality: ``"CUMULATIVE"``, ``"DELTA"`` or ``None`` (gauges, summaries).
        monotonic: a sum's ``is_monotonic`` (``None`` for the other types).
        resource: the resource attributes; scope: the meter's name.
        time_ns: the point's Unix time in nanoseconds.
        transport, headers: as for :class:`ReceivedSpan`.
    """

    name: str
    description: str
    unit: str
    type: str
    attributes: dict[str, Any]
    value: int | float | None
    count: int | None
    sum: float | None
    min: float | None
    max: float | None
    bucket_counts: list[int]
    explicit_bounds: list[float]
    temporality: str | None
    monotonic: bool | None
    resource: dict[str, Any]
    scope: str
    time_ns: int
    transport: Transport = "http"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class ReceivedLog(_Item):
    """One decoded log record.

    Attributes:
        body: the body as a plain Python value.
        severity_text, severity_number: as sent.
        attributes, resource: plain Python values; scope: the logger's name.
        trace_id, span_id: lower-case hex, or ``None`` when the record has none.
        time_ns: the record's Unix time in nanoseconds.
        transport, headers: as for :class:`ReceivedSpan`.
    """

    body: Any
    severity_text: str
    severity_number: int
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope: str
    trace_id: str | None
    span_id: str | None
    time_ns: int
    transport: Transport = "http"
    headers: dict[str, str] = field(default_factory=dict)


Received = ReceivedSpan | ReceivedMetricPoint | ReceivedLog


class OTLPReceiver:
    """An OTLP receiver (HTTP and gRPC) on ``127.0.0.1`` that keeps what it decodes.

    Args:
        http_port: the OTLP/HTTP port; 0 (default) picks a free one.
        grpc_port: the OTLP/gRPC port; 0 (default) picks a free one.
        on_receive: called (from a server thread) with each decoded span, metric point and log
            record as it arrives; ``python -m engram.testing.otlp_receiver`` prints them with it.

    Use it as a context manager, or :meth:`start` / :meth:`stop`. The lists :attr:`spans`,
    :attr:`metric_points`, :attr:`logs` and :attr:`requests` grow as exports arrive; read them
    after a ``wait_for_*`` call (or :meth:`clear` them between phases of a test).
    """

    def __init__(
        self,
        *,
        http_port: int = 0,
        grpc_port: int = 0,
        on_receive: Callable[[Received], None] | None = None,
    ) -> None:
        self._http_port_wanted = http_port
        self._grpc_port_wanted = grpc_port
        self.on_receive = on_receive
        self.spans: list[ReceivedSpan] = []
        self.metric_points: list[ReceivedMetricPoint] = []
        self.logs: list[ReceivedLog] = []
        self.requests: list[ReceivedRequest] = []
        self._changed = threading.Condition()
        self._httpd: ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None
        self._grpc: grpc.Server | None = None
        self._grpc_port: int | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> OTLPReceiver:
        """Bind both ports on 127.0.0.1 and serve in background threads.

        Raises:
            OSError: a requested port is taken.
        """
        if self._httpd is not None:
            return self
        httpd = _HTTPServer(("127.0.0.1", self._http_port_wanted), _make_handler(self))
        # grpcio sets SO_REUSEPORT by default, which would let two receivers share a port unnoticed
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="engram-otlp-grpc"),
            options=[("grpc.so_reuseport", 0)],
        )
        handler = _GrpcHandler(self)
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(
            _servicer(trace_service_pb2_grpc.TraceServiceServicer, "traces", handler), server
        )
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(
            _servicer(metrics_service_pb2_grpc.MetricsServiceServicer, "metrics", handler), server
        )
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(
            _servicer(logs_service_pb2_grpc.LogsServiceServicer, "logs", handler), server
        )
        try:
            port = server.add_insecure_port(f"127.0.0.1:{self._grpc_port_wanted}")
        except RuntimeError as exc:  # grpcio raises RuntimeError when it cannot bind
            httpd.server_close()
            raise OSError(f"cannot bind 127.0.0.1:{self._grpc_port_wanted} for OTLP/gRPC: {exc}") from exc
        if port == 0:  # older grpcio returns 0 instead of raising
            httpd.server_close()
            raise OSError(f"cannot bind 127.0.0.1:{self._grpc_port_wanted} for OTLP/gRPC")
        server.start()
        self._grpc, self._grpc_port = server, port
        self._httpd = httpd
        self._http_thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="engram-otlp-http", daemon=True
        )
        self._http_thread.start()
        return self

    def stop(self) -> None:
        """Stop both servers and release the ports (what was received stays readable)."""
        httpd, self._httpd = self._httpd, None
        server, self._grpc = self._grpc, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
            if self._http_thread is not None:
                self._http_thread.join(5)
        if server is not None:
            server.stop(grace=None).wait(5)

    def __enter__(self) -> OTLPReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses -----------------------------------------------------------------------------

    @property
    def http_port(self) -> int:
        """The OTLP/HTTP port."""
        if self._httpd is None:
            raise RuntimeError("the OTLP receiver is not running")
        return int(self._httpd.server_address[1])

    @property
    def grpc_port(self) -> int:
        """The OTLP/gRPC port."""
        if self._grpc is None or self._grpc_port is None:
            raise RuntimeError("the OTLP receiver is not running")
        return self._grpc_port

    @property
    def http_endpoint(self) -> str:
        """``http://127.0.0.1:<http_port>``: the base URL (exporters append ``/v1/traces`` ...)."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_endpoint(self) -> str:
        """``http://127.0.0.1:<grpc_port>`` (``http``: plaintext gRPC)."""
        return f"http://127.0.0.1:{self.grpc_port}"

    def endpoint(self, protocol: str) -> str:
        """The base URL for ``protocol``: ``"grpc"``, or ``"http/protobuf"`` / ``"http/json"``."""
        return self.grpc_endpoint if protocol == "grpc" else self.http_endpoint

    # -- reading what arrived -------------------------------------------------------------------

    def clear(self) -> None:
        """Forget everything received so far."""
        with self._changed:
            self.spans.clear()
            self.metric_points.clear()
            self.logs.clear()
            self.requests.clear()

    def wait_for_spans(
        self, count: int = 1, *, name: str | None = None, timeout: float = 10.0
    ) -> list[ReceivedSpan]:
        """Block until at least ``count`` spans (named ``name``, when given) have arrived.

        Args:
            count: how many spans to wait for.
            name: only count spans with this name.
            timeout: seconds to wait.

        Returns:
            The matching spans received so far (at least ``count``), in arrival order.

        Raises:
            TimeoutError: fewer arrived in time; the message lists the span names received.
        """

        def ready() -> list[ReceivedSpan] | None:
            found = [s for s in self.spans if name is None or s.name == name]
            return found if len(found) >= count else None

        what = f"{count} span(s)" + (f" named {name!r}" if name else "")
        return self._wait(ready, timeout, what, lambda: sorted({s.name for s in self.spans}))

    def wait_for_metric(
        self,
        name: str,
        *,
        where: Callable[[ReceivedMetricPoint], bool] | None = None,
        timeout: float = 10.0,
    ) -> list[ReceivedMetricPoint]:
        """Block until a point of metric ``name`` (passing ``where``, when given) has arrived.

        Returns:
            Every matching point received so far, in arrival order (cumulative exports repeat a
            series, so the last point of a series is its latest value).

        Raises:
            TimeoutError: none arrived in time; the message lists the metric names received.
        """

        def ready() -> list[ReceivedMetricPoint] | None:
            found = [p for p in self.metric_points if p.name == name and (where is None or where(p))]
            return found or None

        return self._wait(
            ready, timeout, f"metric {name!r}", lambda: sorted({p.name for p in self.metric_points})
        )

    def wait_for_logs(self, count: int = 1, *, timeout: float = 10.0) -> list[ReceivedLog]:
        """Block until at least ``count`` log records have arrived.

        Raises:
            TimeoutError: fewer arrived in time.
        """
        return self._wait(
            lambda: list(self.logs) if len(self.logs) >= count else None,
            timeout,
            f"{count} log record(s)",
            lambda: [len(self.logs)],
        )

    def _wait(self, ready: Callable[[], Any], timeout: float, what: str, seen: Callable[[], Any]) -> Any:
        deadline = time.monotonic() + timeout
        with self._changed:
            while (found := ready()) is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"waited {timeout:g} s for {what}; received so far: {seen()}")
                self._changed.wait(left)
            return found

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        """The spans of one trace (hex id), in arrival order."""
        with self._changed:
            return [s for s in self.spans if s.trace_id == trace_id]

    def children(self, span: ReceivedSpan) -> list[ReceivedSpan]:
        """The spans whose parent is ``span``, by start time."""
        with self._changed:
            found = [
                s for s in self.spans if s.trace_id == span.trace_id and s.parent_span_id == span.span_id
            ]
        return sorted(found, key=lambda s: s.start_ns)

    def ancestors(self, span: ReceivedSpan) -> list[ReceivedSpan]:
        """``span``'s parent, its parent, and so on, as far as received spans go (nearest first)."""
        with self._changed:
            by_id = {(s.trace_id, s.span_id): s for s in self.spans}
        chain: list[ReceivedSpan] = []
        current = span
        while current.parent_span_id is not None and (
            parent := by_id.get((current.trace_id, current.parent_span_id))
        ):
            if parent in chain:  # a malformed cycle; stop rather than loop
                break
            chain.append(parent)
            current = parent
        return chain

    def render_tree(self, spans: list[ReceivedSpan] | None = None, *, attributes: bool = False) -> str:
        """The spans as indented trees, one line per span: ``name  [KIND] 1.2 ms``, children under
        their parent by start time. A span whose parent was not received is shown as a root.

        Args:
            spans: the spans to draw (default: all received).
            attributes: add each span's attributes as ``key=value`` after it.
        """
        with self._changed:
            pool = list(self.spans if spans is None else spans)
        ids = {(s.trace_id, s.span_id) for s in pool}
        kids: dict[tuple[str, str], list[ReceivedSpan]] = {}
        roots: list[ReceivedSpan] = []
        for s in sorted(pool, key=lambda s: s.start_ns):
            if s.parent_span_id is not None and (s.trace_id, s.parent_span_id) in ids:
                kids.setdefault((s.trace_id, s.parent_span_id), []).append(s)
            else:
                roots.append(s)
        lines: list[str] = []

        def draw(s: ReceivedSpan, depth: int) -> None:
            line = f"{'  ' * depth}{s.name}  [{s.kind}] {s.duration * 1000:.1f} ms"
            if s.status_code == "ERROR":
                line += f"  ERROR {s.status_message}".rstrip()
            if attributes and s.attributes:
                line += "  " + " ".join(f"{k}={v!r}" for k, v in sorted(s.attributes.items()))
            lines.append(line)
            for child in kids.get((s.trace_id, s.span_id), []):
                draw(child, depth + 1)

        for root in roots:
            draw(root, 0)
        return "\n".join(lines)

    # -- decoding (called from server threads) --------------------------------------------------

    def _accept(
        self,
        transport: Transport,
        signal: Signal,
        request: Message,
        headers: dict[str, str],
        encoding: Literal["protobuf", "json"],
        compression: str | None,
        size: int,
    ) -> None:
        items: list[Received] = list(_DECODERS[signal](request, transport, headers))
        with self._changed:
            for item in items:
                if isinstance(item, ReceivedSpan):
                    self.spans.append(item)
                elif isinstance(item, ReceivedMetricPoint):
                    self.metric_points.append(item)
                else:
                    self.logs.append(item)
            self.requests.append(
                ReceivedRequest(
                    transport, signal, headers, encoding, compression, size, len(items), time.monotonic()
                )
            )
            self._changed.notify_all()
        if self.on_receive is not None:
            for item in items:
                self.on_receive(item)


# -- decoding --------------------------------------------------------------------------------


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return _attributes(v.kvlist_value.values)
    return getattr(v, kind)


def _attributes(kvs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in kvs:
        assert isinstance(kv, KeyValue)
        out[kv.key] = _value(kv.value)
    return out


def _hex(raw: bytes) -> str | None:
    return raw.hex() if raw and any(raw) else None


def _spans(request: Any, transport: Transport, headers: dict[str, str]) -> Iterator[ReceivedSpan]:
    for rs in request.resource_spans:
        resource = _attributes(rs.resource.attributes)
        for ss in rs.scope_spans:
            for sp in ss.spans:
                yield ReceivedSpan(
                    name=sp.name,
                    trace_id=sp.trace_id.hex(),
                    span_id=sp.span_id.hex(),
                    parent_span_id=_hex(sp.parent_span_id),
                    kind=Span.SpanKind.Name(sp.kind).removeprefix("SPAN_KIND_"),
                    status_code=Status.StatusCode.Name(sp.status.code).removeprefix("STATUS_CODE_"),
                    status_message=sp.status.message,
                    attributes=_attributes(sp.attributes),
                    resource=resource,
                    scope=ss.scope.name,
                    scope_version=ss.scope.version,
                    start_ns=sp.start_time_unix_nano,
                    end_ns=sp.end_time_unix_nano,
                    events=[{"name": e.name, "attributes": _attributes(e.attributes)} for e in sp.events],
                    transport=transport,
                    headers=headers,
                )


def _temporality(value: Any) -> str:
    return AggregationTemporality.Name(value).removeprefix("AGGREGATION_TEMPORALITY_")


def _metric_points(
    request: Any, transport: Transport, headers: dict[str, str]
) -> Iterator[ReceivedMetricPoint]:
    for rm in request.resource_metrics:
        resource = _attributes(rm.resource.attributes)
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                if kind is None:
                    continue
                data = getattr(metric, kind)
                temporality = (
                    _temporality(data.aggregation_temporality) if kind not in ("gauge", "summary") else None
                )
                for p in data.data_points:
                    base: dict[str, Any] = {
                        "name": metric.name,
                        "description": metric.description,
                        "unit": metric.unit,
                        "type": kind,
                        "attributes": _attributes(p.attributes),
                        "value": None,
                        "count": None,
                        "sum": None,
                        "min": None,
                        "max": None,
                        "bucket_counts": [],
                        "explicit_bounds": [],
                        "temporality": temporality,
                        "monotonic": data.is_monotonic if kind == "sum" else None,
                        "resource": resource,
                        "scope": sm.scope.name,
                        "time_ns": p.time_unix_nano,
                        "transport": transport,
                        "headers": headers,
                    }
                    if kind in ("gauge", "sum"):
                        base["value"] = getattr(p, p.WhichOneof("value") or "as_int")
                    else:
                        base["count"] = p.count
                        base["sum"] = p.sum if kind == "summary" or p.HasField("sum") else None
                        if kind == "histogram":
                            base["bucket_counts"] = list(p.bucket_counts)
                            base["explicit_bounds"] = list(p.explicit_bounds)
                        if kind != "summary":
                            base["min"] = p.min if p.HasField("min") else None
                            base["max"] = p.max if p.HasField("max") else None
                    yield ReceivedMetricPoint(**base)


def _log_records(request: Any, transport: Transport, headers: dict[str, str]) -> Iterator[ReceivedLog]:
    for rl in request.resource_logs:
        resource = _attributes(rl.resource.attributes)
        for sl in rl.scope_logs:
            for rec in sl.log_records:
                yield ReceivedLog(
                    body=_value(rec.body),
                    severity_text=rec.severity_text,
                    severity_number=int(rec.severity_number),
                    attributes=_attributes(rec.attributes),
                    resource=resource,
                    scope=sl.scope.name,
                    trace_id=_hex(rec.trace_id),
                    span_id=_hex(rec.span_id),
                    time_ns=rec.time_unix_nano,
                    transport=transport,
                    headers=headers,
                )


_DECODERS: dict[Signal, Callable[[Any, Transport, dict[str, str]], Iterator[Received]]] = {
    "traces": _spans,
    "metrics": _metric_points,
    "logs": _log_records,
}

_ID_FIELDS = {"traceId", "spanId", "parentSpanId"}


def _json_ids_to_base64(node: Any) -> Any:
    """OTLP/JSON writes trace and span ids as hex, where protobuf's JSON mapping wants base64."""
    if isinstance(node, dict):
        return {
            k: base64.b64encode(bytes.fromhex(v)).decode()
            if k in _ID_FIELDS and isinstance(v, str)
            else _json_ids_to_base64(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_json_ids_to_base64(x) for x in node]
    return node


def _parse_json(signal: Signal, body: bytes) -> Message:
    message = _REQUESTS[signal]()
    json_format.Parse(json.dumps(_json_ids_to_base64(json.loads(body))), message, ignore_unknown_fields=True)
    return message


# -- HTTP ------------------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def _make_handler(receiver: OTLPReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _fail(self, status: int, message: str) -> None:
            self._send(status, message.encode(), "text/plain; charset=utf-8")

        def do_POST(self) -> None:
            signal = _PATHS.get(self.path.split("?", 1)[0])
            length = int(self.headers.get("Content-Length") or 0)
            if length > _MAX_BODY:
                self.close_connection = True
                return self._fail(413, f"body of {length} bytes is over {_MAX_BODY}")
            raw = self.rfile.read(length)
            if signal is None:
                return self._fail(
                    404, f"no OTLP endpoint at {self.path}; use /v1/traces, /v1/metrics or /v1/logs"
                )
            compression = (self.headers.get("Content-Encoding") or "").strip().lower() or None
            try:
                body = _decompress(raw, compression)
            except (OSError, zlib.error, ValueError) as exc:
                return self._fail(400, f"cannot decode a {compression} body: {exc}")
            content_type = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
            encoding: Literal["protobuf", "json"] = (
                "json" if content_type == "application/json" else "protobuf"
            )
            if content_type not in ("application/json", "application/x-protobuf", "application/protobuf"):
                return self._fail(415, f"unsupported Content-Type {content_type!r}")
            try:
                request = (
                    _parse_json(signal, body) if encoding == "json" else _REQUESTS[signal].FromString(body)
                )
            except (DecodeError, json_format.ParseError, ValueError) as exc:
                return self._fail(400, f"cannot decode the {signal} request: {exc}")
            headers = {k.lower(): v for k, v in self.headers.items()}
            receiver._accept("http", signal, request, headers, encoding, compression, len(raw))
            response = _RESPONSES[signal]()
            if encoding == "json":
                self._send(200, b"{}", "application/json")
            else:
                self._send(200, response.SerializeToString(), "application/x-protobuf")

    return Handler


def _decompress(raw: bytes, compression: str | None) -> bytes:
    if compression in (None, "identity"):
        return raw
    if compression == "gzip":
        return gzip.decompress(raw)
    if compression == "deflate":
        return zlib.decompress(raw)
    raise ValueError(f"unsupported Content-Encoding {compression!r}")


# -- gRPC ------------------------------------------------------------------------------------


class _GrpcHandler:
    def __init__(self, receiver: OTLPReceiver) -> None:
        self.receiver = receiver

    def __call__(self, signal: Signal, request: Message, context: grpc.ServicerContext) -> Message:
        headers = {str(k).lower(): str(v) for k, v in context.invocation_metadata()}
        size = request.ByteSize()
        self.receiver._accept(
            "grpc", signal, request, headers, "protobuf", headers.get("grpc-encoding"), size
        )
        return _RESPONSES[signal]()


def _servicer(base: type, signal: Signal, handle: _GrpcHandler) -> Any:
    class Servicer(base):  # type: ignore[misc, valid-type]
        def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
            return handle(signal, request, context)

    return Servicer()


# -- pytest fixture and command line ------------------------------------------------------------


@pytest.fixture
def otlp_receiver() -> Iterator[OTLPReceiver]:
    """A running :class:`OTLPReceiver` for one test (import this name into a test module or
    ``conftest.py`` to use it)."""
    with OTLPReceiver() as receiver:
        yield receiver


def _print_line(item: Received, out: Any = None) -> None:
    kind = {ReceivedSpan: "span", ReceivedMetricPoint: "metric", ReceivedLog: "log"}[type(item)]
    line = json.dumps({"type": kind, **item.to_json()}, default=repr, ensure_ascii=False)
    print(line, file=out or sys.stdout, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run a receiver in the foreground, printing what arrives as JSON lines, until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m engram.testing.otlp_receiver",
        description="An OTLP receiver (HTTP and gRPC) on 127.0.0.1 that prints each span, metric "
        "point and log record it receives as a line of JSON.",
    )
    parser.add_argument(
        "--http-port", type=int, default=4318, help="OTLP/HTTP port (default 4318; 0: a free port)"
    )
    parser.add_argument(
        "--grpc-port", type=int, default=4317, help="OTLP/gRPC port (default 4317; 0: a free port)"
    )
    args = parser.parse_args(argv)
    try:
        receiver = OTLPReceiver(
            http_port=args.http_port, grpc_port=args.grpc_port, on_receive=_print_line
        ).start()
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        json.dumps({"type": "listening", "http": receiver.http_endpoint, "grpc": receiver.grpc_endpoint}),
        flush=True,
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        receiver.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
