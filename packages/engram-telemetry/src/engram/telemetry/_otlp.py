"""OTLP export: :func:`configure_otlp` sets up the OpenTelemetry SDK with OTLP exporters.

Needs ``engram[otlp]`` (``engram-telemetry[otlp]``): the SDK and the OTLP/HTTP and OTLP/gRPC
exporters. They are imported when :func:`configure_otlp` runs, never when this module is imported.
"""

from __future__ import annotations

import atexit
import math
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

__all__ = ["OTLPExport", "configure_otlp"]

Protocol = Literal["http/protobuf", "grpc"]
PROTOCOLS: tuple[Protocol, ...] = ("http/protobuf", "grpc")
DEFAULT_ENDPOINTS: dict[Protocol, str] = {
    "http/protobuf": "http://localhost:4318",
    "grpc": "http://localhost:4317",
}
INSTALL_HINT = 'pip install "engram[otlp]"'

_SIGNAL_PATHS = ("/v1/traces", "/v1/metrics", "/v1/logs")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")  # an HTTP token (RFC 9110 §5.6.2)
_global_lock = threading.Lock()
_global_export: OTLPExport | None = None


@dataclass(eq=False)
class OTLPExport:
    """The providers and exporters :func:`configure_otlp` set up.

    Attributes:
        tracer_provider: the SDK ``TracerProvider`` (a batch span processor and an OTLP span
            exporter), or ``None`` when ``traces=False``.
        meter_provider: the SDK ``MeterProvider`` (a periodic reader and an OTLP metric
            exporter), or ``None`` when ``metrics=False``.
        endpoint: the base URL: the ``endpoint`` argument, else ``OTEL_EXPORTER_OTLP_ENDPOINT``,
            else the protocol's default (``http://localhost:4318`` for HTTP,
            ``http://localhost:4317`` for gRPC).
        protocol: ``"http/protobuf"`` or ``"grpc"``.
        traces_endpoint, metrics_endpoint: where each signal is sent (for HTTP the full URL, e.g.
            ``http://host:4318/v1/traces``; for gRPC the base URL); ``None`` for a signal that is
            off. ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``..._METRICS_ENDPOINT`` set them when no
            ``endpoint`` argument is given.
        service_name: the resource's ``service.name``.
        enabled: ``False`` when ``OTEL_SDK_DISABLED=true``: the providers are the SDK's disabled
            ones (no-op tracers and meters), nothing is exported and nothing was made global.
        is_global: whether these providers were set as OpenTelemetry's global ones.

    Use it as a context manager (``with configure_otlp(...) as export:``) to flush and shut down
    on exit; otherwise :meth:`shutdown` runs at interpreter exit.
    """

    tracer_provider: TracerProvider | None = field(repr=False)
    meter_provider: MeterProvider | None = field(repr=False)
    endpoint: str
    protocol: Protocol
    traces_endpoint: str | None
    metrics_endpoint: str | None
    service_name: str
    enabled: bool
    is_global: bool
    _shut: bool = field(default=False, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        atexit.register(self.shutdown)

    @property
    def is_shutdown(self) -> bool:
        """Whether :meth:`shutdown` has run."""
        return self._shut

    def force_flush(self, timeout: float = 10.0) -> bool:
        """Export the finished spans waiting in the batch, and collect and export the metrics now.

        Args:
            timeout: seconds to wait for each provider (traces, then metrics).

        Returns:
            ``True`` when every provider flushed in time (a collector that refuses or cannot be
            reached makes it ``False``; the SDK logs why). ``False`` after :meth:`shutdown`.
        """
        if self._shut:
            return False
        ok = True
        if self.tracer_provider is not None:
            ok = bool(self.tracer_provider.force_flush(int(timeout * 1000))) and ok
        if self.meter_provider is not None:
            ok = bool(self.meter_provider.force_flush(timeout * 1000)) and ok
        return ok

    def shutdown(self, timeout: float = 10.0) -> None:
        """Export what is pending (finished spans, a last metric collection), then shut the providers
        and exporters down; later spans and metrics are dropped.

        Safe to call more than once (it also runs at interpreter exit). The global providers, if
        these were made global, stay set: OpenTelemetry allows setting them once per process.

        Args:
            timeout: seconds to wait for each provider's final export (an export also stops at the
                exporter's own timeout, ``export_timeout`` of :func:`configure_otlp`).
        """
        with self._lock:
            if self._shut:
                return
            self._shut = True
        atexit.unregister(self.shutdown)
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown(timeout_millis=timeout * 1000)

    def __enter__(self) -> OTLPExport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def configure_otlp(
    endpoint: str | None = None,
    *,
    protocol: str | None = None,
    headers: Mapping[str, str] | None = None,
    service_name: str | None = None,
    traces: bool = True,
    metrics: bool = True,
    metric_export_interval: float | None = None,
    export_timeout: float | None = None,
    set_global: bool = True,
) -> OTLPExport:
    """Export traces and metrics over OTLP with the OpenTelemetry SDK.

    Builds a ``TracerProvider`` (batch span processor, OTLP span exporter) and a ``MeterProvider``
    (periodic reader, OTLP metric exporter) with a resource from ``Resource.create`` (so
    ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` apply), and by default makes them
    OpenTelemetry's global providers, where engram (and any other instrumented library) sends its
    spans and metrics.

    An argument left ``None`` is read from the standard variables: ``OTEL_EXPORTER_OTLP_ENDPOINT``
    (and ``..._TRACES_ENDPOINT`` / ``..._METRICS_ENDPOINT``), ``OTEL_EXPORTER_OTLP_PROTOCOL``,
    ``OTEL_EXPORTER_OTLP_HEADERS`` (and the per-signal ones), ``OTEL_SERVICE_NAME``. The exporters
    and processors read the rest themselves (``OTEL_EXPORTER_OTLP_TIMEOUT``, ``..._COMPRESSION``,
    ``..._CERTIFICATE``, ``..._INSECURE``, ``OTEL_BSP_*``, ``OTEL_METRIC_EXPORT_INTERVAL``).
    ``OTEL_SDK_DISABLED=true`` turns everything off (see :attr:`OTLPExport.enabled`).

    Args:
        endpoint: the collector's base URL, ``http://`` or ``https://`` (e.g.
            ``http://127.0.0.1:4318`` for HTTP, ``http://127.0.0.1:4317`` for gRPC). It means what
            ``OTEL_EXPORTER_OTLP_ENDPOINT`` means, for both protocols: over HTTP ``/v1/traces``
            and ``/v1/metrics`` are appended (give the base URL, not a signal's path). It wins over
            the endpoint variables, the per-signal ones included.
        protocol: ``"http/protobuf"`` (default) or ``"grpc"``.
        headers: sent with every export (HTTP headers, gRPC metadata), on top of those from the
            variables (these win; names are lower-cased).
        service_name: the resource's ``service.name`` (wins over ``OTEL_SERVICE_NAME``). Without
            either, the SDK's default ``unknown_service:<executable>``.
        traces: export spans.
        metrics: export metrics.
        metric_export_interval: seconds between metric exports (default:
            ``OTEL_METRIC_EXPORT_INTERVAL`` in milliseconds, else 60 s). :meth:`OTLPExport.force_flush`
            exports at once.
        export_timeout: seconds one export may take, the exporter's retries included (default:
            ``OTEL_EXPORTER_OTLP_TIMEOUT``, else 10 s). It bounds how long flushing and shutting
            down wait for a collector that is down.
        set_global: make the providers OpenTelemetry's global ones. That can happen once per
            process: a second ``configure_otlp(set_global=True)``, or one after the application set
            its own global providers, raises ``RuntimeError``. With ``False`` the providers are only
            returned: hand them to engram (``AsyncMemory(..., tracer_provider=...,
            meter_provider=...)``) or use them yourself.

    Returns:
        The :class:`OTLPExport`: its providers, where they export, ``force_flush`` and
        ``shutdown`` (it also shuts down at interpreter exit).

    Raises:
        ValueError: a bad argument or variable (unknown protocol, an endpoint that is not an
            ``http(s)://host[:port]`` URL, a header that is not a valid name/value, a non-positive
            interval or timeout, neither traces nor metrics); nothing is set up.
        RuntimeError: ``set_global=True`` and global providers are already set; nothing is set up.
        ImportError: the SDK or the protocol's exporter is not installed; the message says
            ``pip install "engram[otlp]"``.
    """
    # Check everything before building anything: bad input changes nothing.
    proto = _protocol(protocol)
    base = _endpoint(endpoint, "the endpoint argument", proto) if endpoint is not None else None
    extra_headers = _headers(headers)
    if service_name is not None and (not isinstance(service_name, str) or not service_name.strip()):
        raise ValueError(f"service_name must be a non-empty string, got {service_name!r}")
    if not traces and not metrics:
        raise ValueError("traces and metrics are both off: there is nothing to export")
    for name, seconds in (
        ("metric_export_interval", metric_export_interval),
        ("export_timeout", export_timeout),
    ):
        if seconds is not None and not (
            isinstance(seconds, int | float) and not isinstance(seconds, bool) and 0 < seconds < math.inf
        ):
            raise ValueError(f"{name} must be a positive number of seconds, got {seconds!r}")
    if base is None:
        env = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
        base = _endpoint(env, "OTEL_EXPORTER_OTLP_ENDPOINT", proto) if env else DEFAULT_ENDPOINTS[proto]
        signal_endpoints = {s: _signal_endpoint(s, base, proto) for s in ("traces", "metrics")}
    else:
        signal_endpoints = {s: _join(base, s, proto) for s in ("traces", "metrics")}

    sdk = _import_sdk(proto)
    resource = sdk.Resource.create({"service.name": service_name} if service_name else {})
    disabled = os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"

    global _global_export
    with _global_lock:
        if set_global and not disabled:
            _check_globals_free(traces, metrics)
        tracer_provider = meter_provider = None
        if traces:
            tracer_provider = sdk.TracerProvider(resource=resource, shutdown_on_exit=False)
            if not disabled:
                exporter = sdk.SpanExporter(
                    endpoint=signal_endpoints["traces"],
                    headers=_merged(extra_headers, "TRACES", proto),
                    timeout=export_timeout,
                )
                tracer_provider.add_span_processor(sdk.BatchSpanProcessor(exporter))
        if metrics:
            readers = []
            if not disabled:
                exporter = sdk.MetricExporter(
                    endpoint=signal_endpoints["metrics"],
                    headers=_merged(extra_headers, "METRICS", proto),
                    timeout=export_timeout,
                )
                interval = None if metric_export_interval is None else metric_export_interval * 1000
                readers.append(sdk.PeriodicExportingMetricReader(exporter, export_interval_millis=interval))
            meter_provider = sdk.MeterProvider(
                metric_readers=readers, resource=resource, shutdown_on_exit=False
            )
        made_global = set_global and not disabled
        if made_global:
            from opentelemetry import metrics as otel_metrics
            from opentelemetry import trace as otel_trace

            if tracer_provider is not None:
                otel_trace.set_tracer_provider(tracer_provider)
            if meter_provider is not None:
                otel_metrics.set_meter_provider(meter_provider)
        export = OTLPExport(
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            endpoint=base,
            protocol=proto,
            traces_endpoint=signal_endpoints["traces"] if traces else None,
            metrics_endpoint=signal_endpoints["metrics"] if metrics else None,
            service_name=str(resource.attributes.get("service.name", "")),
            enabled=not disabled,
            is_global=made_global,
        )
        if made_global:
            _global_export = export
    return export


# -- checks ------------------------------------------------------------------------------------


def _protocol(protocol: str | None) -> Protocol:
    source = "protocol"
    if protocol is None:
        protocol = os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "").strip() or "http/protobuf"
        source = "OTEL_EXPORTER_OTLP_PROTOCOL"
    if protocol in PROTOCOLS:
        return protocol  # type: ignore[return-value]
    if protocol == "http/json":
        raise ValueError(
            f"{source}: http/json is not supported by the Python OTLP exporters; use http/protobuf or grpc"
        )
    raise ValueError(f"{source} must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")


