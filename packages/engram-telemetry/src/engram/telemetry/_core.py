"""Tracer and meter access, the span scopes engram opens, and its three histograms.

Only the OpenTelemetry API is imported. With no SDK configured the API hands out no-op tracers and
meters: a span scope then costs a few attribute lookups and function calls, and no attribute
dictionary is built (static attributes are built once per operation name or provider; dynamic
ones only when ``span.is_recording()``).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass
from time import perf_counter
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from . import _attributes as A

__all__ = [
    "GenAIClient",
    "GenAISpan",
    "Instruments",
    "SpanScope",
    "Telemetry",
    "current_llm_task",
    "error_type",
    "get_telemetry",
    "llm_task",
    "scope_version",
]

_VERSION: str | None = None


def scope_version() -> str:
    """engram-telemetry's version, the instrumentation scope's version."""
    global _VERSION
    if _VERSION is None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            _VERSION = version("engram-telemetry")
        except PackageNotFoundError:  # run from a source tree that is not installed
            _VERSION = "0"
    return _VERSION


def error_type(exc: BaseException) -> str:
    """``error.type`` for an exception: ``module.QualName`` (``builtins`` left out), as the SDK
    writes ``exception.type``; e.g. ``"engram.core.errors.ProviderError"``, ``"TimeoutError"``."""
    t = type(exc)
    module = t.__module__
    return t.__qualname__ if module in (None, "builtins") else f"{module}.{t.__qualname__}"


@dataclass(frozen=True, slots=True)
class Instruments:
    """The three histograms of the contract, created once per :class:`Telemetry`."""

    operation_duration: metrics.Histogram
    gen_ai_duration: metrics.Histogram
    token_usage: metrics.Histogram


class Telemetry:
    """Where engram's spans and metrics go.

    Args:
        tracer_provider: an OpenTelemetry ``TracerProvider``; ``None`` uses the API's global one
            (``opentelemetry.trace``), including one an application sets after this object is made.
        meter_provider: likewise for metrics (``opentelemetry.metrics``).

    The tracer and meter (scope ``"engram"``, version engram-telemetry's) and the histograms are
    created on first use and kept.
    """

    __slots__ = ("_instruments", "_lock", "_meter", "_meter_provider", "_op_attrs", "_tracer", "_tracer_provider")

    def __init__(self, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self._tracer: trace.Tracer | None = None
        self._meter: metrics.Meter | None = None
        self._instruments: Instruments | None = None
        self._op_attrs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    @property
    def tracer(self) -> trace.Tracer:
        t = self._tracer
        if t is None:
            provider = self._tracer_provider
            if provider is None:
                t = trace.get_tracer(A.SCOPE_NAME, scope_version())
            else:
                t = provider.get_tracer(A.SCOPE_NAME, scope_version())
            self._tracer = t
        return t

    @property
    def meter(self) -> metrics.Meter:
        m = self._meter
        if m is None:
            provider = self._meter_provider
            if provider is None:
                m = metrics.get_meter(A.SCOPE_NAME, scope_version())
            else:
                m = provider.get_meter(A.SCOPE_NAME, scope_version())
            self._meter = m
        return m

    @property
    def instruments(self) -> Instruments:
        inst = self._instruments
        if inst is None:
            with self._lock:
                inst = self._instruments
                if inst is None:
                    m = self.meter
                    inst = self._instruments = Instruments(
                        operation_duration=m.create_histogram(
                            A.METRIC_OPERATION_DURATION, unit="s",
                            description="Duration of engram operations (AsyncMemory calls).",
                            explicit_bucket_boundaries_advisory=A.OPERATION_DURATION_BUCKETS,
                        ),
                        gen_ai_duration=m.create_histogram(
                            A.METRIC_GEN_AI_DURATION, unit="s",
                            description="GenAI operation duration (LLM chat and embedding calls).",
                            explicit_bucket_boundaries_advisory=A.GEN_AI_DURATION_BUCKETS,
                        ),
                        token_usage=m.create_histogram(
                            A.METRIC_GEN_AI_TOKEN_USAGE, unit="{token}",
                            description="Number of input and output tokens used per LLM call.",
                            explicit_bucket_boundaries_advisory=A.GEN_AI_TOKEN_BUCKETS,
                        ),
                    )
        return inst

    def operation(self, op: str) -> SpanScope:
        """The span (``engram.<op>``, INTERNAL) and duration metric of one public operation.

        Use as ``with telemetry.operation("search") as span: ...``; an exception leaving the block
        is recorded (status ERROR, ``error.type``) and re-raised.
        """
        attrs = self._op_attrs.get(op)
        if attrs is None:
            attrs = self._op_attrs[op] = {A.ENGRAM_OPERATION: op}
        return SpanScope(self, "engram." + op, SpanKind.INTERNAL, attrs, self.instruments.operation_duration, attrs)

    def client_span(self, name: str, attributes: Mapping[str, Any] | None = None) -> SpanScope:
        """A CLIENT span for one provider call (no metric). ``attributes`` is passed to the tracer
        as given: build it once per provider, not per call."""
        return SpanScope(self, name, SpanKind.CLIENT, attributes)


class SpanScope:
    """Context manager around one span: makes it current, times it, records an escaping
    exception, ends it. ``recording`` tells whether setting attributes has any effect."""

    __slots__ = ("_attrs", "_hist", "_kind", "_mattrs", "_name", "_t0", "_tel", "_token", "recording", "span")

    def __init__(
        self, tel: Telemetry, name: str, kind: SpanKind, attributes: Mapping[str, Any] | None,
        histogram: metrics.Histogram | None = None, metric_attributes: Mapping[str, Any] | None = None,
    ) -> None:
        self._tel, self._name, self._kind, self._attrs = tel, name, kind, attributes
        self._hist, self._mattrs = histogram, metric_attributes
        self._token: Token[Any] | None = None
        self._t0 = 0.0
        self.recording = False
        self.span: trace.Span = trace.INVALID_SPAN

    def __enter__(self) -> SpanScope:
        span = self._tel.tracer.start_span(self._name, kind=self._kind, attributes=self._attrs)
        self.span = span
        self.recording = span.is_recording()
        # A no-op span with no parent has an invalid context: nothing to make current.
        if span.get_span_context().is_valid:
            self._token = otel_context.attach(trace.set_span_in_context(span))
        self._t0 = perf_counter()
        return self

    def set(self, key: str, value: Any) -> None:
        """Set one attribute when the span records (``value`` must already be computed; guard
        costly values with ``if scope.recording``)."""
        if self.recording:
            self.span.set_attribute(key, value)

    def set_scope(self, scope: Any) -> None:
        """``engram.scope.kind`` from a :class:`~engram.core.Scope` (its kind, never its ids)."""
        if self.recording and scope is not None:
            self.span.set_attribute(A.ENGRAM_SCOPE_KIND, scope.kind)

    def _failed(self, exc: BaseException) -> str:
        etype = error_type(exc)
        if self.recording:
            span = self.span
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__qualname__}: {exc}"))
            span.set_attribute(A.ERROR_TYPE, etype)
        return etype

    def __exit__(self, et: Any, exc: BaseException | None, tb: Any) -> None:
        elapsed = perf_counter() - self._t0
        try:
            etype = self._failed(exc) if exc is not None else None
            self._record(elapsed, etype)
        finally:
            self.span.end()
            if self._token is not None:
                otel_context.detach(self._token)
                self._token = None

    def _record(self, elapsed: float, etype: str | None) -> None:
        hist = self._hist
        if hist is not None:
            attrs = self._mattrs if etype is None else {**(self._mattrs or {}), A.ERROR_TYPE: etype}
            hist.record(elapsed, attrs)


class GenAIClient:
    """A provider's GenAI identity (operation, system, model) with its span name and attribute
    sets built once.

    Args:
        telemetry: where the spans and metrics go.
        operation: ``"chat"`` or ``"embeddings"`` (``gen_ai.operation.name``).
        system: the provider's name (``"openai"``, ``"scripted"``, ``"local"`` ...), written as
            both ``gen_ai.system`` and ``gen_ai.provider.name``.
        model: the requested model, when the provider has one.
    """

    __slots__ = ("input_attrs", "metric_attrs", "name", "output_attrs", "span_attrs", "telemetry")

    def __init__(self, telemetry: Telemetry, operation: str, system: str, model: str | None) -> None:
        self.telemetry = telemetry
        self.name = f"{operation} {model}" if model else operation
        metric = {A.GEN_AI_OPERATION_NAME: operation, A.GEN_AI_SYSTEM: system}
        if model:
            metric[A.GEN_AI_REQUEST_MODEL] = model
        self.metric_attrs = metric
        self.span_attrs = {**metric, A.GEN_AI_PROVIDER_NAME: system, A.ENGRAM_PROVIDER: system}
        self.input_attrs = {**metric, A.GEN_AI_TOKEN_TYPE: "input"}
        self.output_attrs = {**metric, A.GEN_AI_TOKEN_TYPE: "output"}

    def span(self) -> GenAISpan:
        """The CLIENT span and ``gen_ai.client.operation.duration`` record of one call."""
        tel = self.telemetry
        return GenAISpan(
            tel, self.name, SpanKind.CLIENT, self.span_attrs, tel.instruments.gen_ai_duration, self.metric_attrs
        )


class GenAISpan(SpanScope):
    """A :class:`SpanScope` for a GenAI call that also records token usage."""

    __slots__ = ()

    def usage(self, client: GenAIClient, response_model: str | None, input_tokens: int | None,
              output_tokens: int | None) -> None:
        """Record what the response reported: ``gen_ai.response.model``, ``gen_ai.usage.*`` on the
        span, and ``gen_ai.client.token.usage`` for each count that is known."""
        if self.recording:
            span = self.span
            if response_model:
                span.set_attribute(A.GEN_AI_RESPONSE_MODEL, response_model)
            if input_tokens is not None:
                span.set_attribute(A.GEN_AI_USAGE_INPUT_TOKENS, input_tokens)
            if output_tokens is not None:
                span.set_attribute(A.GEN_AI_USAGE_OUTPUT_TOKENS, output_tokens)
        hist = self._tel.instruments.token_usage
        if input_tokens is not None:
            hist.record(input_tokens, client.input_attrs)
        if output_tokens is not None:
            hist.record(output_tokens, client.output_attrs)


# -- the LLM task --------------------------------------------------------------------------------

_LLM_TASK: ContextVar[str | None] = ContextVar("engram_llm_task", default=None)


class llm_task:  # lower case: used like a function, ``with llm_task("decide"): ...``
    """Name what the LLM calls inside the block are for (``engram.llm.task``), e.g.
    ``"extract_facts"``. Task groups started inside inherit it (it is a context variable)."""

    __slots__ = ("_task", "_token")

    def __init__(self, task: str) -> None:
        self._task = task
        self._token: Token[str | None] | None = None

    def __enter__(self) -> None:
        self._token = _LLM_TASK.set(self._task)

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _LLM_TASK.reset(self._token)
            self._token = None


def current_llm_task() -> str | None:
    """The task named by the innermost :class:`llm_task` block, or ``None``."""
    return _LLM_TASK.get()


# -- the default ------------------------------------------------------------------------------

_DEFAULT: Telemetry | None = None


def get_telemetry(tracer_provider: Any = None, meter_provider: Any = None) -> Telemetry:
    """A :class:`Telemetry` for these providers; with neither given, the shared one over the API's
    global providers (created on first call)."""
    global _DEFAULT
    if tracer_provider is not None or meter_provider is not None:
        return Telemetry(tracer_provider, meter_provider)
    if _DEFAULT is None:
        _DEFAULT = Telemetry()
    return _DEFAULT
