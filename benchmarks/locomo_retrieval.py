"""Retrieval quality on LoCoMo: does search put a question's evidence turns near the top?

    uv run python benchmarks/locomo_retrieval.py            # all dev conversations; rewrites docs/benchmarks.md
    uv run python benchmarks/locomo_retrieval.py --quick    # first conversation only, prints only
    uv run python benchmarks/locomo_retrieval.py --embedder hash --no-write

For each conversation of ``../shared/data/locomo/locomo_dev.json`` (LoCoMo, Maharana et al., ACL
2024; CC BY-NC 4.0, read in place and never copied), every turn is stored verbatim as one memory
(role ``user``, the speaker as its name, the session's date as its time, ``dia_id`` and ``session``
in its metadata) in one scope per conversation (``user_id`` = the sample id), through
``AsyncMemory.import_items`` (the path ``engram import`` uses): one embedding batch, one SQLite
file in a temp directory for the run. No LLM is involved. Then every question is asked in its
conversation's scope and the ranked turns are scored against the question's evidence ``dia_id``s.

Systems compared on the same stored turns:

- ``engram`` default: ``AsyncMemory.search`` with the default config (sqlite store, local
  embedder, dense + FTS5 BM25 fused by relative score fusion 0.4/0.6, neighbour expansion, the
  speaker / "when" / time-window boosts; see ``search.boost`` in docs/configuration.md).
- Ablations of the default: without neighbour expansion; without the query boosts; fusion alone
  (no expansion, no boosts); fusion alone with equal-weight RRF.
- ``--reranker SPEC`` adds a row: the default plus that reranker (``MemoryConfig.reranker``).
- ``dense only``: the sqlite store's dense path alone (cosine over the local embeddings).
- ``FTS5 BM25 only``: the sqlite store's lexical path alone.
- ``BM25 baseline``: independent of engram, ``rank_bm25.BM25Okapi`` (k1=1.5, b=0.75) over
  lower-cased ``\\w+`` tokens of each conversation's turns: the text alone, and (a second row)
  ``"<speaker>: <text>"``, the form engram indexes.

Metrics, per question then averaged per category: Recall@k = the fraction of the question's
evidence turns in the top k; nDCG@10 with binary relevance (each evidence turn gains 1, discounted
by log2(rank + 1), normalised by the ideal ranking). Evidence ids are normalised (``"D8:6; D9:17"``
-> two ids, ``"D:11:26"`` -> ``D11:26``, ``"D30:05"`` -> ``D30:5``); ids that name no turn of the
conversation are dropped and questions left without evidence are skipped (both counted). Categories:
1 multi-hop, 2 temporal, 3 open-domain, 4 single-hop; "overall" averages the questions of 1-4.
Category 5 (adversarial: the answer is not in the conversation) is reported on its own row and
left out of the overall figure.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import re
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, machine, percentile, table, write_section

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "locomo" / "locomo_dev.json"
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}
MAIN = (1, 2, 3, 4)
_EVIDENCE = re.compile(r"D\s*:?\s*(\d+)\s*:\s*(\d+)")
_TOKEN = re.compile(r"\w+")
TOP = 10
DEFAULT = "engram (default)"
_NO_BOOSTS = {"speaker": 0.0, "temporal": 0.0, "time_window": 0.0}
# Ablations of the default, each a `search` config section.
VARIANTS = {
    "default without neighbour expansion": {"boost": {"neighbors": 0.0}},
    "default without query boosts": {"boost": _NO_BOOSTS},
    "fusion only (rsf 0.4 / 0.6)": {"boost": {**_NO_BOOSTS, "neighbors": 0.0}},
    "fusion only, equal-weight rrf": {
        "boost": {**_NO_BOOSTS, "neighbors": 0.0},
        "fusion": {"method": "rrf", "dense_weight": 1.0, "lexical_weight": 1.0},
    },
}


def normalize_ids(raw: object) -> list[str]:
    """``"D8:6; D9:17"`` -> ``["D8:6", "D9:17"]``; ``"D:11:26"`` -> ``["D11:26"]``; ``"D30:05"`` -> ``["D30:5"]``."""
    items = raw if isinstance(raw, list) else [raw]
    out: list[str] = []
    for it in items:
        if isinstance(it, str):
            for a, b in _EVIDENCE.findall(it):
                nid = f"D{int(a)}:{int(b)}"
                if nid not in out:
                    out.append(nid)
    return out


@dataclass
class Turn:
    dia_id: str
    speaker: str
    text: str
    session: int
    date: str | None


@dataclass
class Question:
    text: str
    category: int
    evidence: list[str]


@dataclass
class Conversation:
    sample_id: str
    turns: list[Turn] = field(default_factory=list)
    questions: list[Question] = field(default_factory=list)
    dropped_ids: int = 0
    skipped_questions: int = 0


def load(path: Path, limit: int | None = None) -> list[Conversation]:
    data = json.loads(path.read_text(encoding="utf-8"))
    convs = []
    for sample in data[:limit] if limit else data:
        c = Conversation(str(sample["sample_id"]))
        conv = sample["conversation"]
        sessions = sorted(
            (int(m.group(1)), k)
            for k in conv
            if (m := re.fullmatch(r"session_(\d+)", k)) and isinstance(conv[k], list)
        )
        for num, key in sessions:
            date = conv.get(f"{key}_date_time")
            for t in conv[key]:
                ids = normalize_ids(t.get("dia_id"))
                text = t.get("text")
                if ids and isinstance(text, str) and text.strip():
                    c.turns.append(Turn(ids[0], str(t.get("speaker", "")), text, num, date))
        known = {t.dia_id for t in c.turns}
        for qa in sample.get("qa", []):
            ev = normalize_ids(qa.get("evidence", []))
            good = [e for e in ev if e in known]
            c.dropped_ids += len(ev) - len(good)
            if not good or qa.get("category") not in CATEGORIES:
                c.skipped_questions += 1
                continue
            c.questions.append(Question(str(qa["question"]), int(qa["category"]), good))
        convs.append(c)
    return convs


# -- metrics ------------------------------------------------------------------------------------------


def recall_at(ranked: list[str], relevant: list[str], k: int) -> float:
    return len(set(ranked[:k]) & set(relevant)) / len(relevant)


def ndcg_at(ranked: list[str], relevant: list[str], k: int = TOP) -> float:
    rel = set(relevant)
    dcg = sum(1.0 / math.log2(i + 2) for i, d in enumerate(ranked[:k]) if d in rel)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(rel), k)))
    return dcg / ideal


@dataclass
class Scores:
    per_cat: dict[int, list[tuple[float, float, float]]] = field(default_factory=lambda: defaultdict(list))
    latency_ms: list[float] = field(default_factory=list)

    def add(self, q: Question, ranked: list[str], ms: float) -> None:
        self.per_cat[q.category].append(
            (recall_at(ranked, q.evidence, 5), recall_at(ranked, q.evidence, 10), ndcg_at(ranked, q.evidence))
        )
        self.latency_ms.append(ms)

    def mean(self, cats: tuple[int, ...]) -> tuple[float, float, float, int]:
        rows = [r for c in cats for r in self.per_cat.get(c, [])]
        if not rows:
            return (float("nan"),) * 3 + (0,)  # type: ignore[return-value]
        n = len(rows)
        return sum(r[0] for r in rows) / n, sum(r[1] for r in rows) / n, sum(r[2] for r in rows) / n, n


# -- the systems ---------------------------------------------------------------------------------------


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


async def run(args: argparse.Namespace, convs: list[Conversation]) -> tuple[dict[str, Scores], dict]:
    from engram.core import AsyncMemory, MemoryItem, Scope, VectorQuery, content_hash, utcnow
    from rank_bm25 import BM25Okapi

    info: dict = {}
    systems = [
        DEFAULT,
        *([f"engram + reranker {args.reranker}"] if args.reranker else []),
        *VARIANTS,
        "dense only",
        "FTS5 BM25 only",
        "BM25 baseline (rank_bm25)",
        "BM25 baseline, speaker + text",
    ]
    scores = {s: Scores() for s in systems}
    with tempfile.TemporaryDirectory(prefix="engram-locomo-") as tmp:
        db = str(Path(tmp) / "locomo.db")
        embedder_spec = {"provider": args.embedder}
        base = {"vector_store": {"provider": "sqlite", "config": {"path": db}}, "embedder": embedder_spec}
        # "Now" for each conversation is its last session's date: "last year" and a month without a
        # year are read as the speakers would, and the figures do not depend on the day of the run.
        now: dict[str, dt.datetime | None] = {"t": None}

        def clock() -> dt.datetime:
            return now["t"] or utcnow()

        memory = AsyncMemory(base, clock=clock)
        ns = uuid.UUID("5d0c7d1e-2f6b-4a57-9a59-6c0cb1a3e0f1")
        items = []
        for c in convs:
            for t in c.turns:
                meta = {"role": "user", "speaker": t.speaker, "dia_id": t.dia_id, "session": t.session}
                when = _parse_date(t.date)
                if when is not None:
                    meta["message_time"] = when.isoformat()
                items.append(
                    MemoryItem(
                        id=str(uuid.uuid5(ns, f"{c.sample_id}/{t.dia_id}")),
                        memory=t.text,
                        hash=content_hash(t.text),
                        user_id=c.sample_id,
                        metadata=meta,
                    )
                )
        t0 = time.perf_counter()
        await memory.import_items(items)
        info["ingest_s"] = time.perf_counter() - t0
        info["turns"] = len(items)
        print(
            f"[locomo] stored {len(items)} turns in {info['ingest_s']:.1f}s ({args.embedder} embedder)",
            file=sys.stderr,
            flush=True,
        )
        variants = {
            name: AsyncMemory({**base, "embedder": memory.embedder, "search": search}, clock=clock)
            for name, search in VARIANTS.items()
        }
        if args.reranker:
            spec = json.loads(args.reranker) if args.reranker.lstrip().startswith("{") else args.reranker
            variants = {f"engram + reranker {args.reranker}": AsyncMemory(
                {**base, "embedder": memory.embedder, "reranker": spec}, clock=clock
            ), **variants}
        store = memory.vector_store
        for c in convs:
            now["t"] = max((d for t in c.turns if (d := _parse_date(t.date)) is not None), default=None)
            scope = Scope(user_id=c.sample_id)
            order = [t.dia_id for t in c.turns]
            bm25 = BM25Okapi([tokens(t.text) for t in c.turns])
            bm25_sp = BM25Okapi([tokens(f"{t.speaker}: {t.text}") for t in c.turns])
            for q in c.questions:
                for name, mem in ((DEFAULT, memory), *variants.items()):
                    t = time.perf_counter()
                    res = await mem.search(q.text, user_id=c.sample_id, limit=TOP)
                    ms = (time.perf_counter() - t) * 1e3
                    scores[name].add(q, [r["metadata"].get("dia_id") for r in res["results"]], ms)
                t = time.perf_counter()
                vec = (await memory.embedder.embed([q.text], kind="query"))[0]
                hits = await store.search(VectorQuery(scope, vec, q.text, None, TOP, "dense"))
                scores["dense only"].add(
                    q, [h.item.metadata.get("dia_id") for h in hits], (time.perf_counter() - t) * 1e3
                )
                t = time.perf_counter()
                hits = await store.search(VectorQuery(scope, None, q.text, None, TOP, "lexical"))
                scores["FTS5 BM25 only"].add(
                    q, [h.item.metadata.get("dia_id") for h in hits], (time.perf_counter() - t) * 1e3
                )
                t = time.perf_counter()
                s = bm25.get_scores(tokens(q.text))
                ranked = sorted(range(len(order)), key=lambda i: -s[i])[:TOP]
                scores["BM25 baseline (rank_bm25)"].add(
                    q, [order[i] for i in ranked], (time.perf_counter() - t) * 1e3
                )
                t = time.perf_counter()
                s = bm25_sp.get_scores(tokens(q.text))
                ranked = sorted(range(len(order)), key=lambda i: -s[i])[:TOP]
                scores["BM25 baseline, speaker + text"].add(
                    q, [order[i] for i in ranked], (time.perf_counter() - t) * 1e3
                )
        for mem in variants.values():
            await mem.aclose()
        await memory.aclose()
    return scores, info


def _parse_date(text: str | None) -> dt.datetime | None:
    """LoCoMo's ``"1:56 pm on 8 May, 2023"`` as aware UTC (LoCoMo gives no zone), else ``None``."""
    if not text:
        return None
    m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*([ap]m)\s+on\s+(\d{1,2})\s+(\w+),?\s+(\d{4})\s*", text, re.I)
    if not m:
        return None
    h, mi, ap, d, mon, y = m.groups()
    try:
        month = dt.datetime.strptime(mon[:3], "%b").month
    except ValueError:
        return None
    hour = int(h) % 12 + (12 if ap.lower() == "pm" else 0)
    return dt.datetime(int(y), month, int(d), hour, int(mi), tzinfo=dt.UTC)


