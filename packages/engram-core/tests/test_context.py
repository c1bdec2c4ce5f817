"""Context-aware weighting (``search.context``): the local classifier measured on labelled queries,
the weight matrix and its validation, the LLM classifier through the scripted LLM, and whole
searches on an in-memory SQLite store with the hash embedder."""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from engram.core import AsyncMemory, ContextConfig, MemoryConfig, MemoryItem, ScoredMemory, classify_task
from engram.core._context import (
    CLASSIFY_TASK_V1,
    DEFAULT_WEIGHTS,
    TASK_TYPES,
    UNTYPED,
    apply_context,
    memory_type_of,
    normalize_task_type,
    resolve_task_type,
    task_scores,
)
from engram.core.errors import ConfigurationError, InvalidInputError
from engram.embedding.hash import HashEmbedder
from engram.llm.scripted import ScriptedLLM

# -- the labelled queries -----------------------------------------------------------------------

# Queries an agent might send, labelled by hand and written before the classifier's patterns. DEV
# was used to tune the patterns; HELD_OUT never was (its misses are left as measured).
DEV: list[tuple[str, str]] = [
    ("The deploy script fails with a permission denied error", "troubleshooting"),
    ("why is my laptop so slow after the update", "troubleshooting"),
    ("pytest crashes with a segfault when importing numpy", "troubleshooting"),
    ("how do I fix the login bug on the staging server", "troubleshooting"),
    ("Docker container keeps restarting, what went wrong last time?", "troubleshooting"),
    ("the printer isn't working again", "troubleshooting"),
    ("got a traceback: KeyError 'user_id' in the sync job", "troubleshooting"),
    ("my wifi keeps dropping every few minutes", "troubleshooting"),
    ("what did we do when the database ran out of disk space", "troubleshooting"),
    ("npm install hangs forever", "troubleshooting"),
    ("the app won't start after upgrading to Python 3.12", "troubleshooting"),
    ("debugging the memory leak in the worker process", "troubleshooting"),
    ("how should I structure the plugin system for the new service", "design"),
    ("what architecture did we choose for the payment service", "design"),
    ("trade-offs between Postgres and MongoDB for this project", "design"),
    ("should the API be REST or GraphQL?", "design"),
    ("which database schema would fit the order history best", "design"),
    ("designing the layout of the living room", "design"),
    ("best way to model user permissions", "design"),
    ("how should the caching layer be organised", "design"),
    ("what are the pros and cons of microservices for our team", "design"),
    ("what colour scheme does the user like for the website design", "design"),
    ("interface design for the mobile checkout flow", "design"),
    ("pick a pattern for handling retries in the client library", "design"),
    ("what is my sister's name", "factual_lookup"),
    ("where does Maya live", "factual_lookup"),
    ("when is John's birthday", "factual_lookup"),
    ("who is the manager of the data team", "factual_lookup"),
    ("what's my passport number", "factual_lookup"),
    ("which city was Anna born in", "factual_lookup"),
    ("how old is the user's daughter", "factual_lookup"),
    ("what is the wifi password at the office", "factual_lookup"),
    ("what kind of dog does Ben have", "factual_lookup"),
    ("the user's favourite restaurant", "factual_lookup"),
    ("what allergies does she have", "factual_lookup"),
    ("Maya's email address", "factual_lookup"),
    ("plan the trip to Japan next month", "planning"),
    ("what do I have scheduled for next week", "planning"),
    ("roadmap for the Q3 release", "planning"),
    ("todo list for moving house", "planning"),
    ("help me organise the steps to launch the newsletter", "planning"),
    ("what are my goals for this year", "planning"),
    ("prepare an agenda for Monday's meeting", "planning"),
    ("when should we schedule the dentist appointment", "planning"),
    ("next steps for the hiring process", "planning"),
    ("milestones for the thesis", "planning"),
    ("what should I do tomorrow", "planning"),
    ("set up a workout plan for the marathon in October", "planning"),
    ("tell me about Maya", "general"),
    ("hello", "general"),
    ("anything interesting from our last chat", "general"),
    ("summarise what you know about me", "general"),
    ("coffee", "general"),
    ("thoughts on jazz", "general"),
    ("recommend a book", "general"),
    ("what do you remember", "general"),
    ("music", "general"),
    ("say something nice", "general"),
    ("talk about travel", "general"),
    ("conversation with Ben last week", "general"),
]

