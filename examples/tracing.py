"""Tracing engram with OpenTelemetry: export its spans and metrics over OTLP and see where they went.

The script turns export on with one call, ``engram.telemetry.configure_otlp(...)`` (it needs
``pip install "engram[otlp]"``), then adds two memories and searches them with an ordinary
:class:`AsyncMemory`, and prints where the spans went: the endpoint, the protocol, how many spans,
and the span tree (``--attributes`` adds each span's attributes).

Where it exports:

- ``--endpoint URL`` (a collector's base URL: ``http://localhost:4318`` for OTLP/HTTP, or
  ``http://localhost:4317`` with ``--protocol grpc``), or the standard ``OTEL_EXPORTER_OTLP_ENDPOINT``
  (and ``OTEL_EXPORTER_OTLP_PROTOCOL``, ``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_SERVICE_NAME`` ...):
  to your collector, Jaeger, Tempo, Honeycomb, ... The tree is printed from a copy the script keeps.
- neither: to an OTLP receiver the script starts on 127.0.0.1 itself
  (:mod:`engram.testing.otlp_receiver`, from ``engram-testing[otlp]``), which decodes what it gets;
  the tree is printed from what it decoded. Nothing leaves the machine.

Examples::

    uv run python examples/tracing.py                      # self-contained, OTLP/HTTP
    uv run python examples/tracing.py --protocol grpc --attributes
    docker run -p 4318:4318 -p 16686:16686 jaegertracing/jaeger:latest   # then, in another shell:
    uv run python examples/tracing.py --endpoint http://localhost:4318   # see http://localhost:16686
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import ExitStack
from typing import Any

import anyio
from engram.core import AsyncMemory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Export engram's spans and metrics over OTLP and print where they went.")
    parser.add_argument("--endpoint", help="the collector's base URL (default: OTEL_EXPORTER_OTLP_ENDPOINT, "
                        "else a receiver this script starts on 127.0.0.1)")
    parser.add_argument("--protocol", choices=["http/protobuf", "grpc"],
                        help="default: OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf")
    parser.add_argument("--embedder", default="hash", help="embedder name (default: hash, no model download)")
    parser.add_argument("--db", default=":memory:", help="SQLite file (default: in memory)")
    parser.add_argument("--attributes", action="store_true", help="print each span's attributes")
    args = parser.parse_args(argv)

    try:
        from engram.telemetry import configure_otlp
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    except ImportError as exc:
        print(f"error: {exc}; install the OpenTelemetry SDK: pip install \"engram[otlp]\"", file=sys.stderr)
        return 1

    with ExitStack() as stack:
        receiver = None
        endpoint = args.endpoint
        if endpoint is None and not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
            try:
                from engram.testing.otlp_receiver import OTLPReceiver
            except ImportError:
                print("error: no --endpoint or OTEL_EXPORTER_OTLP_ENDPOINT, and no local receiver to start "
                      "(it needs engram-testing[otlp]); give a collector's URL", file=sys.stderr)
                return 1
            receiver = stack.enter_context(OTLPReceiver())
            protocol = args.protocol or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf"
            endpoint = receiver.endpoint(protocol)
        try:
            export = configure_otlp(endpoint, protocol=args.protocol, service_name=_service_name())
        except (ImportError, ValueError, RuntimeError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        stack.callback(export.shutdown)
        sent = InMemorySpanExporter()  # a copy of every span, to count and draw them
        assert export.tracer_provider is not None
        export.tracer_provider.add_span_processor(SimpleSpanProcessor(sent))

        where = "a receiver this script started" if receiver else "your collector"
        print(f"exporting to {export.endpoint} over {export.protocol} ({where}), service {export.service_name}")
        anyio.run(_work, args.embedder, args.db)
        flushed = export.force_flush(10)

        spans = sent.get_finished_spans()
        traces = len({s.context.trace_id for s in spans if s.context is not None})
        print(f"\nsent {len(spans)} spans in {traces} traces to {export.traces_endpoint}"
              + ("" if flushed else " (the collector did not accept them all: see the SDK's log above)"))
        if receiver is not None:
            received = receiver.wait_for_spans(len(spans), timeout=10)
            points = receiver.wait_for_metric("engram.operation.duration", timeout=10)
            counts = {p.attributes["engram.operation"]: p.count for p in points}  # cumulative: the last wins
            print(f"the receiver decoded {len(received)} spans, and engram.operation.duration ({points[0].unit}) "
                  f"for {', '.join(f'{op} x{n}' for op, n in sorted(counts.items()))}; the span tree as received:\n")
            print(receiver.render_tree(attributes=args.attributes))
        else:
            print("the span tree as sent:\n")
            print(_render(spans, args.attributes))
    return 0


async def _work(embedder: str, db: str) -> None:
    # No telemetry argument: engram uses OpenTelemetry's global providers, which configure_otlp set.
    async with AsyncMemory({"vector_store": f"sqlite:///{db}", "embedder": embedder}) as memory:
        await memory.add("I drink green tea every morning", user_id="maya", infer=False)
        await memory.add("My sister lives in Lisbon", user_id="maya", infer=False)
        found = await memory.search("what do I drink?", user_id="maya", limit=2)
    print(f"added 2 memories; searched: {found['results'][0]['memory']!r} first")


def _service_name() -> str | None:
    return None if os.environ.get("OTEL_SERVICE_NAME") else "engram-tracing-example"


def _render(spans: Any, attributes: bool) -> str:
    """Indented trees of SDK spans, children under their parent by start time."""
    ids = {s.context.span_id for s in spans if s.context is not None}
    ordered = sorted(spans, key=lambda s: s.start_time or 0)
    lines: list[str] = []

    def draw(span: Any, depth: int) -> None:
        ms = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
        line = f"{'  ' * depth}{span.name}  [{span.kind.name}] {ms:.1f} ms"
        if attributes and span.attributes:
            line += "  " + " ".join(f"{k}={v!r}" for k, v in sorted(span.attributes.items()))
        lines.append(line)
        for child in ordered:
            if child.parent is not None and child.parent.span_id == span.context.span_id:
                draw(child, depth + 1)

    for root in ordered:
        if root.parent is None or root.parent.span_id not in ids:
            draw(root, 0)
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
