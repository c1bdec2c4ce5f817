"""Graph memory through the engine: extraction beside facts, entity resolution, contradiction
(the LLM's decision and the rule-based fallback), search with entity and graph recall running
concurrently with dense and lexical recall, and the graph kept consistent with the memories.

The LLM is the scripted provider answering by prompt; the stores are the real in-process and
SQLite ones. Timing checks compare against deliberate 100 ms delays (the overlap the issue asks
to prove), with margins wide enough for a shared machine.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
from engram.core import AsyncMemory, LLMResponse, Scope
from engram.core._graph import (
    GraphPipeline,
    apply_graph_boost,
    contradicted_by_rule,
    parse_contradictions,
    parse_date,
    parse_graph,
    query_keys,
)
from engram.core._prompts import DECIDE_V1, EXTRACT_USER_V1, GRAPH_DECIDE_V1, GRAPH_EXTRACT_V1
from engram.core.errors import InvalidInputError, ProviderError
from engram.embedding.hash import HashEmbedder
from engram.graph.memory import MemoryGraphStore
from engram.graph.sqlite import SQLiteGraphStore
from engram.llm.scripted import ScriptedLLM
from engram.vector.memory import MemoryVectorStore

T0 = datetime(2023, 3, 1, tzinfo=UTC)


class Brain:
    """A scripted LLM that answers each of engram's prompts from queues (by prompt), so fact and
    graph calls can run concurrently in any order. ``decide`` replies default to "nothing"."""

    def __init__(self, delay: float = 0.0) -> None:
        self.facts: list[Any] = []
        self.graph: list[Any] = []
        self.graph_decide: list[Any] = []
        self.seen: list[str] = []
        self.delay = delay
        self.llm = ScriptedLLM(respond=self._respond, delay=delay)

    def _respond(self, messages: list[dict[str, Any]], options: dict[str, Any]) -> str | LLMResponse:
        system = messages[0]["content"]
        if system == EXTRACT_USER_V1:
            self.seen.append("facts")
            return _pop(self.facts, {"facts": []})
        if system == DECIDE_V1:
            self.seen.append("decide")
            stored = json.loads(messages[1]["content"])["new_facts"]
            return json.dumps(
                {"actions": [{"fact": f["fact"], "event": "ADD", "text": f["text"]} for f in stored]}
            )
        if system == GRAPH_EXTRACT_V1:
            self.seen.append("graph")
            assert options["tools"] and options["tools"][0]["function"]["name"] == "record_graph"
            return _pop(self.graph, {"entities": [], "relations": []})
        if system == GRAPH_DECIDE_V1:
            self.seen.append("graph_decide")
            self.last_decide = json.loads(messages[1]["content"])
            return _pop(self.graph_decide, {"contradicted": []})
        raise AssertionError(f"unexpected prompt {system[:60]!r}")


def _pop(queue: list[Any], default: Any) -> str | LLMResponse:
    reply = queue.pop(0) if queue else default
    if isinstance(reply, Exception):
        raise reply
    return reply if isinstance(reply, str | LLMResponse) else json.dumps(reply)


def rel(source: str, relation: str, destination: str, **kw: Any) -> dict[str, Any]:
    return {"source": source, "relation": relation, "destination": destination, **kw}


def graph_reply(*relations: dict[str, Any], entities: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    return {"entities": [{"name": n, "type": t} for n, t in entities], "relations": list(relations)}


def memory(brain: Brain, graph: Any = None, **config: Any) -> AsyncMemory:
    return AsyncMemory(
        {
            "vector_store": MemoryVectorStore(),
            "embedder": HashEmbedder(),
            "llm": brain.llm,
            "graph_store": graph if graph is not None else MemoryGraphStore(),
            **config,
        }
    )


def current(g: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (r["source"], r["relationship"], r["destination"]) for r in g["relations"] if r["expired_at"] is None
    }


# -- parsers ---------------------------------------------------------------------------------------


def test_parse_graph_keeps_good_items_and_reports_bad_ones() -> None:
    problems: list[str] = []
    got = parse_graph(
        {
            "entities": [
                {"name": "Alice", "type": "Person"},
                {"name": "  "},
                "junk",
                {"name": "alice", "type": "x"},
            ],
            "relations": [
                rel("Alice", "Lives In", "Paris", valid_at="2021-05"),
                rel("Alice", "knows", "alice"),  # a self-loop
                rel("Bob", "", "Paris"),
                {"source": "Alice"},
                rel("Alice", "moved_out_of", "Lyon", ended=True, invalid_at="2020"),
            ],
        },
        problems,
    )
    assert got is not None
    assert got.entities["alice"] == ("Alice", "person")  # the first spelling wins; "alice" merged
    assert set(got.entities) == {"alice", "paris", "lyon"}  # endpoints become entities
    assert [(r.source, r.relation, r.destination) for r in got.relations] == [
        ("Alice", "lives_in", "Paris"),
        ("Alice", "moved_out_of", "Lyon"),
    ]
    assert got.relations[0].valid_at == datetime(2021, 5, 1, tzinfo=UTC)
    assert got.relations[1].ended and got.relations[1].invalid_at == datetime(2020, 1, 1, tzinfo=UTC)
    assert len(problems) == 5, problems


@pytest.mark.parametrize(
    "data", [None, {}, {"entities": "x", "relations": []}, {"relations": {}}, {"facts": []}]
)
def test_parse_graph_refuses_wrong_shapes(data: Any) -> None:
    assert parse_graph(data, []) is None


def test_parse_date_forms() -> None:
    assert parse_date("2024") == datetime(2024, 1, 1, tzinfo=UTC)
    assert parse_date("2024-05-07") == datetime(2024, 5, 7, tzinfo=UTC)
    assert parse_date("2024-05-07T10:00:00+02:00") == datetime(2024, 5, 7, 8, tzinfo=UTC)
    for bad in ("", "soon", "2024-13", None, 2024, "May 2024"):
        assert parse_date(bad) is None


def test_parse_contradictions_validates_ids() -> None:
    problems: list[str] = []
    got = parse_contradictions(
        {
            "contradicted": [
                {"id": 0, "new": 1},
                {"id": "1", "new": "0"},
                {"id": 5, "new": 0},
                {"id": True, "new": 0},
            ]
        },
        2,
        2,
        problems,
    )
    assert got == [(0, 1), (1, 0)] and len(problems) == 2
    assert parse_contradictions({"nope": []}, 1, 1, []) is None


def test_query_keys_are_word_ngrams_with_possessives_dropped() -> None:
    keys = query_keys("Where did Alice's friend from New York live?")
    assert "alice" in keys and "new york" in keys and "new york live" in keys
    assert "alice's" not in keys
    assert query_keys("") == [] and query_keys("!!! ???") == []


# -- add: extraction, resolution, contradiction ------------------------------------------------------


async def test_add_writes_entities_and_relations_with_provenance() -> None:
    brain = Brain()
    brain.facts.append(
        {"facts": [{"text": "Alice lives in Paris", "type": "factual", "category": "personal"}]}
    )
    brain.graph.append(
        graph_reply(rel("Alice", "lives_in", "Paris"), entities=[("Alice", "person"), ("Paris", "place")])
    )
    async with memory(brain) as mem:
        out = await mem.add("I live in Paris", user_id="alice")
        assert [r["event"] for r in out["results"]] == ["ADD"]
        added = out["relations"]["added"]
        assert [(r["source"], r["relationship"], r["destination"]) for r in added] == [
            ("Alice", "lives_in", "Paris")
        ]
        assert added[0]["memory_ids"] == [out["results"][0]["id"]]
        assert out["infer"]["graph"]["entities"] == 2
        g = await mem.get_graph(user_id="alice")
        assert {(e["name"], e["type"]) for e in g["entities"]} == {("Alice", "person"), ("Paris", "place")}
        assert current(g) == {("Alice", "lives_in", "Paris")}
        # the speaker's name is given to the graph prompt for "I"
        assert "The user's name: alice" in brain.llm.calls[-1]["messages"][1]["content"] or any(
            "The user's name: alice" in c["messages"][1]["content"] for c in brain.llm.calls
        )
        assert (await mem.get_all(user_id="alice"))["relations"][0]["relationship"] == "lives_in"


async def test_names_resolve_by_key_and_restated_relations_gain_mentions() -> None:
    brain = Brain()
    brain.facts += [
        {"facts": [{"text": "Alice likes tea", "type": "preference", "category": "preference"}]},
        {"facts": [{"text": "Alice knows Bob", "type": "factual", "category": "relationship"}]},
    ]
    brain.graph += [
        graph_reply(rel("Alice", "likes", "tea")),
        graph_reply(rel("ALICE", "likes", "Tea."), rel("alice", "knows", "Bob")),
    ]
    async with memory(brain) as mem:
        await mem.add("I like tea", user_id="u")
        out = await mem.add("I like tea and I know Bob", user_id="u")
        assert out["infer"]["graph"]["mentioned"] == 1
        g = await mem.get_graph(user_id="u")
        assert sorted(e["name"] for e in g["entities"]) == ["Alice", "Bob", "tea"]
        likes = next(r for r in g["relations"] if r["relationship"] == "likes")
        assert likes["mentions"] == 2 and len(likes["memory_ids"]) == 2
        assert next(e for e in g["entities"] if e["name"] == "Alice")["mentions"] == 2


class AliasEmbedder(HashEmbedder):
    """The hash embedder, except that listed aliases embed next to their canonical name."""

    def __init__(self, aliases: dict[str, str]) -> None:
        super().__init__()
        self.aliases = aliases

    async def embed(self, texts: Sequence[str], *, kind: str = "document") -> np.ndarray:
        out = await super().embed([self.aliases.get(t, t) for t in texts], kind=kind)
        for i, t in enumerate(texts):
            if t in self.aliases:  # near, not equal: cosine about 0.99
                out[i] = out[i] + 0.1 * (await super().embed([t], kind=kind))[0]
                out[i] /= np.linalg.norm(out[i])
        return out


async def test_close_name_embeddings_merge_within_a_scope_only() -> None:
    brain = Brain()
    brain.graph += [
        graph_reply(rel("Alice", "lives_in", "New York")),
        graph_reply(rel("Alice", "works_in", "NYC")),
        graph_reply(rel("Bob", "works_in", "NYC")),
    ]
    mem = AsyncMemory(
        {
            "vector_store": MemoryVectorStore(),
            "embedder": AliasEmbedder({"NYC": "New York"}),
            "llm": brain.llm,
            "graph_store": MemoryGraphStore(),
        }
    )
    async with mem:
        await mem.add("I live in New York", user_id="u")
        await mem.add("I work in NYC", user_id="u")
        await mem.add("Bob works in NYC", user_id="other")
        g = await mem.get_graph(user_id="u")
        assert sorted(e["name"] for e in g["entities"]) == ["Alice", "New York"]
        assert current(g) == {("Alice", "lives_in", "New York"), ("Alice", "works_in", "New York")}
        other = await mem.get_graph(user_id="other")  # another scope keeps its own spelling
        assert sorted(e["name"] for e in other["entities"]) == ["Bob", "NYC"]


async def test_llm_decided_contradiction_closes_the_interval_and_the_past_stays_answerable() -> None:
    brain = Brain()
    brain.graph += [
        graph_reply(rel("Alice", "lives_in", "Paris", valid_at="2021-01-01")),
        graph_reply(rel("Alice", "lives_in", "Rome", valid_at="2024-02-01")),
    ]
    brain.graph_decide.append(
        LLMResponse(
            text="",
            tool_calls=[
                {"name": "record_contradictions", "arguments": {"contradicted": [{"id": 0, "new": 0}]}}
            ],
        )
    )
    async with memory(brain) as mem:
        await mem.add("I live in Paris", user_id="alice")
        out = await mem.add("I moved to Rome", user_id="alice")
        assert [(r["destination"], r["invalid_at"][:10]) for r in out["relations"]["closed"]] == [
            ("Paris", "2024-02-01")
        ]
        assert brain.last_decide["new"][0]["single_valued"] is True
        assert brain.last_decide["stored"] == [{"id": 0, "relation": "Alice -lives_in-> Paris"}]
        now = await mem.get_graph(user_id="alice")
        assert current(now) == {("Alice", "lives_in", "Rome")}
        every = await mem.get_graph(user_id="alice", include_expired=True)
        paris = next(r for r in every["relations"] if r["destination"] == "Paris")
        assert paris["expired_at"] is not None and paris["valid_at"].startswith("2021-01-01")
        in_2023 = await mem.get_graph(user_id="alice", at="2023-06-01")
        assert [r["destination"] for r in in_2023["relations"]] == ["Paris"]
        in_2025 = await mem.get_graph(user_id="alice", at=datetime(2025, 1, 1, tzinfo=UTC))
        assert [r["destination"] for r in in_2025["relations"]] == ["Rome"]
        with pytest.raises(InvalidInputError):
            await mem.get_graph(user_id="alice", at="last tuesday")


async def test_the_llm_decides_even_against_the_rule() -> None:
    brain = Brain()
    brain.graph += [
        graph_reply(rel("Alice", "works_at", "Acme")),
        graph_reply(rel("Alice", "works_at", "Initech")),
    ]
    brain.graph_decide.append({"contradicted": []})  # two jobs at once, says the model
    async with memory(brain) as mem:
        await mem.add("I work at Acme", user_id="a")
        await mem.add("I also work at Initech", user_id="a")
        assert current(await mem.get_graph(user_id="a")) == {
            ("Alice", "works_at", "Acme"),
            ("Alice", "works_at", "Initech"),
        }


@pytest.mark.parametrize("bad_decision", ["not json at all", {"verdict": "yes"}, ProviderError("down")])
async def test_unusable_decision_falls_back_to_the_single_valued_rule(bad_decision: Any) -> None:
    brain = Brain()
    brain.graph += [
        graph_reply(rel("Alice", "lives_in", "Paris"), rel("Alice", "likes", "tea")),
        graph_reply(rel("Alice", "lives_in", "Rome"), rel("Alice", "likes", "coffee")),
    ]
    brain.graph_decide.append(bad_decision)
    async with memory(brain) as mem:
        await mem.add("Paris, tea", user_id="a")
        out = await mem.add("Rome, coffee", user_id="a")
        assert any("decided by rule" in p for p in out["infer"]["graph"]["problems"])
        assert current(await mem.get_graph(user_id="a")) == {
            ("Alice", "lives_in", "Rome"),
            ("Alice", "likes", "tea"),
            ("Alice", "likes", "coffee"),
        }


def test_rule_closes_single_valued_only() -> None:
    from engram.core import Relation

    old_home = Relation("A", "lives_in", "P", source_id="a", destination_id="p")
    old_like = Relation("A", "likes", "T", source_id="a", destination_id="t")
    new_home = Relation("A", "lives_in", "R", source_id="a", destination_id="r")
    new_like = Relation("A", "likes", "C", source_id="a", destination_id="c")
    pairs = contradicted_by_rule([old_home, old_like], [new_home, new_like], {"lives_in"})
    assert pairs == [(old_home, new_home)]


async def test_ended_relation_closes_the_current_one() -> None:
    brain = Brain()
    brain.graph += [
        graph_reply(rel("Alice", "member_of", "Chess Club")),
        graph_reply(rel("Alice", "member_of", "Chess Club", ended=True, invalid_at="2024-06")),
    ]
    async with memory(brain) as mem:
        await mem.add("I joined the chess club", user_id="a")
        out = await mem.add("I quit the chess club in June", user_id="a")
        assert [r["destination"] for r in out["relations"]["closed"]] == ["Chess Club"]
        assert out["relations"]["closed"][0]["invalid_at"].startswith("2024-06-01")
        assert current(await mem.get_graph(user_id="a")) == set()


@pytest.mark.parametrize("failure", [ProviderError("graph model down"), "no json here", {"graph": 1}])
async def test_graph_extraction_failure_keeps_the_memories(failure: Any) -> None:
    brain = Brain()
    brain.facts.append(
        {"facts": [{"text": "Alice likes tea", "type": "preference", "category": "preference"}]}
    )
    brain.graph.append(failure)
    async with memory(brain) as mem:
        out = await mem.add("I like tea", user_id="a")
        assert [r["memory"] for r in out["results"]] == ["Alice likes tea"]
        assert "the graph was not changed" in out["infer"]["graph"]["failed"]
        assert out["relations"] == {"added": [], "closed": []}
        assert await mem.count(user_id="a") == 1
        assert (await mem.get_graph(user_id="a"))["entities"] == []


class FailingApplyGraph(MemoryGraphStore):
    async def apply(self, batch: Any) -> None:
        raise ProviderError("graph store is read-only today")


async def test_graph_write_failure_keeps_the_memories_and_says_so() -> None:
    brain = Brain()
    brain.facts.append(
        {"facts": [{"text": "Alice likes tea", "type": "preference", "category": "preference"}]}
    )
    brain.graph.append(graph_reply(rel("Alice", "likes", "tea")))
    async with memory(brain, FailingApplyGraph()) as mem:
        out = await mem.add("I like tea", user_id="a")
        assert await mem.count(user_id="a") == 1
        assert "graph write failed" in out["infer"]["graph"]["failed"] and out["relations"]["added"] == []


async def test_fact_and_graph_extraction_overlap() -> None:
    """Each LLM call takes 150 ms; extracting facts and graph one after the other would take 300."""
    brain = Brain(delay=0.15)
    brain.facts.append(
        {"facts": [{"text": "Alice likes tea", "type": "preference", "category": "preference"}]}
    )
    brain.graph.append(graph_reply(rel("Alice", "likes", "tea")))
    async with memory(brain) as mem:
        await mem.add("warm-up", user_id="w", infer=False)
        start = time.perf_counter()
        await mem.add("I like tea", user_id="a")
        elapsed = time.perf_counter() - start
    assert sorted(brain.seen) == ["facts", "graph"]
    assert elapsed < 0.27, f"fact and graph extraction did not overlap: {elapsed:.3f} s"


async def test_infer_false_and_no_llm_make_no_graph_calls() -> None:
    brain = Brain()
    async with memory(brain) as mem:
        await mem.add("I like tea", user_id="a", infer=False)
        assert brain.seen == []


# -- search -------------------------------------------------------------------------------------------


class SlowVectorStore(MemoryVectorStore):
    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    async def search(self, query: Any) -> Any:
        await anyio.sleep(self.delay)
        return await super().search(query)


class SlowGraphStore(MemoryGraphStore):
    def __init__(self, delay: float, fail: Callable[[str], BaseException | None] = lambda _: None) -> None:
        super().__init__()
        self.delay, self.fail = delay, fail

    async def _slow(self, what: str) -> None:
        await anyio.sleep(self.delay)
        err = self.fail(what)
        if err is not None:
            raise err

    async def entities(self, scope: Scope, **kw: Any) -> Any:
        await self._slow("entities")
        return await super().entities(scope, **kw)

    async def similar_entities(self, scope: Scope, embedding: Any, **kw: Any) -> Any:
        await self._slow("similar_entities")
        return await super().similar_entities(scope, embedding, **kw)

    async def neighbors(self, scope: Scope, entity_ids: Any = (), **kw: Any) -> Any:
        await self._slow("neighbors")
        return await super().neighbors(scope, entity_ids, **kw)


async def _seed(mem: AsyncMemory, brain: Brain, graph: Any) -> None:
    brain.facts.append(
        {
            "facts": [
                {"text": "Alice adopted a dog named Rex", "type": "factual", "category": "personal"},
                {"text": "The weather was sunny", "type": "episodic", "category": "misc"},
            ]
        }
    )
    brain.graph.append(graph_reply(rel("Alice", "has_pet", "Rex"), rel("Rex", "likes", "the park")))
    await mem.add("I adopted Rex", user_id="alice")


async def test_search_runs_vector_and_graph_recall_concurrently() -> None:
    """A vector store and a graph store that each take 100 ms: search takes well under 200 ms."""
    brain = Brain()
    graph = SlowGraphStore(0.0)
    vector = SlowVectorStore(0.0)
    async with AsyncMemory(
        {"vector_store": vector, "embedder": HashEmbedder(), "llm": brain.llm, "graph_store": graph}
    ) as mem:
        await _seed(mem, brain, graph)
        await mem.search("warm up", user_id="alice")
        graph.delay = vector.delay = 0.1
        start = time.perf_counter()
        out = await mem.search("What does Alice's dog Rex like?", user_id="alice")
        elapsed = time.perf_counter() - start
    assert elapsed < 0.17, f"recall paths ran one after another: {elapsed:.3f} s"
    assert "missing" not in out
    triples = [(r["source"], r["relationship"], r["destination"], r["hops"]) for r in out["relations"]]
    assert ("Alice", "has_pet", "Rex", 1) in triples and ("Rex", "likes", "the park", 1) in triples
    top = out["results"][0]
    assert top["memory"] == "Alice adopted a dog named Rex"
    assert top["scores"]["entity"] == pytest.approx(1.0) and top["scores"]["graph"] == pytest.approx(1.0)


@pytest.mark.parametrize("kind", ["error", "hang"])
async def test_a_failing_graph_path_leaves_search_answering(kind: str) -> None:
    brain = Brain()

    def fail(what: str) -> BaseException | None:
        return ProviderError("graph server down") if kind == "error" and what == "neighbors" else None

    graph = SlowGraphStore(0.0, fail)
    async with AsyncMemory(
        {
            "vector_store": MemoryVectorStore(),
            "embedder": HashEmbedder(),
            "llm": brain.llm,
            "graph_store": graph,
            "search": {"path_timeout": 0.3},
        }
    ) as mem:
        await _seed(mem, brain, graph)
        if kind == "hang":
            graph.delay = 3600
        start = time.perf_counter()
        out = await mem.search("Alice's dog Rex", user_id="alice")
        elapsed = time.perf_counter() - start
    assert out["results"] and out["results"][0]["memory"] == "Alice adopted a dog named Rex"
    assert "graph" in out["missing"] and out["relations"] == []
    if kind == "hang":
        assert "timed out" in out["missing"]["graph"] and "entity" in out["missing"]
        assert elapsed < 2.0, f"search waited for a hanging graph store: {elapsed:.1f} s"
    else:
        assert "graph server down" in out["missing"]["graph"] and "entity" not in out["missing"]


class BrokenVectorSearch(MemoryVectorStore):
    async def search(self, query: Any) -> Any:
        raise ProviderError("vector index corrupt")


async def test_search_answers_from_the_graph_when_the_vector_store_fails_and_raises_when_all_fail() -> None:
    brain = Brain()
    async with AsyncMemory(
        {
            "vector_store": BrokenVectorSearch(),
            "embedder": HashEmbedder(),
            "llm": brain.llm,
            "graph_store": MemoryGraphStore(),
        }
    ) as mem:
        brain.graph.append(graph_reply(rel("Alice", "has_pet", "Rex")))
        await mem.add("I adopted Rex", user_id="alice")
        out = await mem.search("Rex", user_id="alice")
        assert out["results"] == [] and [r["destination"] for r in out["relations"]] == ["Rex"]
        assert "vector index corrupt" in out["missing"]["dense"]
    async with AsyncMemory({"vector_store": BrokenVectorSearch(), "embedder": HashEmbedder()}) as mem:
        with pytest.raises(ProviderError, match="vector index corrupt"):
            await mem.search("Rex", user_id="alice")


async def test_entity_boost_lifts_the_memory_that_names_the_entity() -> None:
    from engram.core import Entity, MemoryItem, ScoredMemory

    alice = Entity("Alice", user_id="u")
    a = ScoredMemory(MemoryItem(id="a", memory="she went hiking", hash="", user_id="u"), 0.50, {})
    b = ScoredMemory(MemoryItem(id="b", memory="alice went hiking", hash="", user_id="u"), 0.45, {})
    out = apply_graph_boost([a, b], [alice], [], entity_boost=0.1, graph_boost=0.05)
    assert [h.item.id for h in out] == ["b", "a"]
    assert b.score == pytest.approx(0.55) and b.scores["entity"] == 1.0 and "entity" not in a.scores
    # "alice" inside another word does not count
    c = ScoredMemory(MemoryItem(id="c", memory="malice aforethought", hash="", user_id="u"), 0.4, {})
    apply_graph_boost([c], [alice], [], entity_boost=0.1, graph_boost=0.05)
    assert c.score == pytest.approx(0.4)


async def test_search_without_a_graph_store_returns_empty_relations() -> None:
    async with AsyncMemory({"vector_store": MemoryVectorStore(), "embedder": HashEmbedder()}) as mem:
        await mem.add("Alice has a dog", user_id="u")
        out = await mem.search("dog", user_id="u")
        assert out["relations"] == [] and out["results"] and "missing" not in out
        assert await mem.get_graph(user_id="u") == {"entities": [], "relations": []}


# -- consistency ----------------------------------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite"])
def graph_store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "memory":
        return MemoryGraphStore()
    return SQLiteGraphStore(SQLiteGraphStore.Config(path=str(tmp_path / "graph.db")))


async def test_delete_reaches_the_graph(graph_store: Any) -> None:
    brain = Brain()
    brain.facts += [
        {"facts": [{"text": "Alice has a dog named Rex", "type": "factual", "category": "personal"}]},
        {"facts": [{"text": "Alice likes tea", "type": "preference", "category": "preference"}]},
    ]
    brain.graph += [
        graph_reply(rel("Alice", "has_pet", "Rex"), rel("Alice", "likes", "tea")),
        graph_reply(rel("Alice", "likes", "tea")),
    ]
    async with memory(brain, graph_store) as mem:
        first = (await mem.add("Rex and tea", user_id="a"))["results"][0]["id"]
        second = (await mem.add("tea again", user_id="a"))["results"][0]["id"]
        await mem.delete(first)
        g = await mem.get_graph(user_id="a", include_expired=True)
        # has_pet was stated only by the first memory: gone, with Rex; likes is still backed by the second
        assert current(g) == {("Alice", "likes", "tea")}
        assert sorted(e["name"] for e in g["entities"]) == ["Alice", "tea"]
        assert g["relations"][0]["memory_ids"] == [second]


async def test_no_relation_outlives_its_scope(graph_store: Any) -> None:
    brain = Brain()
    for user in ("a", "b"):
        brain.facts.append(
            {"facts": [{"text": f"{user} lives in Paris", "type": "factual", "category": "personal"}]}
        )
        brain.graph.append(graph_reply(rel(user, "lives_in", "Paris"), rel(user, "knows", "Zed")))
    async with memory(brain, graph_store) as mem:
        await mem.add("I live in Paris", user_id="a", run_id="r1")
        await mem.add("I live in Paris", user_id="b")
        # relations with no provenance at all (an add whose facts were all duplicates) go too
        brain.facts.append({"facts": []})
        brain.graph.append(graph_reply(rel("a", "likes", "jazz")))
        await mem.add("jazz", user_id="a", run_id="r2")
        out = await mem.delete_all(user_id="a")
        assert out["deleted"] == 1
        for scope in (Scope("a"), Scope("a", run_id="r1"), Scope("a", run_id="r2")):
            assert await graph_store.relations(scope, include_expired=True) == []
            assert await graph_store.entities(scope) == []
        assert current(await mem.get_graph(user_id="b")) == {
            ("b", "lives_in", "Paris"),
            ("b", "knows", "Zed"),
        }
        assert (await mem.search("Paris", user_id="a"))["relations"] == []
        await mem.reset()
        assert await graph_store.relations(Scope("b"), include_expired=True) == []
        assert await graph_store.entities(Scope("b")) == []


async def test_sqlite_graph_shares_the_memory_database_file(tmp_path: Path) -> None:
    path = tmp_path / "engram.db"
    brain = Brain()
    brain.graph.append(graph_reply(rel("Alice", "likes", "tea")))
    async with AsyncMemory(
        {
            "vector_store": f"sqlite:///{path}",
            "embedder": HashEmbedder(),
            "llm": brain.llm,
            "graph_store": "sqlite",
        }
    ) as mem:
        assert isinstance(mem.graph_store, SQLiteGraphStore)
        await mem.add("I like tea", user_id="a")
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(("-wal", "-shm"))) == [
        "engram.db"
    ]
    async with AsyncMemory(
        {"vector_store": f"sqlite:///{path}", "embedder": HashEmbedder(), "graph_store": "sqlite"}
    ) as mem:
        assert current(await mem.get_graph(user_id="a")) == {("Alice", "likes", "tea")}


async def test_graph_pipeline_reports_without_writing() -> None:
    """The pipeline only builds a batch: the caller decides when to write."""
    brain = Brain()
    brain.graph.append(graph_reply(rel("Alice", "likes", "tea")))
    store = MemoryGraphStore()

    async def embed(texts: Sequence[str]) -> np.ndarray:
        return await HashEmbedder().embed(list(texts))

    from engram.core import GraphConfig, Message

    gp = GraphPipeline(brain.llm, store, embed, Scope("a"), T0, 5.0, GraphConfig())
    out = await gp.run([Message("user", "I like tea")], "Alice")
    assert len(out.batch.relations) == 1 and len(out.batch.entities) == 2
    assert await store.entities(Scope("a")) == []


def test_sync_memory_reads_the_graph() -> None:
    from engram.core import Memory

    brain = Brain()
    brain.graph.append(graph_reply(rel("Alice", "likes", "tea")))
    with Memory(
        {
            "vector_store": MemoryVectorStore(),
            "embedder": HashEmbedder(),
            "llm": brain.llm,
            "graph_store": "memory",
        }
    ) as mem:
        mem.add("I like tea", user_id="a")
        assert current(mem.get_graph(user_id="a")) == {("Alice", "likes", "tea")}


@pytest.mark.parametrize("threshold", [None, 0.9])
async def test_entities_named_by_the_question_embedding_only_when_configured(threshold: float | None) -> None:
    brain = Brain()
    brain.facts.append({"facts": [{"text": "Rex chased a ball", "type": "episodic", "category": "misc"}]})
    brain.graph.append(graph_reply(rel("Alice", "has_pet", "Rex")))
    config = {
        "vector_store": MemoryVectorStore(),
        "embedder": AliasEmbedder({"Rexy": "Rex"}),
        "llm": brain.llm,
        "graph_store": MemoryGraphStore(),
        "graph": {"query_entity_threshold": threshold},
    }
    async with AsyncMemory(config) as mem:
        await mem.add("Rex!", user_id="a")
        hits = (await mem.search("Rexy", user_id="a"))["results"]
        assert hits
        # "Rexy" is no entity's key; only its embedding is near "Rex"
        assert ("entity" in hits[0]["scores"]) is (threshold is not None)