HELD_OUT: list[tuple[str, str]] = [
    ("error 502 from the nginx proxy", "troubleshooting"),
    ("my bike chain keeps slipping", "troubleshooting"),
    ("the tests are flaky on Windows", "troubleshooting"),
    ("can't connect to the VPN", "troubleshooting"),
    ("the oven doesn't heat up properly", "troubleshooting"),
    ("stack overflow in the recursive parser, what's the workaround", "troubleshooting"),
    ("how would you architect a chat app for offline use", "design"),
    ("compare Kafka and RabbitMQ for the event bus", "design"),
    ("what naming convention should the modules follow", "design"),
    ("garden layout ideas for a small backyard", "design"),
    ("should I split this class into two", "design"),
    ("data model for recurring invoices", "design"),
    ("what's the name of Tom's wife", "factual_lookup"),
    ("where did I park the car", "factual_lookup"),
    ("what time does the gym open", "factual_lookup"),
    ("who recommended the accountant", "factual_lookup"),
    ("what is Priya's phone number", "factual_lookup"),
    ("which university did the user attend", "factual_lookup"),
    ("organise a birthday party for Sam in June", "planning"),
    ("what's on my calendar this Friday", "planning"),
    ("break the migration into phases", "planning"),
    ("deadlines coming up this month", "planning"),
    ("plan meals for the week", "planning"),
    ("I need a timeline for the kitchen renovation", "planning"),
    ("hi there", "general"),
    ("anything about cats", "general"),
    ("what do you think", "general"),
    ("random memories", "general"),
    ("the weekend", "general"),
    ("chat about movies", "general"),
]


def _accuracy(data: list[tuple[str, str]]) -> tuple[float, list[tuple[str, str, str]]]:
    misses = [(q, want, got) for q, want in data if (got := classify_task(q)) != want]
    return 1 - len(misses) / len(data), misses


def test_labelled_sets_are_balanced_and_distinct() -> None:
    assert len(DEV) >= 40 and len(HELD_OUT) >= 25
    for data in (DEV, HELD_OUT):
        counts = Counter(label for _, label in data)
        assert set(counts) == set(TASK_TYPES) and max(counts.values()) - min(counts.values()) == 0
    queries = [q.lower() for q, _ in DEV + HELD_OUT]
    assert len(set(queries)) == len(queries)


def test_classifier_accuracy_on_development_queries() -> None:
    # measured: 60 / 60 (the patterns were tuned on this set)
    acc, misses = _accuracy(DEV)
    assert acc >= 0.95, misses


def test_classifier_accuracy_on_held_out_queries() -> None:
    # measured: 27 / 30, never tuned on. The misses: "what time does the gym open" and "which
    # university did the user attend" (a lone "what"/"which" is too weak), "break the migration
    # into phases" ("break" also suggests troubleshooting: a tie, so general).
    acc, misses = _accuracy(HELD_OUT)
    assert acc >= 0.85, misses


def test_classifier_is_deterministic_and_total() -> None:
    for q in ["", "   ", "?", "😀", "Wie spät ist es?", "x" * 10_000, "ERROR ERROR ERROR"]:
        assert classify_task(q) in TASK_TYPES
        assert classify_task(q) == classify_task(q)
    assert classify_task("") == "general"
    assert classify_task("My build FAILS with a Traceback") == "troubleshooting"  # case-insensitive
    assert classify_task("the printer isn\u2019t working") == "troubleshooting"  # curly apostrophe


def test_classifier_ties_are_general() -> None:
    # design ("design") and troubleshooting ("error") evidence alike (2.0 each): no clear task
    assert task_scores("design error")["design"] == task_scores("design error")["troubleshooting"]
    assert classify_task("design error") == "general"
    assert classify_task("a design error in the architecture") == "design"  # 5.0 against 2.0
    assert classify_task("plan for the error") == "planning"  # 2.5 against 2.0: exactly the margin


# -- names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("troubleshooting", "troubleshooting"),
        ("Factual lookup", "factual_lookup"),
        ("factual-lookup", "factual_lookup"),
        ("  PLANNING ", "planning"),
        ("general", "general"),
    ],
)
def test_task_type_spellings(given: str, expected: str) -> None:
    assert normalize_task_type(given) == expected