def _endpoint(url: Any, source: str, protocol: Protocol) -> str:
    example = DEFAULT_ENDPOINTS[protocol].replace("localhost", "127.0.0.1")
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"{source} must be a URL such as {example}, got {url!r}")
    url = url.strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as exc:
        raise ValueError(f"{source} {url!r} is not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"{source} must be an http:// or https:// URL with a host, such as {example}; got {url!r}"
        )
    if parts.query or parts.fragment:
        raise ValueError(f"{source} {url!r} must not have a query or fragment")
    path = parts.path.rstrip("/")
    if protocol == "grpc" and path:
        raise ValueError(
            f"{source} {url!r}: an OTLP/gRPC endpoint has no path; use {parts.scheme}://{parts.netloc}"
        )
    if path.endswith(_SIGNAL_PATHS):
        raise ValueError(
            f"{source} {url!r} is the collector's base URL: engram appends /v1/traces and /v1/metrics "
            f"itself; use {url[: url.rfind('/v1/')]}"
        )
    return url


def _join(base: str, signal: str, protocol: Protocol) -> str:
    return base if protocol == "grpc" else f"{base.rstrip('/')}/v1/{signal}"


def _signal_endpoint(signal: str, base: str, protocol: Protocol) -> str:
    """The variables' endpoint for a signal: ``OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT`` as given (for
    HTTP the full URL, path included), else the base URL (with ``/v1/<signal>`` for HTTP)."""
    name = f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT"
    own = os.environ.get(name, "").strip()
    if not own:
        return _join(base, signal, protocol)
    parts = urlsplit(own)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{name} must be an http:// or https:// URL with a host; got {own!r}")
    return own


