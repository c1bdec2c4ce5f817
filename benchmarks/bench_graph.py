"""Speed of graph memory: graph recall on each graph store, and what the graph adds to search.

    uv run python benchmarks/bench_graph.py                  # full sizes; rewrites docs/benchmarks.md
    uv run python benchmarks/bench_graph.py --quick          # small sizes, fewer rounds, prints only
    uv run python benchmarks/bench_graph.py --stores sqlite,memory --embedders hash --no-write

Part 1, graph recall per store (``--stores``, default ``sqlite,kuzu,memory``), all open side by side
in one process:

- A synthetic graph is written through ``GraphStore.apply`` in batches (``--batch`` entities, then
  relations): in scope ``u0``, ``--entities`` entities (pseudo-word names, one in five of two words)
  with random 384-dim unit embeddings and ``--relations`` relations whose endpoints are drawn with
  Zipf-like weights (a few hubs, a long tail), among about 30 predicates, one in ten expired (closed
  by a newer relation of the same source and predicate); plus a noise scope ``u1`` with a third as
  many entities, a third of them named as in ``u0`` (so the key lookups must filter by scope), and
  a third as many relations. ``sqlite`` and ``kuzu`` are on files in a temp dir; the build time of
  each store is its ``apply`` calls' wall time.
- Then ``--rounds`` rounds; in each round the stores take turns (in a shuffled order) answering the
  round's share of the queries, so noise on the shared machine falls on all of them alike:
  ``neighbors(u0, keys=..., depth=2, limit=50)`` with the n-gram keys of a 4-5 word question that
  names one or two random entities (as search calls it), ``entities(u0, keys=...)`` with those keys
  (about 9-12 keys, one or two of which exist), and ``similar_entities(u0, vec, limit=5)`` with an
  entity's embedding plus noise. p50 and p95 in ms.

Part 2, the overhead graph memory adds to search, per embedder (``--embedders``, default
``local,hash``; ``local`` runs offline, from the model already cached): ``--memories`` sentences, each naming one or two of ``--entities`` entity names,
are added (``infer=False``) to a SQLite vector store on a temp file, all in ``u0``. The graph is
built directly through the graph store's ``apply`` (no LLM): one relation per memory between the
entities it names, its ``memory_ids`` that memory, entity embeddings from the same embedder. Three
``AsyncMemory`` instances are then searched side by side: ``graph_store=None`` (off),
``graph_store="sqlite"`` sharing the vector store's file with that graph (on), and a SQLite graph
store on a separate, empty file (on, empty). Interleaved rounds, shuffled order per round; each
search ``search(q, user_id="u0", limit=10)``; p50 and p95 in ms and the p50 ratios.

The results replace the ``bench_graph`` section of docs/benchmarks.md unless ``--no-write``.
Exits non-zero if any store or search fails.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import random
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, percentile, table, write_section

DIMS = 384
PREDICATES = (
    "knows works_at lives_in likes dislikes visited owns manages reports_to married_to sibling_of "
    "friend_of member_of studied_at born_in plays uses wrote read bought sold met_at moved_to "
    "founded leads attends teaches prefers allergic_to has_pet"
).split()
SYLLS = [c + v for c in "bcdfghjklmnprstvwz" for v in ("a", "e", "i", "o", "u", "ai", "ou")]
WORDS = "trip plan dinner project weekend meeting book garden car house job team party concert gift".split()
STOP = "the a to and i of you it in that is was for my we on with have but so what be at".split()


def names(rng: random.Random, n: int) -> list[str]:
    """``n`` distinct capitalised pseudo-word names, one in five of two words."""
    out: dict[str, None] = {}
    while len(out) < n:
        w = "".join(rng.choice(SYLLS) for _ in range(rng.randint(2, 3))).capitalize()
        if rng.random() < 0.2:
            w += " " + "".join(rng.choice(SYLLS) for _ in range(rng.randint(2, 3))).capitalize()
        out[w] = None
    return list(out)


def zipf_cum(n: int, s: float = 1.0) -> list[float]:
    w = [1.0 / (r + 1) ** s for r in range(n)]
    total, acc, cum = sum(w), 0.0, []
    for x in w:
        acc += x / total
        cum.append(acc)
    return cum


def unit(rng, dims: int = DIMS):
    import numpy as np

    v = rng.standard_normal(dims).astype(np.float32)
    return v / np.linalg.norm(v)


def question(rng: random.Random, picked: list[str]) -> str:
    """A 4-5 word question (plus the names) naming the given entities."""
    w = rng.sample(WORDS, 2)
    form = rng.random()
    if len(picked) == 2:
        return f"did {picked[0]} meet {picked[1]} {w[0]}"
    if form < 0.5:
        return f"what about {picked[0]}'s {w[0]} {w[1]}"
    return f"where is {picked[0]} {w[0]}"


def interleaved(rng: random.Random, arms: list[str], queries: list, rounds: int):
    """``(arm, query)`` pairs: ``rounds`` rounds, each arm in a shuffled order taking the round's
    share of the queries, so that noise on the machine falls on every arm alike."""
    per = math.ceil(len(queries) / rounds)
    for rnd in range(rounds):
        chunk = queries[rnd * per : (rnd + 1) * per]
        order = list(arms)
        rng.shuffle(order)
        for arm in order:
            for q in chunk:
                yield arm, q


def within(rels: list, seeds: set[str], depth: int) -> set[str]:
    """Ids of the current relations within ``depth`` hops of ``seeds`` (what ``neighbors`` must
    walk before it can keep its best ``limit``)."""
    touching: dict[str, list] = {}
    for r in rels:
        if r.expired_at is None:
            touching.setdefault(r.source_id, []).append(r)
            touching.setdefault(r.destination_id, []).append(r)
    found: set[str] = set()
    seen, frontier = set(seeds), list(seeds)
    for _ in range(depth):
        nxt = []
        for e in frontier:
            for r in touching.get(e, ()):
                found.add(r.id)
                for other in (r.source_id, r.destination_id):
                    if other not in seen:
                        seen.add(other)
                        nxt.append(other)
        frontier = nxt
    return found


def stats(values: list[float]) -> dict:
    return {"p50": percentile(values, 50), "p95": percentile(values, 95), "n": len(values)}


# -- part 1: graph recall per store ------------------------------------------------------------------


def build_graph(
    rng: random.Random,
    n_ent: int,
    n_rel: int,
    user: str,
    name_list: list[str],
    np_rng,
    memory_ids: list[list[str]] | None = None,
    pairs: list[tuple[int, int]] | None = None,
    vectors=None,
):
    """Entities and relations of one scope. ``pairs``/``memory_ids`` fix the endpoints and provenance
    (part 2); otherwise endpoints are Zipf-drawn and provenance is made up."""
    import uuid

    from engram.core import Entity, Relation

    base = datetime(2026, 1, 1, tzinfo=UTC)
    order = list(range(n_ent))
    rng.shuffle(order)  # hub rank independent of name order
    ents = []
    for i in range(n_ent):
        emb = vectors[i] if vectors is not None else unit(np_rng)
        ents.append(
            Entity(
                name=name_list[i],
                type=rng.choice(("person", "place", "organization", "thing")),
                user_id=user,
                embedding=[float(x) for x in emb],
                mentions=1 + int(rng.paretovariate(1.5)) % 50,
                created_at=base + timedelta(minutes=i),
            )
        )
    cum = zipf_cum(n_ent)
    rels = []
    last: dict[tuple[str, str], int] = {}
    expired = 0
    for j in range(n_rel):
        if pairs is not None:
            a, b = pairs[j]
        else:
            a, b = (order[k] for k in rng.choices(range(n_ent), cum_weights=cum, k=2))
            while b == a:
                b = order[rng.choices(range(n_ent), cum_weights=cum)[0]]
        pred = rng.choice(PREDICATES)
        created = base + timedelta(minutes=n_ent + j)
        mids = (
            memory_ids[j] if memory_ids is not None else [str(uuid.uuid4()) for _ in range(rng.randint(1, 2))]
        )
        r = Relation(
            source=ents[a].name,
            relation=pred,
            destination=ents[b].name,
            user_id=user,
            mentions=1 + int(rng.paretovariate(2.0)) % 20,
            created_at=created,
            valid_at=created,
            source_id=ents[a].id,
            destination_id=ents[b].id,
            memory_ids=mids,
        )
        prev = last.get((ents[a].id, pred))
        if prev is not None and expired < n_rel // 10 and rng.random() < 0.35:
            rels[prev].expired_at = created  # closed by this newer relation
            rels[prev].invalid_at = created
            expired += 1
        last[(ents[a].id, pred)] = j
        rels.append(r)
    return ents, rels


def open_store(kind: str, tmp: str):
    if kind == "sqlite":
        from engram.graph.sqlite import SQLiteGraphStore

        return SQLiteGraphStore(path=os.path.join(tmp, "graph.db"))
    if kind == "kuzu":
        from engram.graph.kuzu import KuzuGraphStore

        return KuzuGraphStore(path=os.path.join(tmp, "graph.kuzu"), buffer_pool_size=512 * 2**20)
    if kind == "memory":
        from engram.graph.memory import MemoryGraphStore

        return MemoryGraphStore()
    raise SystemExit(f"unknown graph store {kind!r} (sqlite, kuzu, memory)")


async def write_batches(store, ents, rels, batch: int) -> float:
    from engram.core import GraphBatch

    t = time.perf_counter()
    for i in range(0, len(ents), batch):
        await store.apply(GraphBatch(entities=ents[i : i + batch]))
    t_ent = time.perf_counter() - t
    t = time.perf_counter()
    for i in range(0, len(rels), batch):
        await store.apply(GraphBatch(relations=rels[i : i + batch]))
    return t_ent, time.perf_counter() - t


async def part_recall(args: argparse.Namespace, tmp: str) -> dict:
    import numpy as np
    from engram.core import Scope, entity_key
    from engram.core._graph import query_keys

    rng, np_rng = random.Random(args.seed), np.random.default_rng(args.seed)
    n_ent, n_rel = args.entities, args.relations
    all_names = names(rng, n_ent + n_ent // 3)
    ents, rels = build_graph(rng, n_ent, n_rel, "u0", all_names, np_rng)
    noise_names = all_names[: n_ent // 9] + all_names[n_ent : n_ent + n_ent // 3 - n_ent // 9]
    n_ents, n_rels = build_graph(rng, len(noise_names), n_rel // 3, "u1", noise_names, np_rng)
    out: dict = {
        "entities": n_ent,
        "relations": n_rel,
        "expired": sum(r.expired_at is not None for r in rels),
        "noise_entities": len(n_ents),
        "noise_relations": len(n_rels),
        "stores": {},
    }
    degree: dict[str, int] = {}
    for r in rels:
        degree[r.source_id] = degree.get(r.source_id, 0) + 1
        degree[r.destination_id] = degree.get(r.destination_id, 0) + 1
    ds = sorted(degree.values(), reverse=True)
    out["degree"] = {
        "max": ds[0],
        "top1pct_share": sum(ds[: max(1, n_ent // 100)]) / (2 * n_rel),
        "median": ds[len(ds) // 2],
        "isolated": n_ent - len(ds),
    }

    stores = {}
    for kind in args.stores:
        store = open_store(kind, tmp)
        e1, r1 = await write_batches(store, ents, rels, args.batch)
        e2, r2 = await write_batches(store, n_ents, n_rels, args.batch)
        stores[kind] = store
        out["stores"][kind] = {"build_s": e1 + r1 + e2 + r2, "entities_s": e1 + e2, "relations_s": r1 + r2}
        print(
            f"[bench_graph] {kind}: built in {e1 + r1 + e2 + r2:.1f}s (entities {e1 + e2:.1f}s)",
            file=sys.stderr,
            flush=True,
        )

    scope = Scope(user_id="u0")
    n_q = args.queries
    qs = []
    for _ in range(n_q):
        picked = [e.name for e in rng.sample(ents, 2 if rng.random() < 0.25 else 1)]
        keys = query_keys(question(rng, picked))
        vec = np.asarray(rng.choice(ents).embedding, dtype=np.float32) + 0.05 * unit(np_rng)
        qs.append((keys, (vec / np.linalg.norm(vec)).tolist(), {entity_key(p) for p in picked}))
    out["mean_keys"] = sum(len(k) for k, _, _ in qs) / n_q
    reach = [len(within(rels, {e.id for e in ents if e.key in set(k)}, 2)) for k, _, _ in qs]
    out["reach"] = {"p50": percentile(reach, 50), "p95": percentile(reach, 95)}

    lat: dict[str, dict[str, list[float]]] = {
        k: {"neighbors": [], "entities": [], "similar": []} for k in stores
    }
    got: dict[str, dict[str, list[int]]] = {
        k: {"neighbors": [], "entities": [], "similar": []} for k in stores
    }
    for store in stores.values():  # warm-up: caches, lazy indexes, connections
        for keys, vec, _ in qs[: args.warmup]:
            await store.neighbors(scope, keys=keys, depth=2, limit=50)
            await store.entities(scope, keys=keys)
            await store.similar_entities(scope, vec, limit=5)
    for kind, (keys, vec, want) in interleaved(rng, list(stores), qs, args.rounds):
        store = stores[kind]
        t = time.perf_counter()
        res = await store.neighbors(scope, keys=keys, depth=2, limit=50)
        lat[kind]["neighbors"].append((time.perf_counter() - t) * 1e3)
        got[kind]["neighbors"].append(len(res))
        t = time.perf_counter()
        es = await store.entities(scope, keys=keys)
        lat[kind]["entities"].append((time.perf_counter() - t) * 1e3)
        got[kind]["entities"].append(len(es))
        found = {e.key for e in es}
        if not want <= found or not found <= set(keys) or any(e.user_id != "u0" for e in es):
            raise RuntimeError(f"{kind}: entities(keys) returned {sorted(found)}, expected {sorted(want)}")
        t = time.perf_counter()
        sim = await store.similar_entities(scope, vec, limit=5)
        lat[kind]["similar"].append((time.perf_counter() - t) * 1e3)
        got[kind]["similar"].append(len(sim))
    for kind in stores:
        o = out["stores"][kind]
        for op in ("neighbors", "entities", "similar"):
            o[op] = stats(lat[kind][op])
            o[op]["mean_returned"] = sum(got[kind][op]) / len(got[kind][op])
    for store in stores.values():
        await store.aclose()
    return out


# -- part 2: search with and without the graph -----------------------------------------------------


def embedder_config(kind: str) -> dict:
    if kind == "local":
        return {"provider": "local", "config": {"download": False}}
    return {"provider": "hash", "config": {"dims": DIMS}}


async def part_search(args: argparse.Namespace, tmp: str, embedder: str) -> dict:
    import numpy as np
    from engram.core import AsyncMemory

    rng = random.Random(args.seed + 1)
    n_mem, n_ent = args.memories, args.entities
    ent_names = names(rng, n_ent)
    cum = zipf_cum(n_ent)
    order = list(range(n_ent))
    rng.shuffle(order)
    vocab = STOP + WORDS + ["".join(rng.choice(SYLLS) for _ in range(rng.randint(2, 4))) for _ in range(3000)]
    vcum = zipf_cum(len(vocab), 1.05)
    pairs, texts = [], []
    for _ in range(n_mem):
        a, b = (order[k] for k in rng.choices(range(n_ent), cum_weights=cum, k=2))
        while b == a:
            b = order[rng.choices(range(n_ent), cum_weights=cum)[0]]
        ws = rng.choices(vocab, cum_weights=vcum, k=rng.randint(6, 18))
        ws.insert(rng.randrange(len(ws) + 1), ent_names[b])
        texts.append(" ".join([ent_names[a], *ws]) + ".")
        pairs.append((a, b))

    d = os.path.join(tmp, f"search-{embedder}")
    os.makedirs(d)
    db = os.path.join(d, "engram.db")
    vector = {"provider": "sqlite", "config": {"path": db}}
    emb = embedder_config(embedder)
    off = AsyncMemory({"vector_store": vector, "embedder": emb})
    t = time.perf_counter()
    ids: list[str] = []
    for i in range(0, n_mem, 100):
        res = await off.add(
            [{"role": "user", "content": x} for x in texts[i : i + 100]], user_id="u0", infer=False
        )
        ids += [r["id"] for r in res["results"]]
    fill_s = time.perf_counter() - t
    if len(ids) != n_mem:
        raise RuntimeError(f"added {len(ids)} memories, expected {n_mem}")

    on = AsyncMemory({"vector_store": vector, "embedder": emb, "graph_store": "sqlite"})
    vecs = np.asarray(await on.embedder.embed(ent_names, kind="document"))
    ents, rels = build_graph(
        rng, n_ent, n_mem, "u0", ent_names, None, memory_ids=[[m] for m in ids], pairs=pairs, vectors=vecs
    )
    gs = on.graph_store
    assert gs is not None
    if Path(getattr(gs, "path", "")) != Path(db):
        raise RuntimeError(
            f"graph_store='sqlite' did not share the vector store's file ({getattr(gs, 'path', '?')})"
        )
    graph_s = sum(await write_batches(gs, ents, rels, args.batch))
    empty = AsyncMemory(
        {
            "vector_store": vector,
            "embedder": emb,
            "graph_store": {"provider": "sqlite", "config": {"path": os.path.join(d, "empty-graph.db")}},
        }
    )
    configs = {"graph off": off, "graph on": on, "graph on, empty": empty}

    qs = []
    for _ in range(args.searches):
        r = rng.random()
        if r < 0.7:
            picked = [ent_names[order[rng.choices(range(n_ent), cum_weights=cum)[0]]]]
            if r < 0.15:
                picked.append(ent_names[rng.randrange(n_ent)])
            qs.append(question(rng, picked))
        else:  # no entity named
            qs.append(" ".join(rng.choices(vocab[len(STOP) :], k=rng.randint(2, 5))))
    for m in configs.values():
        for q in qs[: args.warmup]:
            await m.search(q, user_id="u0", limit=10)
    lat: dict[str, list[float]] = {k: [] for k in configs}
    rel_count: dict[str, list[int]] = {k: [] for k in configs}
    for name, q in interleaved(rng, list(configs), qs, args.rounds):
        m = configs[name]
        t = time.perf_counter()
        res = await m.search(q, user_id="u0", limit=10)
        lat[name].append((time.perf_counter() - t) * 1e3)
        if res.get("missing"):
            raise RuntimeError(f"{name}: search paths missing: {res['missing']}")
        rel_count[name].append(len(res.get("relations", [])))
    out = {
        "embedder": embedder,
        "memories": n_mem,
        "entities": n_ent,
        "relations": len(rels),
        "fill_s": fill_s,
        "graph_build_s": graph_s,
        "configs": {},
    }
    for name in configs:
        out["configs"][name] = stats(lat[name])
        out["configs"][name]["mean_relations"] = sum(rel_count[name]) / len(rel_count[name])
    for m in configs.values():
        await m.aclose()
    return out


# -- report ---------------------------------------------------------------------------------------------


def fmt(x: float | None, nd: int = 2) -> str:
    return "n/a" if x is None or x != x else f"{x:,.{nd}f}"


def size_label(n: int) -> str:
    return f"{n / 1000:g}K" if n >= 1000 else str(n)


def report(recall: dict | None, searches: list[dict], args: argparse.Namespace, cmd: str) -> str:
    lines = [f"Machine: {machine()}.", "", f"Command: `{cmd}`."]
    if recall:
        dg = recall["degree"]
        lines += [
            "",
            f"Graph recall: {recall['entities']:,} entities (384-dim unit embeddings) and "
            f"{recall['relations']:,} relations in `u0` ({recall['expired']:,} expired; degree max "
            f"{dg['max']}, median {dg['median']}, the top 1% of entities hold {dg['top1pct_share']:.0%} of the "
            f"relation ends, {dg['isolated']} entities with none), noise scope `u1` with "
            f"{recall['noise_entities']:,} entities and {recall['noise_relations']:,} relations; written "
            f"{args.batch} entities or relations per `apply`. {args.queries} queries per operation and store "
            f"after {args.warmup} warm-up ones, in {args.rounds} interleaved rounds; "
            f"{recall['mean_keys']:.1f} n-gram keys per question on average; the current relations within 2 "
            f"hops of a question's entities, which `neighbors` walks before keeping 50: p50 "
            f"{recall['reach']['p50']:,.0f}, p95 {recall['reach']['p95']:,.0f}. ms.",
            "",
        ]
        st = recall["stores"]
        kinds = list(st)
        rows = [
            ["build (all `apply` calls), s", *[fmt(st[k]["build_s"], 1) for k in kinds]],
            ["of which entities (with embeddings), s", *[fmt(st[k]["entities_s"], 1) for k in kinds]],
            ["of which relations, s", *[fmt(st[k]["relations_s"], 1) for k in kinds]],
        ]
        for op, label in (
            ("neighbors", "`neighbors(keys, depth=2, limit=50)`"),
            ("entities", "`entities(keys)`"),
            ("similar", "`similar_entities(vec, limit=5)`"),
        ):
            rows.append([f"{label} p50", *[fmt(st[k][op]["p50"]) for k in kinds]])
            rows.append([f"{label} p95", *[fmt(st[k][op]["p95"]) for k in kinds]])
        rows.append(
            [
                "relations returned by `neighbors`, mean",
                *[fmt(st[k]["neighbors"]["mean_returned"], 1) for k in kinds],
            ]
        )
        lines.append(table(["", *[f"`{k}`" for k in kinds]], rows))
        if "sqlite" in st and len(kinds) > 1:
            lines += ["", "p50 ratios, each store ÷ `sqlite` (below 1: faster than `sqlite`):", ""]
            rr = []
            for op, label in (
                ("neighbors", "neighbors"),
                ("entities", "entities"),
                ("similar", "similar_entities"),
            ):
                rr.append([label, *[f"{st[k][op]['p50'] / st['sqlite'][op]['p50']:.2f}×" for k in kinds]])
            rr.append(["build", *[f"{st[k]['build_s'] / st['sqlite']['build_s']:.2f}×" for k in kinds]])
            lines.append(table(["", *[f"`{k}`" for k in kinds]], rr))
    for s in searches:
        c = s["configs"]
        base = c["graph off"]["p50"]
        lines += [
            "",
            f"Search overhead, `{s['embedder']}` embedder: {s['memories']:,} memories in `u0` in the `sqlite` "
            f"vector store (filled in {s['fill_s']:.1f} s), graph of {s['entities']:,} entities and "
            f"{s['relations']:,} relations (one per memory) written through `apply` in {s['graph_build_s']:.1f} s; "
            f'`search(q, user_id="u0", limit=10)`, {args.searches} queries per configuration after '
            f"{args.warmup} warm-up ones, {args.rounds} interleaved rounds.",
            "",
            table(
                [
                    "configuration",
                    "p50 ms",
                    "p95 ms",
                    "p50 ÷ graph off",
                    "p50 added ms",
                    "relations returned, mean",
                ],
                [
                    [
                        name,
                        fmt(v["p50"]),
                        fmt(v["p95"]),
                        f"{v['p50'] / base:.2f}×",
                        fmt(v["p50"] - base),
                        fmt(v["mean_relations"], 1),
                    ]
                    for name, v in c.items()
                ],
            ),
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="small sizes, few rounds (CI smoke); no docs write")
    ap.add_argument("--stores", default="sqlite,kuzu,memory", help="graph stores for part 1, comma separated")
    ap.add_argument(
        "--embedders", default="local,hash", help="embedders for part 2 (local, hash), comma separated"
    )
    ap.add_argument("--entities", type=int, default=3000)
    ap.add_argument("--relations", type=int, default=10_000)
    ap.add_argument("--memories", type=int, default=10_000, help="memories (and relations) for part 2")
    ap.add_argument("--batch", type=int, default=500, help="entities or relations per apply call")
    ap.add_argument(
        "--queries", type=int, default=400, help="measured queries per operation and store (part 1)"
    )
    ap.add_argument("--searches", type=int, default=400, help="measured searches per configuration (part 2)")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--skip-recall", action="store_true", help="part 2 only")
    ap.add_argument("--skip-search", action="store_true", help="part 1 only")
    ap.add_argument(
        "--write",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="rewrite the bench_graph section of docs/benchmarks.md (default: yes, except --quick)",
    )
    ap.add_argument("--json", action="store_true", help="print the raw results as JSON too")
    args = ap.parse_args(argv)
    if args.quick:
        args.entities, args.relations, args.memories = 300, 1000, 1000
        args.queries, args.searches, args.rounds, args.warmup = 40, 40, 4, 5
    args.stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    embedders = [s.strip() for s in args.embedders.split(",") if s.strip()]
    write = (not args.quick) if args.write is None else args.write

    recall, searches = None, []
    try:
        with tempfile.TemporaryDirectory(prefix="engram-bench-graph-") as tmp:
            if not args.skip_recall and args.stores:
                recall = asyncio.run(part_recall(args, tmp))
            gc.collect()
            if not args.skip_search:
                for e in embedders:
                    print(f"[bench_graph] search overhead, {e} embedder ...", file=sys.stderr, flush=True)
                    searches.append(asyncio.run(part_search(args, tmp, e)))
    except Exception:
        traceback.print_exc()
        print("[bench_graph] failed", file=sys.stderr)
        return 1

    shown = ["--quick"] if args.quick else []
    if args.stores != ["sqlite", "kuzu", "memory"]:
        shown.append(f"--stores {','.join(args.stores)}")
    if embedders != ["local", "hash"]:
        shown.append(f"--embedders {','.join(embedders)}")
    cmd = " ".join(["uv run python benchmarks/bench_graph.py", *shown])
    text = report(recall, searches, args, cmd)
    print(text)
    if args.json:
        print(json.dumps({"recall": recall, "search": searches}, indent=2))
    if write:
        write_section("bench_graph", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