@pytest.mark.parametrize("bad", ["debugging", "", "auto", "factuallookup", 3, None, ["design"]])
def test_unknown_task_type_names_the_valid_ones(bad: Any) -> None:
    with pytest.raises(InvalidInputError) as info:
        normalize_task_type(bad)
    assert "troubleshooting, design, factual_lookup, planning, general" in str(info.value)
    assert normalize_task_type("Auto", allow_auto=True) == "auto"


# -- the weight matrix ---------------------------------------------------------------------------


def _item(text: str, memory_type: Any = None, **meta: Any) -> MemoryItem:
    if memory_type is not None:
        meta["memory_type"] = memory_type
    return MemoryItem(id=f"id-{text}", memory=text, hash=text, user_id="u", metadata=meta)


def _hits(*specs: tuple[str, Any, float]) -> list[ScoredMemory]:
    return [ScoredMemory(_item(t, mt), s, {"dense": s}) for t, mt, s in specs]


def test_default_matrix_shape() -> None:
    cfg = ContextConfig()
    assert not cfg.enabled and cfg.classifier == "local"
    assert set(cfg.weights) == set(TASK_TYPES)
    for row in cfg.weights.values():
        assert set(row) == {"factual", "preference", "procedural", "episodic", UNTYPED}
        assert row[UNTYPED] == 1.0
    assert set(cfg.weights["general"].values()) == {1.0}
    best = {task: max(row, key=row.__getitem__) for task, row in cfg.weights.items() if task != "general"}
    assert best == {
        "troubleshooting": "procedural", "design": "preference", "factual_lookup": "factual", "planning": "episodic"
    }
    # the defaults are not shared between configs
    cfg.weights["design"]["factual"] = 9.0
    assert ContextConfig().weights["design"]["factual"] == DEFAULT_WEIGHTS["design"]["factual"] == 1.1


def test_memory_type_of() -> None:
    assert memory_type_of(_item("a", "Procedural ")) == "procedural"
    assert memory_type_of(_item("a")) == UNTYPED
    assert memory_type_of(_item("a", "")) == UNTYPED
    assert memory_type_of(_item("a", 7)) == UNTYPED


def test_weights_multiply_and_resort() -> None:
    cfg = ContextConfig()
    hits = _hits(("fact", "factual", 0.80), ("howto", "procedural", 0.70), ("turn", None, 0.75), ("pref", "preference", 0.1))
    out = apply_context(hits, "troubleshooting", cfg)
    assert [h.item.memory for h in out] == ["howto", "fact", "turn", "pref"]
    got = {h.item.memory: (h.score, h.scores) for h in out}
    assert got["howto"][0] == pytest.approx(0.70 * 1.3)
    assert got["howto"][1] == {"dense": 0.70, "context": 1.3}
    assert got["fact"][0] == pytest.approx(0.80) and got["fact"][1]["context"] == 1.0
    assert got["turn"][1]["context"] == 1.0  # untyped column
    assert got["pref"][0] == pytest.approx(0.09)
    # the input is not touched
    assert [h.score for h in hits] == [0.80, 0.70, 0.75, 0.1] and all("context" not in h.scores for h in hits)
    fl = apply_context(hits, "factual lookup", cfg)
    assert [h.item.memory for h in fl] == ["fact", "turn", "howto", "pref"]


def test_no_task_type_changes_nothing() -> None:
    cfg = ContextConfig(enabled=True, weights={"general": {"factual": 5.0}})
    hits = _hits(("b", "factual", 0.2), ("a", "procedural", 0.9), ("c", None, 0.5))  # deliberately unsorted
    before = [(h.item.memory, h.score, dict(h.scores)) for h in hits]
    out = apply_context(hits, None, cfg)
    assert len(out) == len(hits) and all(o is h for o, h in zip(out, hits, strict=True))
    assert [(h.item.memory, h.score, h.scores) for h in out] == before


def test_general_keeps_the_order_and_ties_stay_stable() -> None:
    hits = _hits(("a", "episodic", 0.5), ("b", "factual", 0.5), ("c", "procedural", 0.5), ("d", None, 0.2))
    out = apply_context(hits, "general", ContextConfig())
    assert [h.item.memory for h in out] == ["a", "b", "c", "d"]
    assert [h.score for h in out] == [0.5, 0.5, 0.5, 0.2] and all(h.scores["context"] == 1.0 for h in out)