def _headers(headers: Mapping[str, str] | None) -> dict[str, str] | None:
    if headers is None:
        return None
    if not isinstance(headers, Mapping):
        raise ValueError(f"headers must be a mapping of names to values, got {type(headers).__name__}")
    out: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            raise ValueError(f"header name {name!r} is not a valid HTTP header name")
        if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
            raise ValueError(
                f"header {name!r}: the value must be a string without line breaks, got {value!r}"
            )
        out[name.lower()] = value
    return out


def _merged(headers: dict[str, str] | None, signal: str, protocol: Protocol) -> dict[str, str] | None:
    """The headers to pass to an exporter. Over HTTP the exporter merges the variables' headers with
    the ones passed; the gRPC exporter uses either, so it gets the merge made here."""
    if headers is None or protocol != "grpc":
        return headers
    from opentelemetry.util.re import parse_env_headers

    raw = os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_HEADERS") or os.environ.get(
        "OTEL_EXPORTER_OTLP_HEADERS", ""
    )
    return {**{k.lower(): v for k, v in parse_env_headers(raw, liberal=True).items()}, **headers}


def _check_globals_free(traces: bool, metrics: bool) -> None:
    from opentelemetry import metrics as otel_metrics
    from opentelemetry import trace as otel_trace

    if _global_export is not None:
        raise RuntimeError(
            "configure_otlp(set_global=True) already ran in this process (exporting to "
            f"{_global_export.endpoint} over {_global_export.protocol}); OpenTelemetry's global providers "
            "can be set once per process. Keep using the OTLPExport it returned, or pass set_global=False "
            "for providers of your own."
        )
    taken = []
    if traces and not isinstance(otel_trace.get_tracer_provider(), otel_trace.ProxyTracerProvider):
        taken.append(f"tracer provider ({type(otel_trace.get_tracer_provider()).__name__})")
    if metrics and type(otel_metrics.get_meter_provider()).__name__ != "_ProxyMeterProvider":
        taken.append(f"meter provider ({type(otel_metrics.get_meter_provider()).__name__})")
    if taken:
        raise RuntimeError(
            f"a global OpenTelemetry {' and '.join(taken)} is already set in this process, and it can be set "
            "once; engram's spans and metrics already go to it. Pass set_global=False to get providers of "
            "your own."
        )


# -- the SDK, imported on use -------------------------------------------------------------------


def _load_sdk(protocol: Protocol) -> SimpleNamespace:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    return SimpleNamespace(
        MeterProvider=MeterProvider,
        PeriodicExportingMetricReader=PeriodicExportingMetricReader,
        Resource=Resource,
        TracerProvider=TracerProvider,
        BatchSpanProcessor=BatchSpanProcessor,
        SpanExporter=OTLPSpanExporter,
        MetricExporter=OTLPMetricExporter,
    )


def _import_sdk(protocol: Protocol) -> SimpleNamespace:
    try:
        return _load_sdk(protocol)
    except ImportError as exc:
        raise ImportError(
            f"OTLP export needs the OpenTelemetry SDK and OTLP exporters ({exc.name or exc} is missing): "
            f"{INSTALL_HINT}",
            name=exc.name,
        ) from exc