# -- report ---------------------------------------------------------------------------------------------


def verdict(scores: dict[str, Scores]) -> str:
    """The issue's targets, checked on this run: R@10 >= 0.65 overall, and in every category 1-4
    the default at least as good as each BM25 row (rank_bm25 and FTS5) in R@5, R@10 and nDCG@10."""
    r10 = scores[DEFAULT].mean(MAIN)[1]
    worse = []
    for c in MAIN:
        mine = scores[DEFAULT].mean((c,))
        for b in ("BM25 baseline (rank_bm25)", "BM25 baseline, speaker + text", "FTS5 BM25 only"):
            theirs = scores[b].mean((c,))
            for i, metric in enumerate(("R@5", "R@10", "nDCG@10")):
                if mine[i] < theirs[i]:
                    worse.append(f"category {c} {metric} below {b} ({f3(mine[i])} < {f3(theirs[i])})")
    return (
        f"Targets: R@10 over categories 1-4 is {f3(r10)} ({'meets' if r10 >= 0.65 else 'misses'} 0.65); "
        + ("in every category the default is at or above every BM25 row in R@5, R@10 and nDCG@10."
           if not worse else "below a BM25 row: " + "; ".join(worse) + ".")
    )


def f3(x: float) -> str:
    return "n/a" if x != x else f"{x:.3f}"