def test_negative_scores_are_divided() -> None:
    hits = _hits(("fact", "factual", -0.20), ("howto", "procedural", -0.25))
    out = apply_context(hits, "troubleshooting", ContextConfig())
    # -0.25 / 1.3 = -0.192 > -0.20: a weight above 1 moves a hit up whatever its sign
    assert [h.item.memory for h in out] == ["howto", "fact"]
    assert out[0].score == pytest.approx(-0.25 / 1.3)


def test_partial_overrides_keep_the_other_defaults() -> None:
    cfg = ContextConfig(
        weights={
            "Factual Lookup": {"procedural": 2},
            "planning": {"Decision": 1.5, "untyped": 0.5},
        }
    )
    assert cfg.weights["factual_lookup"]["procedural"] == 2.0
    assert cfg.weights["factual_lookup"]["factual"] == 1.3  # default kept
    assert cfg.weights["planning"]["decision"] == 1.5 and cfg.weights["planning"][UNTYPED] == 0.5
    assert cfg.weights["design"] == DEFAULT_WEIGHTS["design"]
    out = apply_context(_hits(("x", "decision", 0.5), ("y", None, 0.9), ("z", "other", 0.6)), "planning", cfg)
    assert [(h.item.memory, h.scores["context"]) for h in out] == [("x", 1.5), ("z", 1.0), ("y", 0.5)]


def test_overrides_through_memory_config_env_and_round_trip() -> None:
    cfg = MemoryConfig.from_env(
        {
            "ENGRAM_SEARCH__CONTEXT__ENABLED": "true",
            "ENGRAM_SEARCH__CONTEXT__WEIGHTS": json.dumps({"design": {"preference": 1.5}}),
        }
    )
    ctx = cfg.search.context
    assert ctx.enabled and ctx.weights["design"]["preference"] == 1.5 and ctx.weights["design"]["factual"] == 1.1
    again = MemoryConfig.parse(cfg.model_dump())
    assert again.search.context == ctx


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"debugging": {"procedural": 1.2}}, "unknown task type 'debugging'"),
        ({"design": {"procedural": -1}}, "finite number > 0"),
        ({"design": {"procedural": 0}}, "finite number > 0"),
        ({"design": {"procedural": float("nan")}}, "finite number > 0"),
        ({"design": {"procedural": float("inf")}}, "finite number > 0"),
        ({"design": {"procedural": "high"}}, "finite number > 0"),
        ({"design": {"procedural": True}}, "finite number > 0"),
        ({"design": {"": 1.0}}, "non-empty string"),
        ({"design": [1.0]}, "must be a mapping"),
        ([["design", {}]], "must be a mapping"),
    ],
)
def test_invalid_weights_are_configuration_errors(weights: Any, message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        MemoryConfig.parse({"search": {"context": {"weights": weights}}})
    assert message in str(info.value)


def test_invalid_context_fields() -> None:
    for bad in ({"classifier": "bert"}, {"llm_timeout": 0}, {"enable": True}):
        with pytest.raises(ConfigurationError):
            MemoryConfig.parse({"search": {"context": bad}})


# -- resolving the task type ---------------------------------------------------------------------


async def test_resolve_task_type_rules() -> None:
    off, on = ContextConfig(), ContextConfig(enabled=True)
    q = "the deploy fails with a permission error"
    assert await resolve_task_type(q, None, off, None) is None  # off by default: nothing changes
    assert await resolve_task_type(q, None, on, None) == "troubleshooting"  # enabled: classified
    assert await resolve_task_type(q, "auto", off, None) == "troubleshooting"  # asked: classified
    assert await resolve_task_type(q, "design", off, None) == "design"  # the caller's word wins
    assert await resolve_task_type(q, "Factual Lookup", on, None) == "factual_lookup"
    with pytest.raises(InvalidInputError):
        await resolve_task_type(q, "debug", off, None)
    llm_cfg = ContextConfig(classifier="llm")
    assert await resolve_task_type(q, None, llm_cfg, None) is None  # nothing to classify: no error
    assert await resolve_task_type(q, "planning", llm_cfg, None) == "planning"
    with pytest.raises(ConfigurationError, match="no LLM is configured"):
        await resolve_task_type(q, "auto", llm_cfg, None)


def test_llm_prompt_is_pinned() -> None:
    # A change to the prompt must be deliberate: review it, bump the _V<n> suffix if its meaning
    # changed, then update this digest.
    digest = hashlib.sha256(CLASSIFY_TASK_V1.encode("utf-8")).hexdigest()
    assert digest == "67ed5e384b64f4c2a1f104ddce6e7a96d443c3fb72addd031ec726b951eda823", digest
    for name in TASK_TYPES:
        assert f'"{name}"' in CLASSIFY_TASK_V1


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ('{"task_type": "design"}', "design"),
        ('```json\n{"task_type": "Factual Lookup"}\n```', "factual_lookup"),
        ('Sure: {"task_type": "planning"}', "planning"),
        ("troubleshooting", "troubleshooting"),  # a bare name is taken too
        ('{"task_type": "general"}', "general"),
    ],
)
async def test_llm_classification(reply: str, expected: str) -> None:
    llm = ScriptedLLM(replies=[reply])
    got = await resolve_task_type("what's my sister's name", "auto", ContextConfig(classifier="llm"), llm)
    assert got == expected
    (call,) = llm.calls
    assert call["messages"] == [
        {"role": "system", "content": CLASSIFY_TASK_V1},
        {"role": "user", "content": "what's my sister's name"},
    ]
    assert call["response_format"] == {"type": "json_object"} and call["temperature"] == 0.0


