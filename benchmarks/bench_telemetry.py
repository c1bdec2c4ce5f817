"""What engram's telemetry costs: add and search with it off, on with no SDK, and on with an SDK.

    uv run python benchmarks/bench_telemetry.py                  # 2K memories; rewrites its section of docs/benchmarks.md
    uv run python benchmarks/bench_telemetry.py --n 10000 --embedder local --no-write
    uv run python benchmarks/bench_telemetry.py --quick          # small, prints only (nox -s bench -- --quick)

Three memories side by side in one process, each on its own SQLite file (temp dir), same data:

- ``off``: ``MemoryConfig(telemetry=False)``: no proxies, no spans, no metrics (the baseline);
- ``no SDK``: telemetry on with the API's global providers and no SDK configured, what a user
  who never turns export on runs: every span and metric is the API's no-op;
- ``SDK``: telemetry on with an SDK ``TracerProvider`` (``BatchSpanProcessor`` feeding an exporter
  that drops the spans) and an SDK ``MeterProvider`` (an in-memory reader): every span is
  built, attributed, ended and queued, and every metric aggregated, all but the network.

Measured (interleaved across the three, so load drifts hit each alike): add, batched (``--batch``
messages per call, µs per message, wall time of filling ``--n`` memories), add one message per
call (``--singles`` calls, p50/p95), and ``search(limit=10)`` (``--queries`` queries after
``--warmup``, p50/p95) in a scope holding half the memories. The hash embedder by default (no model
in the measure); ``--embedder local`` for the ONNX MiniLM. Ratios are to ``off``.

The results replace the ``bench_telemetry`` section of docs/benchmarks.md unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, machine, percentile, table, write_section
from bench_ops import Corpus

MODES = ("off", "no SDK", "SDK")
DOC = ROOT / "docs" / "benchmarks.md"


def sdk_providers() -> tuple[Any, Any]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Drop(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tp = TracerProvider()
    tp.add_span_processor(BatchSpanProcessor(Drop()))
    return tp, MeterProvider(metric_readers=[InMemoryMetricReader()])


async def run(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    from engram.core import AsyncMemory
    from opentelemetry import trace

    assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider", "a global SDK is configured"
    corpus = Corpus()
    texts = [corpus.sentence() for _ in range(args.n)]
    queries = [corpus.query() for _ in range(args.warmup + args.queries)]
    tp, mp = sdk_providers()
    tmp = tempfile.TemporaryDirectory(prefix="engram-bench-tel-")
    mems: dict[str, AsyncMemory] = {}
    for mode in MODES:
        cfg = {"vector_store": f"sqlite:///{tmp.name}/{mode.replace(' ', '_')}.db", "embedder": args.embedder,
               "telemetry": mode != "off"}
        mems[mode] = AsyncMemory(cfg, **({"tracer_provider": tp, "meter_provider": mp} if mode == "SDK" else {}))
    for mem in mems.values():  # imports, schema and first-call costs, outside the measure
        await mem.add(["warm up", "the store"], user_id="warmup", infer=False)
        await mem.search("warm up", user_id="warmup")
    stats: dict[str, dict[str, float]] = {m: {} for m in MODES}
    fill = texts[: args.n - args.singles]
    batch_time = dict.fromkeys(MODES, 0.0)
    for i in range(0, len(fill), args.batch):
        chunk = fill[i : i + args.batch]
        k = i // args.batch
        user = "u0" if k % 2 == 0 else f"u{1 + k % 7}"
        for mode in MODES[k % 3 :] + MODES[: k % 3]:  # rotate who goes first
            t0 = time.perf_counter()
            await mems[mode].add(chunk, user_id=user, infer=False)
            batch_time[mode] += time.perf_counter() - t0
    singles: dict[str, list[float]] = {m: [] for m in MODES}
    for k, text in enumerate(texts[len(fill) :]):
        for mode in MODES[k % 3 :] + MODES[: k % 3]:  # rotate who goes first
            t0 = time.perf_counter()
            await mems[mode].add(text, user_id="u0", infer=False)
            singles[mode].append(time.perf_counter() - t0)
    searches: dict[str, list[float]] = {m: [] for m in MODES}
    for k, q in enumerate(queries):
        for mode in MODES[k % 3 :] + MODES[: k % 3]:
            t0 = time.perf_counter()
            await mems[mode].search(q, user_id="u0", limit=10)
            if k >= args.warmup:
                searches[mode].append(time.perf_counter() - t0)
    for mode in MODES:
        await mems[mode].aclose()
        s = stats[mode]
        s["batched_us"] = batch_time[mode] / max(1, len(fill)) * 1e6
        s["single_p50_ms"], s["single_p95_ms"] = (percentile(singles[mode], q) * 1e3 for q in (50, 95))
        s["search_p50_ms"], s["search_p95_ms"] = (percentile(searches[mode], q) * 1e3 for q in (50, 95))
    tp.shutdown()
    mp.shutdown()
    tmp.cleanup()
    return stats


def report(stats: dict[str, dict[str, float]], args: argparse.Namespace) -> str:
    cols = [("add, batched (µs/message)", "batched_us"), ("add p50 (ms)", "single_p50_ms"),
            ("add p95 (ms)", "single_p95_ms"), ("search p50 (ms)", "search_p50_ms"),
            ("search p95 (ms)", "search_p95_ms")]
    base = stats["off"]
    rows = []
    for mode in MODES:
        s = stats[mode]
        cells = []
        for _, key in cols:
            fmt = f"{s[key]:.0f}" if key == "batched_us" else f"{s[key]:.2f}"
            cells.append(fmt if mode == "off" else f"{fmt} ({s[key] / base[key]:.2f}×)")
        rows.append([mode, *cells])
    cmd = "uv run python benchmarks/bench_telemetry.py" + ("" if args.n == 2000 else f" --n {args.n}") + (
        "" if args.embedder == "hash" else f" --embedder {args.embedder}")
    return "\n".join([
        f"`{cmd}`: {args.n} memories ({args.embedder} embedder, SQLite file store), add batched "
        f"{args.batch} messages per call, {args.singles} single adds, {args.queries} searches (limit 10) in "
        "a scope of half the memories; ratios to `off` in brackets.",
        "",
        table(["telemetry", *[c for c, _ in cols]], rows),
        "",
        f"Machine: {machine()}.",
    ])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=2000, help="memories per store (default 2000)")
    p.add_argument("--embedder", default="hash", help="hash (default) or local")
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--singles", type=int, default=500)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    p.add_argument(
        "--quick", action="store_true", help="500 memories, 100 single adds, 200 queries (CI smoke); no docs write"
    )
    args = p.parse_args()
    if args.quick:
        args.n, args.singles, args.queries, args.no_write = 500, 100, 200, True
    if args.singles >= args.n:
        p.error("--singles must be below --n")
    stats = asyncio.run(run(args))
    body = report(stats, args)
    print(body)
    if not args.no_write:
        write_section("bench_telemetry", body, DOC)


if __name__ == "__main__":
    main()