def report(
    scores: dict[str, Scores], convs: list[Conversation], info: dict, args: argparse.Namespace, cmd: str
) -> str:
    systems = list(scores)
    baseline = "BM25 baseline (rank_bm25)"
    n_q = {c: sum(1 for conv in convs for q in conv.questions if q.category == c) for c in CATEGORIES}
    lines = [
        f"Machine: {machine()}.",
        "",
        f"Command: `{cmd}`. Data: {len(convs)} LoCoMo dev conversation{'s' if len(convs) != 1 else ''} ({', '.join(c.sample_id for c in convs)}), "
        f"{info['turns']} turns stored verbatim, one scope per conversation, `{args.embedder}` embedder, "
        f"sqlite store; {sum(n_q[c] for c in MAIN)} questions in categories 1-4 and {n_q[5]} in category 5 "
        f"(questions skipped for lack of valid evidence: {sum(c.skipped_questions for c in convs)}; "
        f"evidence ids dropped for naming no turn: {sum(c.dropped_ids for c in convs)}). Storing and embedding the "
        f"turns took {info['ingest_s']:.1f} s.",
        "",
        "Overall (categories 1-4; category 5 excluded):",
        "",
    ]
    base = scores[baseline].mean(MAIN)
    rows = []
    for s in systems:
        r5, r10, nd, n = scores[s].mean(MAIN)
        p50 = percentile(scores[s].latency_ms, 50)
        rows.append(
            [s, n, f3(r5), f3(r10), f3(nd), f"{nd / base[2]:.2f}×" if base[2] else "n/a", f"{p50:.2f}"]
        )
    lines.append(
        table(
            ["system", "questions", "R@5", "R@10", "nDCG@10", "nDCG@10 vs BM25 baseline", "search p50 ms"],
            rows,
        )
    )
    lines += [
        "",
        "Per category, R@5 / R@10 / nDCG@10 (n = questions):",
        "",
    ]
    rows = []
    shown = [s for s in systems if s not in VARIANTS or s == "fusion only (rsf 0.4 / 0.6)"]
    for c in (*MAIN, "overall", 5):
        cats = MAIN if c == "overall" else (c,)
        label = (
            "overall 1-4"
            if c == "overall"
            else f"{c} {CATEGORIES[c]}" + (" (not in overall)" if c == 5 else "")
        )
        cells = []
        for s in shown:
            r5, r10, nd, _ = scores[s].mean(cats)
            cells.append(f"{f3(r5)} / {f3(r10)} / {f3(nd)}")
        rows.append([label, str(scores[systems[0]].mean(cats)[3]), *cells])
    lines.append(table(["category", "n", *shown], rows))
    lines += ["", verdict(scores)]
    lines += [
        "",
        "Search latency is per question, on the stored conversations, measured in this same run: for the "
        "engram rows it includes embedding the question with the embedder named above; `dense only` includes "
        "the embedding too; the BM25 rows do no embedding.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="LoCoMo JSON file (default: ../shared/data/locomo)"
    )
    ap.add_argument("--quick", action="store_true", help="first conversation only; no docs write")
    ap.add_argument("--conversations", type=int, default=None, help="use only the first N conversations")
    ap.add_argument("--embedder", default="local", help="embedder provider name (default: local)")
    ap.add_argument(
        "--reranker",
        default=None,
        help="also measure the default with this reranker: a provider name, URL or JSON spec "
        '(e.g. \'{"provider": "fastembed", "config": {"model_path": "..."}}\')',
    )
    ap.add_argument(
        "--write",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="rewrite the locomo section of docs/benchmarks.md (default: yes, except --quick)",
    )
    args = ap.parse_args(argv)
    if not args.data.is_file():
        print(
            f"[locomo] {args.data} is absent (it lives in ../shared beside the checkout); nothing to measure."
        )
        return 0
    limit = 1 if args.quick else args.conversations
    write = (
        (not args.quick and limit is None and args.embedder == "local") if args.write is None else args.write
    )
    convs = load(args.data, limit)
    scores, info = asyncio.run(run(args, convs))
    shown = ["--quick"] if args.quick else ([f"--conversations {limit}"] if limit else [])
    if args.embedder != "local":
        shown.append(f"--embedder {args.embedder}")
    if args.reranker:
        shown.append(f"--reranker '{args.reranker}'")
    cmd = " ".join(["uv run python benchmarks/locomo_retrieval.py", *shown])
    text = report(scores, convs, info, args, cmd)
    print(text)
    if write:
        write_section("locomo", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