@pytest.mark.parametrize(
    "reply",
    ["I think it is about a name.", '{"task_type": "lookup"}', '{"kind": "design"}', '{"task_type": 3}', ""],
)
async def test_llm_junk_falls_back_to_the_local_classifier(reply: str, caplog: pytest.LogCaptureFixture) -> None:
    llm = ScriptedLLM(replies=[reply])
    with caplog.at_level(logging.WARNING, logger="engram"):
        got = await resolve_task_type("why does the build crash", None, ContextConfig(enabled=True, classifier="llm"), llm)
    assert got == "troubleshooting" == classify_task("why does the build crash")
    assert len(llm.calls) == 1
    assert any("used the local classifier" in r.getMessage() for r in caplog.records)


async def test_llm_failure_and_timeout_fall_back(caplog: pytest.LogCaptureFixture) -> None:
    cfg = ContextConfig(classifier="llm", llm_timeout=0.05)
    with caplog.at_level(logging.WARNING, logger="engram"):
        failing = ScriptedLLM(replies=[])  # raises ProviderError
        assert await resolve_task_type("roadmap for Q3", "auto", cfg, failing) == "planning"
        slow = ScriptedLLM(replies=['{"task_type": "design"}'], delay=5.0)
        assert await resolve_task_type("roadmap for Q3", "auto", cfg, slow) == "planning"
    messages = [r.getMessage() for r in caplog.records]
    assert any("ProviderError" in m for m in messages) and any("TimeoutError" in m for m in messages)


# -- whole searches ------------------------------------------------------------------------------


class CountingEmbedder:
    """The hash embedder, counting the texts it embeds."""

    def __init__(self) -> None:
        self.inner = HashEmbedder(dims=64)
        self.count = 0

    @property
    def dims(self) -> int:
        return self.inner.dims

    async def embed(self, texts: Sequence[str], *, kind: str = "document") -> np.ndarray:
        self.count += len(texts)
        return await self.inner.embed(texts, kind=kind)  # type: ignore[arg-type]

    async def aclose(self) -> None:
        return None


TEXT = "restart the ingest worker with the force flag"


def make(llm: Any = None, embedder: Any = None, **context: Any) -> AsyncMemory:
    return AsyncMemory(
        {
            "vector_store": "sqlite:///:memory:",
            "embedder": embedder or CountingEmbedder(),
            "llm": llm,
            "search": {"context": context},
        }
    )


async def _two_kinds(mem: AsyncMemory) -> dict[str, str]:
    """The same text stored twice, once typed procedural and once factual; ``{id: type}``."""
    ids = {}
    for kind in ("factual", "procedural"):
        out = await mem.add(TEXT, user_id="u", infer=False, metadata={"memory_type": kind})
        ids[out["results"][0]["id"]] = kind
    return ids


def _kinds(out: dict[str, Any], ids: dict[str, str]) -> list[str]:
    return [ids[r["id"]] for r in out["results"]]


