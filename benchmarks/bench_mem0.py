"""Side by side: Python mem0 and engram on the same add/search workload, in the same run.

mem0 is not a dependency of this workspace. Install it in a throwaway environment and run this
script with that environment's Python; engram's side runs in the workspace's ``.venv``:

    uv venv /tmp/mem0-env && uv pip install --python /tmp/mem0-env "mem0ai==2.2.1" psutil numpy
    /tmp/mem0-env/bin/python benchmarks/bench_mem0.py             # 2K and 10K; rewrites docs/benchmarks.md
    /tmp/mem0-env/bin/python benchmarks/bench_mem0.py --quick     # 2K, fewer calls, prints only

The workload is ``bench_ops.py``'s (same sentences, scopes, queries and counts, each size in a
fresh process for each library, the two libraries alternating). mem0 runs with no network and
no API key: its default local stack (Qdrant in local mode, on disk in a temp folder, and its
SQLite history), telemetry off (``MEM0_TELEMETRY=False``), ``add(..., infer=False)``, and its
embedder replaced in-process by a feature-hashing embedder of the same kind and size (384 dims)
as engram's ``hash``, so no model is in either measure. mem0's search is
``search(q, filters={"user_id": "u0"}, top_k=10)``; without its optional extras (fastembed,
spaCy) it runs dense search only, where engram's default also runs FTS5 BM25 and fuses the two.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, machine, peak_rss_mb, percentile, table, write_section
from bench_ops import Corpus, parse_size, size_label

ENGRAM_PY = ROOT / ".venv" / "bin" / "python"
_WORD = re.compile(r"\w+")


class HashEmbedding:
    """Signed feature hashing of lower-cased words (1.0) and word bigrams (0.5), L2-normalised: the
    same recipe and size as engram's ``hash`` embedder, in mem0's embedder interface."""

    def __init__(self, dims: int = 384) -> None:
        self.dims = dims
        self.config = None

    def embed(self, text: str, memory_action: str | None = None) -> list[float]:
        import numpy as np

        v = np.zeros(self.dims, dtype=np.float32)
        words = _WORD.findall(text.lower())
        grams = [(w, 1.0) for w in words] + [(f"{a} {b}", 0.5) for a, b in itertools.pairwise(words)]
        for g, w in grams:
            h = zlib.crc32(g.encode())
            v[h % self.dims] += w if (h >> 31) & 1 else -w
        n = float(np.linalg.norm(v))
        return (v / n if n else v).tolist()


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def run_mem0(args: argparse.Namespace) -> dict:
    n = args.size
    corpus = Corpus(seed=args.seed)
    others = [f"u{i}" for i in range(1, args.scopes)] or ["u0"]
    with tempfile.TemporaryDirectory(prefix="mem0-bench-") as tmp:
        os.environ["MEM0_TELEMETRY"] = "False"
        os.environ["MEM0_DIR"] = tmp  # mem0 keeps a user id file there; not in the home folder
        t0 = time.perf_counter()
        from mem0 import Memory

        out: dict = {"size": n, "import_ms": (time.perf_counter() - t0) * 1e3}
        cfg = {
            "vector_store": {
                "provider": "qdrant",
                "config": {"path": os.path.join(tmp, "qdrant"), "embedding_model_dims": 384, "on_disk": True},
            },
            # Never called: the embedder is replaced below and infer=False never calls the LLM.
            "embedder": {"provider": "openai", "config": {"api_key": "unused", "embedding_dims": 384}},
            "llm": {"provider": "openai", "config": {"api_key": "unused"}},
            "history_db_path": os.path.join(tmp, "history.db"),
        }
        memory = Memory.from_config(cfg)
        memory.embedding_model = HashEmbedding(384)
        memory.add(corpus.sentence(), user_id="u0", infer=False)
        added = 1
        out["rss_idle_mb"] = rss_mb()
        singles = min(args.singles, max(n - added, 0))
        batched = n - added - singles
        call = 0
        t0 = time.perf_counter()
        while batched > 0:
            k = min(args.batch, batched)
            scope = "u0" if call % 2 == 0 else others[(call // 2) % len(others)]
            memory.add(
                [{"role": "user", "content": corpus.sentence()} for _ in range(k)], user_id=scope, infer=False
            )
            batched -= k
            added += k
            call += 1
        out["add_batched_us"] = (
            (time.perf_counter() - t0) / max(added - 1, 1) * 1e6 if added > 1 else float("nan")
        )
        single_us = []
        for i in range(singles):
            scope = "u0" if i % 2 == 0 else others[(i // 2) % len(others)]
            text = corpus.sentence()
            t = time.perf_counter()
            memory.add(text, user_id=scope, infer=False)
            single_us.append((time.perf_counter() - t) * 1e6)
        out["add_single_us"] = {
            "mean": sum(single_us) / len(single_us),
            "p50": percentile(single_us, 50),
            "p95": percentile(single_us, 95),
        }
        queries = [corpus.query() for _ in range(args.warmup + args.queries)]
        for q in queries[: args.warmup]:
            memory.search(q, filters={"user_id": "u0"}, top_k=10)
        lat = []
        for q in queries[args.warmup :]:
            t = time.perf_counter()
            memory.search(q, filters={"user_id": "u0"}, top_k=10)
            lat.append((time.perf_counter() - t) * 1e3)
        out["search_ms"] = {"p50": percentile(lat, 50), "p95": percentile(lat, 95)}
        out["rss_peak_mb"] = peak_rss_mb()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="2k,10k")
    ap.add_argument("--quick", action="store_true", help="2K, 50 queries, 200 single adds; no docs write")
    ap.add_argument("--scopes", type=int, default=10)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--singles", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--write", action=argparse.BooleanOptionalAction, default=None)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.size is not None:
        print(json.dumps(run_mem0(args)))
        return 0
    from importlib.metadata import PackageNotFoundError, version

    try:  # not imported here: this process spawns the measured ones and must stay small
        mem0_version = version("mem0ai")
    except PackageNotFoundError:
        print("[bench_mem0] mem0 is not installed in this Python; see the docstring for how to run this.")
        return 0
    if not ENGRAM_PY.exists():
        print(f"[bench_mem0] {ENGRAM_PY} is missing: run `uv sync` in the workspace first.")
        return 1
    if args.quick:
        args.sizes, args.queries, args.singles = "2k", 50, 200
    write = (not args.quick) if args.write is None else args.write
    common = ["--scopes", str(args.scopes), "--batch", str(args.batch), "--singles", str(args.singles),
              "--queries", str(args.queries), "--warmup", str(args.warmup), "--seed", str(args.seed)]  # fmt: skip
    rows, ratios = [], []
    for n in [parse_size(s) for s in args.sizes.split(",") if s.strip()]:
        res = {}
        for lib, cmd in (
            ("mem0", [sys.executable, __file__, "--size", str(n), *common]),
            (
                "engram",
                [str(ENGRAM_PY), str(ROOT / "benchmarks" / "bench_ops.py"), "--size", str(n), *common],
            ),
        ):
            print(f"[bench_mem0] {lib}: {n:,} memories ...", file=sys.stderr, flush=True)
            p = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if p.returncode != 0:
                print(p.stderr, file=sys.stderr)
                return 1
            res[lib] = json.loads(p.stdout.strip().splitlines()[-1])
        for lib in ("mem0", "engram"):
            r = res[lib]
            s = r["add_single_us"]
            rows.append([
                size_label(n), f"{lib} {mem0_version}" if lib == "mem0" else "engram (sqlite)",
                f"{s['mean']:,.0f} / {s['p50']:,.0f} / {s['p95']:,.0f}", f"{r['add_batched_us']:,.0f}",
                f"{r['search_ms']['p50']:.2f}", f"{r['search_ms']['p95']:.2f}",
                f"{r['rss_idle_mb']:.0f}", f"{r['rss_peak_mb']:.0f}",
            ])  # fmt: skip
        m, e = res["mem0"], res["engram"]
        ratios.append([
            size_label(n),
            f"{m['add_single_us']['mean'] / e['add_single_us']['mean']:.1f}×",
            f"{m['add_batched_us'] / e['add_batched_us']:.1f}×",
            f"{m['search_ms']['p50'] / e['search_ms']['p50']:.1f}×",
            f"{m['rss_idle_mb'] / e['rss_idle_mb']:.1f}×",
            f"{m['rss_peak_mb'] / e['rss_peak_mb']:.1f}×",
        ])  # fmt: skip
    cmd = "/tmp/mem0-env/bin/python benchmarks/bench_mem0.py" + (" --quick" if args.quick else "")
    text = "\n".join([
        f"Machine: {machine()}.",
        "",
        f"Command: `{cmd}` (mem0ai {mem0_version}, its default local stack: Qdrant local mode on disk + "
        "SQLite history; no extras, so no BM25 and no spaCy). Same workload as above, both libraries "
        "measured in this run.",
        "",
        table(["memories", "library", "add, 1 msg/call: µs mean / p50 / p95", "add, batched: µs/msg",
               "search p50 ms", "search p95 ms", "RSS idle MB", "peak RSS MB"], rows),
        "",
        "mem0 ÷ engram (above 1: engram is faster or smaller):",
        "",
        table(["memories", "add, 1 msg/call (mean)", "add, batched", "search p50", "RSS idle", "peak RSS"],
              ratios),
    ])  # fmt: skip
    print(text)
    if write:
        write_section("bench_mem0", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
