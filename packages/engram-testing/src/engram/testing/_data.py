"""Fixed datasets, probe values and nasty strings the conformance suites and property tests share."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from engram.core import MemoryItem, Scope, content_hash
from engram.core._filters import OPERATORS

__all__ = [
    "BASE_TIME",
    "COMBINATIONS",
    "FILTER_KEYS",
    "NASTY_QUERIES",
    "TEXT_BUILTINS",
    "filter_dataset",
    "filter_probes",
    "make_item",
    "mid",
    "query_scopes",
    "random_unit",
    "scope_dataset",
]

#: Every dataset's time origin (whole seconds, so equality filters on times are exact).
BASE_TIME = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)

_NS = uuid.UUID("6b1d5a52-5b0e-4c41-9a8e-0e9f3c1c2f10")


def mid(label: str) -> str:
    """A deterministic UUID string for a readable label (stable across runs)."""
    return str(uuid.uuid5(_NS, label))


def random_unit(rng: np.random.Generator, dims: int, n: int | None = None) -> np.ndarray:
    """``(dims,)`` or ``(n, dims)`` float32 unit vectors, Gaussian directions."""
    shape = (dims,) if n is None else (n, dims)
    v = rng.standard_normal(shape).astype(np.float32)
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return (v / np.maximum(norm, 1e-12)).astype(np.float32)


def make_item(
    label: str,
    text: str,
    embedding: np.ndarray,
    *,
    user_id: str | None = "u1",
    agent_id: str | None = None,
    run_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    created_at: datetime | None = None,
    updated_at: datetime | None = None,
) -> MemoryItem:
    """A memory ready for :class:`~engram.core.WriteBatch` (id derived from ``label``)."""
    return MemoryItem(
        id=mid(label),
        memory=text,
        hash=content_hash(text),
        user_id=user_id,
        agent_id=agent_id,
        run_id=run_id,
        metadata=dict(metadata or {}),
        created_at=created_at or BASE_TIME,
        updated_at=updated_at,
        embedding=np.asarray(embedding, dtype=np.float32),
    )


_MINUTE = timedelta(minutes=1)

# label, user, agent, run, created (minutes after BASE_TIME), updated (minutes) or None, text, metadata
_ROWS: list[tuple[str, str | None, str | None, str | None, int, int | None, str, dict[str, Any]]] = [
    ("m00", "u1", "a1", "r1", 0, None, "Booked a flight to Paris for the conference",
     {"category": "travel", "priority": 1, "score": 0.5, "done": False, "tags": ["work", "urgent"],
      "note": None, "mixed": 1, "city": "Paris", "dotted.key": "yes"}),
    ("m01", "u1", "a1", "r2", 1, 90, "Prefers window seats on long flights",
     {"category": "Work", "priority": 2, "score": 2.25, "done": True, "tags": ["Travel"], "mixed": 1.0,
      "city": "Rome", "with space": 1}),
    ("m02", "u1", "a2", None, 2, None, "Allergic to peanuts",
     {"category": "work", "priority": 5, "score": -1.5, "done": False, "tags": [], "note": "x", "mixed": "1",
      "city": "Oslo", "ключ": "значение"}),
    ("m03", "u1", None, None, 2, 200, "Loves Thai food, especially green curry",
     {"category": "food", "priority": 0, "score": 1.0, "done": True, "tags": [1, 2], "mixed": True,
      "city": "paris"}),
    ("m04", "u2", "a1", "r1", 4, None, "Runs every morning before work",
     {"category": "", "priority": -3, "score": 0.0, "tags": ["a", 1, True, None], "mixed": False,
      "city": "Berlin"}),
    ("m05", "u2", "a2", "r2", 5, 5, "Lives on Hauptstraße in Berlin",
     {"category": "Ünïcode STRASSE", "priority": 10**12, "score": 1e-9, "done": False, "mixed": 0,
      "note": None}),
    ("m06", "u2", None, "r1", 6, None, "Has two cats named Miso and Tofu",
     {"priority": 3, "score": 3, "mixed": None, "tags": ["work"]}),
    ("m07", "u3", "a1", None, 7, 70, "Is learning to play the cello",
     {"category": "travel", "done": True, "mixed": [1], "obj": {"a": 1}}),
    ("m08", None, "a1", "r1", 8, None, "The agent should answer in French",
     {"category": "work trip", "priority": 2, "mixed": "abc", "tags": ["urgent", "work"]}),
    ("m09", None, None, "r2", 9, None, "Session goal: plan the Rome itinerary",
     {"category": "TRAVEL", "priority": 4.0, "mixed": {"a": 1}, "city": "Rome"}),
    ("m10", "u1", "a1", "r1", 0, None, "Straße names are hard to spell",
     {"category": "straße", "priority": 1, "score": 1.5, "mixed": 1.5, "tags": ["Work", "URGENT"]}),
    ("m11", "u%", "a1", None, 11, None, "Owner id with a SQL LIKE wildcard",
     {"category": "wild", "priority": 7, "mixed": "%"}),
    ("m12", "u_1", "a%", "r_", 12, None, "Owner id with an underscore wildcard",
     {"category": "wild", "priority": 8, "mixed": "_"}),
    ("m13", "o'brien", 'a"1', "r1", 13, None, "Owner id with quotes",
     {"category": "quote's", "priority": 9, "mixed": "'", "note": 'say "hi"'}),
]


def filter_dataset(dims: int, seed: int = 7) -> list[MemoryItem]:
    """Fourteen memories over many scopes whose metadata mixes every JSON type under the same keys.

    Keys: ``category`` (strings, case and Unicode variants), ``priority`` (ints, one float, a 10**12),
    ``score`` (floats, one int), ``done`` (bools), ``tags`` (lists of strings / numbers / mixed),
    ``note`` (null vs missing vs string), ``mixed`` (1, 1.0, "1", True, False, 0, None, [1], {"a": 1}, ...),
    ``city``, ``obj`` (an object), and odd key names (``dotted.key``, ``with space``, ``ключ``).
    Two memories share ``created_at`` twice over, so list order falls back to the id.
    """
    rng = np.random.default_rng(seed)
    vecs = random_unit(rng, dims, len(_ROWS))
    return [
        make_item(
            label, f"{text} [{label}]", vecs[i], user_id=u, agent_id=a, run_id=r, metadata=meta,
            created_at=BASE_TIME + created * _MINUTE,
            updated_at=None if updated is None else BASE_TIME + updated * _MINUTE,
        )
        for i, (label, u, a, r, created, updated, text, meta) in enumerate(_ROWS)
    ]


def scope_dataset(dims: int, seed: int = 11) -> list[MemoryItem]:
    """One memory per (user, agent, run) combination over two values each plus ``None`` (26 of them,
    the all-``None`` one left out), texts sharing the word ``shared`` so lexical search sees all."""
    rng = np.random.default_rng(seed)
    out: list[MemoryItem] = []
    k = 0
    for u in ("alice", "bob", None):
        for a in ("helper", "coach", None):
            for r in ("s1", "s2", None):
                if u is None and a is None and r is None:
                    continue
                out.append(
                    make_item(
                        f"scope-{u}-{a}-{r}", f"shared memory of {u} with {a} during {r}", random_unit(rng, dims),
                        user_id=u, agent_id=a, run_id=r, created_at=BASE_TIME + k * _MINUTE,
                    )
                )
                k += 1
    return out


def query_scopes() -> list[Scope]:
    """Every query scope over the values :func:`scope_dataset` uses, plus ids nobody has."""
    out = []
    for u in ("alice", "bob", "carol", None):
        for a in ("helper", "coach", None):
            for r in ("s1", "s2", "s3", None):
                if u is None and a is None and r is None:
                    continue
                out.append(Scope(u, a, r))
    return out


_SCALARS: list[Any] = [
    "travel", "Work", "work", "", "1", "abc", "straße", "STRASSE", "Paris", "urgent", "x", "wild", "%", "_", "'",
    0, 1, 1.0, 2, 2.25, 3, -1.5, -3, 10**12, 1e-9, 4, True, False, None,
    2**63 - 1, -(2**63), 1e30, 1e300,  # the 64-bit integer edges and huge floats
]
_SUBSTRINGS: list[Any] = ["", "ork", "Work", "WORK", "urg", "a", "ß", "strasse", "STRASSE", "%", "_", "'", "1",
                          1, 2, True, None, "Ünï", "ünï", 2**62]
_LISTS: list[list[Any]] = [
    ["work", "travel"], [1, "1"], [True], [False, 0], [None], [1.0], [None, "food"], ["Paris", "Rome", "Oslo"],
    [0, 2, 10**12], ["%", "_"], [2.25, -1.5], [2**63 - 1, 1], [1e30, "work"],
]


def _times() -> list[Any]:
    t = BASE_TIME
    return [
        t, t + 2 * _MINUTE, t + timedelta(minutes=5, seconds=30), "2024-05-01T12:03:00Z",
        "2024-05-01T14:07:00+02:00", "2024-05-01T12:05:00", int((t + 9 * _MINUTE).timestamp()),
        (t + 90 * _MINUTE).timestamp(),
    ]


#: Metadata keys the filter dataset uses, plus one nobody has.
FILTER_KEYS: tuple[str, ...] = (
    "category", "priority", "score", "done", "tags", "note", "mixed", "city", "obj", "dotted.key", "with space",
    "ключ", "missing_key",
)
#: Built-in text fields probed like metadata.
TEXT_BUILTINS: tuple[str, ...] = ("memory", "user_id", "agent_id", "run_id")


def filter_probes(op: str, fields: Iterable[str] = FILTER_KEYS + TEXT_BUILTINS) -> Iterator[dict[str, Any]]:
    """Filter mappings exercising one operator over the given fields with every probe value.

    Some are invalid on purpose (``{"k": {"gt": None}}``); callers parse them and skip those that
    raise :class:`~engram.core.errors.InvalidFilterError`.
    """
    if op not in OPERATORS:
        raise ValueError(f"unknown operator {op!r}")
    for field in fields:
        if op in ("in", "nin"):
            values: Sequence[Any] = _LISTS
        elif op in ("contains", "icontains"):
            values = _SUBSTRINGS
        else:
            values = _SCALARS
        for v in values:
            yield {field: v} if op == "eq" and not isinstance(v, list) else {field: {op: v}}
    for field in ("created_at", "updated_at"):
        if op in ("contains", "icontains"):
            continue
        if op in ("in", "nin"):
            times = _times()
            yield from ({field: {op: [times[i], times[j]]}} for i, j in ((0, 1), (2, 3), (4, 7), (1, 6)))
            continue
        for v in [*_times(), None]:
            yield {field: {op: v}}


#: Boolean combinations over the filter dataset, each a mapping for ``parse_filters``.
COMBINATIONS: list[dict[str, Any]] = [
    {"category": "work", "priority": 5},
    {"priority": {"gte": 1, "lt": 5}},
    {"priority": {"gt": 0}, "done": True},
    {"OR": [{"city": "Paris"}, {"city": {"in": ["Rome", "Oslo"]}}]},
    {"OR": [{"done": True}, {"priority": {"gte": 5}}]},
    {"AND": [{"tags": {"contains": "work"}}, {"NOT": {"category": "travel"}}]},
    {"NOT": {"done": True}},
    {"NOT": {"note": None}},
    {"NOT": {"missing_key": {"eq": 1}}},
    {"NOT": [{"done": False}, {"priority": {"lt": 3}}]},
    {"NOT": {"OR": [{"category": {"icontains": "work"}}, {"category": {"icontains": "travel"}}]}},
    {"OR": [{"AND": [{"user_id": "u1"}, {"priority": {"gt": 1}}]}, {"AND": [{"user_id": "u2"}, {"done": False}]}]},
    {"AND": [{"OR": [{"mixed": 1}, {"mixed": "1"}]}, {"NOT": {"mixed": True}}]},
    {"OR": [{"NOT": {"NOT": {"category": "food"}}}, {"score": {"lte": -1}}]},
    {"AND": [{"created_at": {"gte": "2024-05-01T12:02:00Z"}}, {"updated_at": {"ne": None}}]},
    {"OR": [{"updated_at": None}, {"created_at": {"lt": BASE_TIME + 3 * _MINUTE}}]},
    {"memory": {"icontains": "FLIGHT"}, "NOT": {"run_id": "r2"}},
    {"AND": [{"priority": {"nin": [1, 2]}}, {"priority": {"ne": None}}]},
    {"agent_id": None, "run_id": {"ne": None}},
    {"OR": [{"tags": {"contains": 1}}, {"tags": {"contains": True}}, {"tags": {"icontains": "urgent"}}]},
]


#: Query strings that must never raise: FTS syntax, quotes, operators, emoji, empty, huge.
NASTY_QUERIES: list[str] = [
    "",
    " ",
    "\t\n  \r",
    "?",
    "what did I say about Paris?",
    "don't",
    "Caroline's",
    "'",
    "''",
    '"',
    '"unbalanced',
    '"quoted phrase"',
    "AND",
    "OR",
    "NOT",
    "NEAR",
    "a AND b",
    "a OR b NOT c",
    "NEAR(a b, 2)",
    "NEAR(",
    "(",
    ")",
    "(a OR b",
    "*",
    "a*",
    "*a",
    "^a",
    "^",
    "-",
    "-a",
    "a - b",
    "+a",
    ":",
    "memory:paris",
    "col:",
    "{a b}",
    "[a]",
    "a.b.c",
    "a/b\\c",
    "%",
    "_",
    "100%",
    "; DROP TABLE memories; --",
    "' OR 1=1 --",
    "🙂",
    "🇫🇷 Paris 🥐",
    "naïve café straße",
    "東京で何を食べましたか",
    "مرحبا",
    "\x00",
    "a\x00b",
    "\u200b",
    "\ufeffbom",
    "MATCH",
    "rank",
    "bm25(",
    "x" * 10_000,
    "paris " * 2_000,
]