async def test_task_type_reorders_memories_of_equal_relevance() -> None:
    async with make() as mem:
        ids = await _two_kinds(mem)
        plain = await mem.search(TEXT, user_id="u")
        assert plain["results"][0]["score"] == pytest.approx(plain["results"][1]["score"])
        assert all("context" not in r["scores"] for r in plain["results"])
        trouble = await mem.search(TEXT, user_id="u", task_type="troubleshooting")
        lookup = await mem.search(TEXT, user_id="u", task_type="factual_lookup")
        assert _kinds(trouble, ids) == ["procedural", "factual"]
        assert _kinds(lookup, ids) == ["factual", "procedural"]
        top = trouble["results"][0]
        assert top["scores"]["context"] == 1.3 and top["score"] == pytest.approx(plain["results"][0]["score"] * 1.3)
        # the threshold applies to the weighted score
        cut = await mem.search(TEXT, user_id="u", task_type="troubleshooting", threshold=top["score"] - 1e-9)
        assert _kinds(cut, ids) == ["procedural"]


async def test_without_a_task_type_search_is_unchanged() -> None:
    heavy = {"troubleshooting": {"factual": 9.0}, "general": {"procedural": 9.0, "untyped": 9.0}}
    async with make() as plain_mem, make(weights=heavy) as tuned_mem:  # enabled stays False
        for mem in (plain_mem, tuned_mem):
            await _two_kinds(mem)
            await mem.add("the ingest worker runs nightly", user_id="u", infer=False)
        a = await plain_mem.search("ingest worker", user_id="u")
        b = await tuned_mem.search("ingest worker", user_id="u")
        strip = lambda out: [(r["memory"], r["metadata"], r["score"], r["scores"]) for r in out["results"]]  # noqa: E731
        assert strip(a) == strip(b) and len(a["results"]) == 3


async def test_enabled_classifies_the_query() -> None:
    async with make(enabled=True) as mem:
        ids = await _two_kinds(mem)
        out = await mem.search(f"{TEXT}: it keeps crashing with an error", user_id="u")
        assert _kinds(out, ids) == ["procedural", "factual"]
        assert [r["scores"]["context"] for r in out["results"]] == [1.3, 1.0]
        out = await mem.search(f"what is the {TEXT}", user_id="u", task_type="auto")
        assert _kinds(out, ids) == ["factual", "procedural"]
        # a general query: every weight 1.0, the order as recalled
        out = await mem.search(TEXT, user_id="u")
        assert [r["scores"]["context"] for r in out["results"]] == [1.0, 1.0]


async def test_llm_classifier_in_search() -> None:
    llm = ScriptedLLM(replies=['{"task_type": "troubleshooting"}', "no idea"])
    async with make(llm=llm, enabled=True, classifier="llm") as mem:
        ids = await _two_kinds(mem)  # infer=False: the LLM is not asked
        assert llm.calls == []
        out = await mem.search(TEXT, user_id="u")
        assert _kinds(out, ids) == ["procedural", "factual"] and len(llm.calls) == 1
        # junk: the local classifier decides ("what is" -> factual lookup); the search succeeds
        out = await mem.search(f"what is the {TEXT}", user_id="u")
        assert _kinds(out, ids) == ["factual", "procedural"] and len(llm.calls) == 2


async def test_bad_task_type_raises_before_anything_happens() -> None:
    emb = CountingEmbedder()
    llm = ScriptedLLM(replies=['{"task_type": "design"}'])
    async with make(llm=llm, embedder=emb, classifier="llm") as mem:
        ids = await _two_kinds(mem)
        before = (emb.count, len(llm.calls), await mem.get_all(user_id="u"))
        for bad in ("debugging", 42, ""):
            with pytest.raises(InvalidInputError, match="task_type must be one of"):
                await mem.search(TEXT, user_id="u", task_type=bad)  # type: ignore[arg-type]
        assert (emb.count, len(llm.calls), await mem.get_all(user_id="u")) == before  # nothing embedded or asked
        assert len(ids) == 2
    async with make(embedder=emb, classifier="llm") as mem:  # no LLM
        await mem.add(TEXT, user_id="u", infer=False)
        count = emb.count
        with pytest.raises(ConfigurationError, match="no LLM is configured"):
            await mem.search(TEXT, user_id="u", task_type="auto")
        assert emb.count == count
