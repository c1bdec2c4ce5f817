"""Neighbour expansion and the query-aware boosts (engram.core._ranking), alone and in search."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from engram.core import AsyncMemory, MemoryConfig, MemoryItem, ScoredMemory, content_hash
from engram.core._ranking import BoostConfig, apply_boosts, expand_neighbors, memory_time, query_hints
from pydantic import ValidationError

NOW = datetime(2024, 3, 15, 12, 0, tzinfo=UTC)
HASH = {"provider": "hash", "config": {"dims": 64}}


def item(mid: str, text: str, **meta: Any) -> MemoryItem:
    return MemoryItem(id=mid, memory=text, hash=content_hash(text), user_id="u", metadata=meta)


def hit(mid: str, text: str, score: float, **meta: Any) -> ScoredMemory:
    return ScoredMemory(item(mid, text, **meta), score, {})


def day(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, tzinfo=UTC)


# -- query_hints -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("When did Melanie go camping in June?", [(day(2024, 6, 1), day(2024, 7, 1)), (day(2023, 6, 1), day(2023, 7, 1))]),
        ("What did she paint in July 2023?", [(day(2023, 7, 1), day(2023, 8, 1))]),
        ("What did Maria do on 13 October 2023?", [(day(2023, 10, 13), day(2023, 10, 14))]),
        ("Which painting did she show on October 13, 2023?", [(day(2023, 10, 13), day(2023, 10, 14))]),
        ("Where was he in Dec 2022", [(day(2022, 12, 1), day(2023, 1, 1))]),
        ("How many times did she go to the beach in 2023?", [(day(2023, 1, 1), day(2024, 1, 1))]),
        ("What did I buy in May?", [(day(2024, 5, 1), day(2024, 6, 1)), (day(2023, 5, 1), day(2023, 6, 1))]),
        ("May I ask what you like?", []),
        ("What may help with my back pain?", []),
        ("What did we plan yesterday?", [(day(2024, 3, 14), day(2024, 3, 15))]),
        ("what did I cook today", [(day(2024, 3, 15), day(2024, 3, 16))]),
        ("What did I read last week?", [(day(2024, 3, 4), day(2024, 3, 11))]),
        ("What happened last month?", [(day(2024, 2, 1), day(2024, 3, 1))]),
        ("What did I decide this year?", [(day(2024, 1, 1), day(2025, 1, 1))]),
        ("Where did we travel last year?", [(day(2023, 1, 1), day(2024, 1, 1))]),
        ("What is my favourite colour?", []),
        ("Which option may work best?", []),
        ("What did Jon may have said", []),
        ("Did they march in the parade?", []),
        ("What did Jan say about the trip?", []),
        ("Which of the 3 may be true?", []),
        ("What did we agree on 3 May?", [(day(2024, 5, 3), day(2024, 5, 4)), (day(2023, 5, 3), day(2023, 5, 4))]),
        ("What did I do in March?", [(day(2024, 3, 1), day(2024, 4, 1)), (day(2023, 3, 1), day(2023, 4, 1))]),
    ],
)
def test_query_windows(query: str, expected: list[tuple[datetime, datetime]]) -> None:
    assert query_hints(query, NOW).windows == expected


def test_last_month_in_january_is_december() -> None:
    assert query_hints("what changed last month", day(2024, 1, 20)).windows == [(day(2023, 12, 1), day(2024, 1, 1))]


@pytest.mark.parametrize(
    ("query", "asks"),
    [
        ("When did Caroline go to the LGBTQ support group?", True),
        ("  when is the meeting", True),
        ("Do you remember when we met?", False),
        ("And when did you start painting?", True),
        ("What date is the wedding?", True),
        ("What does Caroline like to paint?", False),
    ],
)
def test_asks_when(query: str, asks: bool) -> None:
    assert query_hints(query, NOW).asks_when is asks


def test_memory_time_prefers_message_time() -> None:
    a = item("a", "x", message_time="2023-05-08T11:56:00+00:00")
    assert memory_time(a) == datetime(2023, 5, 8, 11, 56, tzinfo=UTC)
    naive = item("b", "x", message_time="2023-05-08T11:56:00")
    assert memory_time(naive) == datetime(2023, 5, 8, 11, 56, tzinfo=UTC)
    bad = item("c", "x", message_time="last tuesday")
    assert memory_time(bad) == bad.created_at
    plain = item("d", "x")
    assert memory_time(plain) == plain.created_at


# -- apply_boosts ----------------------------------------------------------------------------------


def test_speaker_boost_only_for_one_named_speaker() -> None:
    cfg = BoostConfig()
    hits = [hit("1", "I love hiking", 0.50, speaker="Melanie"), hit("2", "I love hiking too", 0.45, speaker="Caroline")]
    out = apply_boosts(hits, query_hints("What does Caroline love?", NOW), cfg)
    assert [h.item.id for h in out] == ["2", "1"]
    assert out[0].score == pytest.approx(0.55) and out[0].scores["speaker"] == cfg.speaker
    assert "speaker" not in out[1].scores
    both = [hit("1", "a", 0.5, speaker="Melanie"), hit("2", "b", 0.45, speaker="Caroline")]
    out = apply_boosts(both, query_hints("What do Caroline and Melanie share?", NOW), cfg)
    assert [h.item.id for h in out] == ["1", "2"] and [h.score for h in out] == [0.5, 0.45]


def test_temporal_boost_for_when_questions() -> None:
    hits = [hit("1", "We went camping, it was great", 0.5), hit("2", "We went camping last weekend", 0.45)]
    out = apply_boosts(hits, query_hints("When did they go camping?", NOW), BoostConfig())
    assert [h.item.id for h in out] == ["2", "1"] and out[0].scores["temporal"] == 0.1
    hits = [hit("1", "We went camping, it was great", 0.5), hit("2", "We went camping last weekend", 0.45)]
    out = apply_boosts(hits, query_hints("Where did they go camping?", NOW), BoostConfig())
    assert [h.item.id for h in out] == ["1", "2"]


def test_time_window_boost_uses_message_time_and_slack() -> None:
    def hits() -> list[ScoredMemory]:
        return [
            hit("may", "the beach trip", 0.5, message_time="2023-05-20T10:00:00+00:00"),
            hit("june", "the beach trip", 0.45, message_time="2023-06-03T10:00:00+00:00"),
            hit("late", "the beach trip", 0.44, message_time="2023-07-20T10:00:00+00:00"),
        ]

    hints = query_hints("What happened at the beach in June 2023?", NOW)
    out = apply_boosts(hits(), hints, BoostConfig())
    assert [h.item.id for h in out] == ["june", "may", "late"]
    assert out[0].scores["time_window"] == 0.2
    out = apply_boosts(hits(), hints, BoostConfig(window_slack_days=60))
    assert [h.item.id for h in out] == ["june", "late", "may"]


def test_boosts_off_change_nothing() -> None:
    off = BoostConfig(neighbors=0, speaker=0, temporal=0, time_window=0)
    hits = [hit("1", "we met in June 2023", 0.5, speaker="Ann"), hit("2", "Ann said hi yesterday", 0.4, speaker="Ann")]
    out = apply_boosts(hits, query_hints("When did Ann say hi in June 2023?", NOW), off)
    assert out == hits and [h.score for h in out] == [0.5, 0.4] and all(not h.scores for h in out)


@pytest.mark.parametrize("field", ["neighbors", "speaker", "temporal", "time_window"])
def test_boost_weights_are_validated(field: str) -> None:
    for bad in (-0.1, 1.5, "x"):
        with pytest.raises(ValidationError):
            BoostConfig(**{field: bad})
    with pytest.raises(ValidationError):
        MemoryConfig(search={"boost": {"nieghbors": 0.2}})


# -- expand_neighbors ------------------------------------------------------------------------------


def test_neighbors_join_and_lift() -> None:
    a, b, c, d = (item(x, x) for x in "abcd")
    hits = [ScoredMemory(b, 0.8, {}), ScoredMemory(d, 0.5, {})]
    adjacent = {"b": [a, c], "d": [c]}
    out = expand_neighbors(hits, adjacent, 0.3)
    got = {h.item.id: round(h.score, 6) for h in out}
    # c gains from its best neighbour (b 0.8), a from b; b and d are not adjacent to each other
    assert got == {"b": 0.8, "d": 0.5, "c": round(0.3 * 0.8, 6), "a": round(0.3 * 0.8, 6)}
    assert [h.item.id for h in out][:2] == ["b", "d"]
    assert next(h for h in out if h.item.id == "c").scores == {"neighbor": 0.8}


def test_neighbor_candidates_gain_from_each_other() -> None:
    a, b = item("a", "question"), item("b", "answer")
    out = expand_neighbors([ScoredMemory(a, 0.9, {}), ScoredMemory(b, 0.2, {})], {"a": [b], "b": [a]}, 0.3)
    assert {h.item.id: round(h.score, 6) for h in out} == {"a": round(0.9 + 0.3 * 0.2, 6), "b": round(0.2 + 0.3 * 0.9, 6)}


def test_neighbors_ignore_archived_and_zero_weight() -> None:
    a, b = item("a", "x"), item("b", "y")
    old = MemoryItem(id="a", memory="old", hash="h", user_id="u", archived_at=NOW)
    hits = [ScoredMemory(old, 0.9, {})]
    assert expand_neighbors(hits, {"a": [b]}, 0.3) == hits
    hits = [ScoredMemory(a, 0.9, {})]
    assert expand_neighbors(hits, {"a": [b]}, 0.0) == hits


# -- in search -------------------------------------------------------------------------------------

TURNS = [
    ("Ann", "Hi! How was your weekend?"),
    ("Bob", "Great, what hobby did you pick up recently?"),
    ("Ann", "Pottery. I made a blue bowl on Saturday."),
    ("Bob", "Nice, I have been reading about volcanoes."),
    ("Ann", "Volcanoes are fascinating, which one?"),
    ("Bob", "Mount Etna, in Sicily."),
]


async def _conversation(memory: AsyncMemory, user: str = "u") -> list[str]:
    out = await memory.add([{"role": "user", "content": t, "name": s} for s, t in TURNS], user_id=user)
    return [r["id"] for r in out["results"]]


@pytest.mark.parametrize("store", ["memory", "sqlite"])
async def test_search_expands_to_the_answer_turn(store: str, tmp_path: Path) -> None:
    vs = "memory" if store == "memory" else f"sqlite:///{tmp_path / 'n.db'}"
    async with AsyncMemory({"vector_store": vs, "embedder": HASH}) as memory:
        ids = await _conversation(memory)
        await _conversation(memory, user="other")  # interleaved scope: never a neighbour
        res = await memory.search("what hobby did you pick up recently", user_id="u", limit=10)
        by_id = {r["id"]: r for r in res["results"]}
        answer = by_id[ids[2]]  # "Pottery..." shares no word with the question
        assert answer["scores"].get("neighbor", 0) > 0
        assert all(r["user_id"] == "u" for r in res["results"])
        assert [r["score"] for r in res["results"]] == sorted((r["score"] for r in res["results"]), reverse=True)
    async with AsyncMemory({"vector_store": vs if store == "sqlite" else "memory", "embedder": HASH,
                            "search": {"boost": {"neighbors": 0}}}) as memory:
        if store == "memory":
            ids = await _conversation(memory)
        res = await memory.search("what hobby did you pick up recently", user_id="u", limit=10)
        assert all("neighbor" not in r["scores"] for r in res["results"])


async def test_neighbors_respect_filters(tmp_path: Path) -> None:
    async with AsyncMemory({"vector_store": f"sqlite:///{tmp_path / 'f.db'}", "embedder": HASH}) as memory:
        ids = []
        for i, (s, t) in enumerate(TURNS):
            out = await memory.add({"role": "user", "content": t, "name": s}, user_id="u",
                                   metadata={"public": i != 2})
            ids.append(out["results"][0]["id"])
        res = await memory.search("what hobby did you pick up recently", user_id="u", filters={"public": True})
        got = {r["id"] for r in res["results"]}
        assert ids[2] not in got and got  # the private turn is never pulled in as a neighbour
        assert all(r["metadata"]["public"] is True for r in res["results"])


@pytest.mark.parametrize("store", ["memory", "sqlite"])
async def test_store_neighbors(store: str, tmp_path: Path) -> None:
    from engram.core import Scope, parse_filters

    vs = "memory" if store == "memory" else f"sqlite:///{tmp_path / 's.db'}"
    async with AsyncMemory({"vector_store": vs, "embedder": HASH}) as memory:
        ids = await _conversation(memory)
        other = await _conversation(memory, user="other")
        s = memory.vector_store
        assert "neighbors" in s.capabilities
        got = await s.neighbors(Scope(user_id="u"), [ids[0], ids[3], ids[5], other[1], "nope"])
        assert {k: [m.id for m in v] for k, v in got.items()} == {
            ids[0]: [ids[1]], ids[3]: [ids[2], ids[4]], ids[5]: [ids[4]],
        }
        flt = parse_filters({"speaker": "Ann"})
        got = await s.neighbors(Scope(user_id="u"), [ids[2]], filters=flt)
        assert [m.id for m in got[ids[2]]] == [ids[0], ids[4]]
        await memory.delete(ids[4])
        got = await s.neighbors(Scope(user_id="u"), [ids[3], ids[4]])
        assert {k: [m.id for m in v] for k, v in got.items()} == {ids[3]: [ids[2], ids[5]]}
        assert await s.neighbors(Scope(user_id="u"), []) == {}


def test_message_time_window_in_search_uses_the_clock() -> None:
    hints = query_hints("what did I do yesterday", NOW)
    assert hints.windows == [(NOW.replace(hour=0) - timedelta(days=1), NOW.replace(hour=0))]


async def test_search_time_window_boost_with_clock(tmp_path: Path) -> None:
    async with AsyncMemory({"vector_store": f"sqlite:///{tmp_path / 't.db'}", "embedder": HASH,
                            "search": {"boost": {"neighbors": 0}}}, clock=lambda: NOW) as memory:
        old = await memory.add({"role": "user", "content": "I baked bread", "time": "2024-03-01T09:00:00Z"}, user_id="u")
        new = await memory.add({"role": "user", "content": "I baked bread", "time": "2024-03-14T09:00:00Z"}, user_id="u")
        res = await memory.search("what did I bake yesterday", user_id="u")
        assert [r["id"] for r in res["results"]][:2] == [new["results"][0]["id"], old["results"][0]["id"]]
        assert res["results"][0]["scores"]["time_window"] == 0.2
        assert "time_window" not in res["results"][1]["scores"]


def test_boosts_scale_with_rrf_scores() -> None:
    hits = [hit("1", "Ann likes tea", 0.016, speaker="Bob"), hit("2", "Ann likes tea", 0.015, speaker="Ann")]
    out = apply_boosts(hits, query_hints("what does Ann like", NOW), BoostConfig(), scale=0.016)
    assert out[0].item.id == "2" and out[0].scores["speaker"] == pytest.approx(0.0016)
    assert out[0].score == pytest.approx(0.015 + 0.0016)


def test_a_speaker_without_words_is_never_named() -> None:
    hits = [hit("1", "a", 0.5, speaker="🙂"), hit("2", "b", 0.45, speaker="Ann")]
    out = apply_boosts(hits, query_hints("what did Ann say", NOW), BoostConfig())
    assert [h.item.id for h in out] == ["2", "1"]
    assert "speaker" not in out[1].scores


async def test_a_failing_neighbour_step_is_named_in_missing(caplog: pytest.LogCaptureFixture) -> None:
    from engram.core.errors import ProviderError
    from engram.vector.memory import MemoryVectorStore

    class Broken(MemoryVectorStore):
        async def neighbors(self, scope: Any, ids: Any, *, filters: Any = None) -> Any:
            raise ProviderError("neighbour index is down", provider="test")

    async with AsyncMemory({"vector_store": Broken(), "embedder": HASH}) as memory:
        await _conversation(memory)
        with caplog.at_level("WARNING", logger="engram"):
            res = await memory.search("what hobby did you pick up recently", user_id="u")
    assert "neighbour index is down" in res["missing"]["neighbors"]
    assert res["results"] and all("neighbor" not in r["scores"] for r in res["results"])
    assert any("neighbors path is missing" in r.getMessage() for r in caplog.records)
