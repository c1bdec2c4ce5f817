"""Decay and rehearsal: the retention formula, the score weighting, and rehearsal through the engine
on the real SQLite and in-process stores with a controllable clock."""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
from engram.core import (
    AsyncMemory,
    DecayConfig,
    MemoryConfig,
    MemoryItem,
    ScoredMemory,
    WriteBatch,
    retention,
)
from engram.core._decay import age_days, apply_decay, decayed_score, rehearse
from engram.vector.memory import MemoryVectorStore
from engram.vector.sqlite import SQLiteVectorStore
from pydantic import ValidationError

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
EMBEDDER = {"provider": "hash", "config": {"dims": 64}}


class FakeClock:
    """``AsyncMemory(clock=...)``: "now" stands still until the test moves it."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def _item(label: str, *, created: datetime = T0, updated: datetime | None = None,
          accessed: datetime | None = None, count: int = 0, archived: datetime | None = None) -> MemoryItem:
    return MemoryItem(id=label, memory=label, hash=label, user_id="u", created_at=created, updated_at=updated,
                      last_accessed_at=accessed, access_count=count, archived_at=archived)


# -- the formula ------------------------------------------------------------------------------------


def test_retention_at_known_ages() -> None:
    c = DecayConfig()  # S = 30 days, shape 1, floor 0.2
    assert retention(0, 0, c) == 1.0
    assert retention(30, 0, c) == pytest.approx(0.2 + 0.8 / math.e)
    assert retention(7, 0, c) == pytest.approx(0.2 + 0.8 * math.exp(-7 / 30))
    assert retention(90, 0, c) == pytest.approx(0.2 + 0.8 * math.exp(-3))
    assert [round(retention(d, 0, c), 2) for d in (7, 30, 90)] == [0.83, 0.49, 0.24]  # the documented values
    ages = [0, 0.5, 1, 7, 30, 365, 3650]
    values = [retention(a, 0, c) for a in ages]
    assert values == sorted(values, reverse=True) and len(set(values)) == len(values)  # strictly falling


def test_retention_floor() -> None:
    assert retention(1e6, 0, DecayConfig()) == pytest.approx(0.2)
    assert retention(1e6, 0, DecayConfig(floor=0.0)) == 0.0
    assert retention(30, 0, DecayConfig(floor=0.5)) == pytest.approx(0.5 + 0.5 / math.e)
    assert retention(1e6, 0, DecayConfig(floor=1.0)) == 1.0
    for age in (1, 30, 1000):
        assert 0.2 <= retention(age, 0, DecayConfig()) <= 1.0


def test_retention_shape() -> None:
    half, one, two = DecayConfig(shape=0.5), DecayConfig(), DecayConfig(shape=2.0)
    assert retention(120, 0, half) == pytest.approx(0.2 + 0.8 * math.exp(-2.0))  # sqrt(120 / 30) = 2
    assert retention(60, 0, two) == pytest.approx(0.2 + 0.8 * math.exp(-4.0))
    # every shape crosses at t = S; before it a shape below 1 drops faster, after it slower
    assert retention(30, 0, half) == pytest.approx(retention(30, 0, one)) == pytest.approx(retention(30, 0, two))
    assert retention(3, 0, half) < retention(3, 0, one) < retention(3, 0, two)
    assert retention(300, 0, half) > retention(300, 0, one) > retention(300, 0, two)


def test_stability_grows_with_access_count() -> None:
    c = DecayConfig()
    assert retention(60, 1, c) == pytest.approx(retention(30, 0, c))  # S doubles after one rehearsal
    assert retention(90, 2, c) == pytest.approx(retention(30, 0, c))
    counts = [retention(30, n, c) for n in range(5)]
    assert counts == sorted(counts) and len(set(counts)) == 5
    half = DecayConfig(rehearsal=0.5)
    assert retention(45, 1, half) == pytest.approx(retention(30, 0, half))
    flat = DecayConfig(rehearsal=0.0)
    assert retention(30, 7, flat) == retention(30, 0, flat)


def test_retention_edges_never_overflow() -> None:
    tiny = DecayConfig(base_stability=1e-300, shape=10)
    assert retention(1e9, 0, tiny) == pytest.approx(0.2)
    assert retention(-5, 0, DecayConfig()) == 1.0  # a clock behind the stored time: no decay
    assert retention(float("nan"), 0, DecayConfig()) == 1.0
    assert retention(10, -3, DecayConfig()) == retention(10, 0, DecayConfig())
    assert retention(10, 2**63 - 1, DecayConfig()) == 1.0  # the largest count a store keeps


@pytest.mark.parametrize(
    "bad",
    [
        {"base_stability": 0}, {"base_stability": -1}, {"base_stability": float("inf")}, {"shape": 0},
        {"shape": 11}, {"floor": -0.1}, {"floor": 1.5}, {"rehearsal": -1}, {"rehearsal": float("nan")},
        {"rehearse_threshold": float("nan")}, {"half_life": 3},
    ],
)
def test_config_rejects_bad_values(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        DecayConfig(**bad)
    with pytest.raises(ValidationError):
        MemoryConfig.model_validate({"search": {"decay": bad}})


def test_config_defaults_and_wiring() -> None:
    c = MemoryConfig.model_validate(
        {"search": {"decay": {"enabled": True, "shape": 0.5, "rehearse_threshold": 0.4}}}
    ).search.decay
    assert (c.enabled, c.base_stability, c.shape, c.floor, c.rehearsal, c.rehearse_threshold) == (
        True, 30.0, 0.5, 0.2, 1.0, 0.4
    )
    assert MemoryConfig().search.decay.enabled is False


# -- age and weighting ------------------------------------------------------------------------------


def test_age_counts_from_the_last_reinforcement() -> None:
    now = T0 + 10 * DAY
    assert age_days(_item("a"), now) == 10
    assert age_days(_item("a", updated=T0 + 4 * DAY), now) == 6
    assert age_days(_item("a", updated=T0 + 4 * DAY, accessed=T0 + 2 * DAY), now) == 6  # the latest counts
    assert age_days(_item("a", accessed=T0 + 9.5 * DAY), now) == 0.5
    assert age_days(_item("a", created=now + DAY), now) == 0  # never negative
    said = _item("a")
    said.metadata["message_time"] = (T0 - 400 * DAY).isoformat()  # when it was said does not count
    assert age_days(said, now) == 10


def test_off_by_default_leaves_hits_unchanged() -> None:
    hits = [ScoredMemory(_item("a"), 0.9, {"dense": 0.9}), ScoredMemory(_item("b", created=T0 - 900 * DAY), 0.8)]
    out = apply_decay(hits, DecayConfig(), T0 + 400 * DAY)
    assert out == hits and all(o is h for o, h in zip(out, hits, strict=True))
    assert [h.score for h in out] == [0.9, 0.8] and "decay" not in out[0].scores


def test_apply_decay_weighs_and_resorts() -> None:
    now = T0 + 60 * DAY
    c = DecayConfig(enabled=True)
    old = ScoredMemory(_item("old"), 0.9, {"dense": 0.7})  # 60 days
    fresh = ScoredMemory(_item("fresh", created=now - DAY), 0.6, {"dense": 0.5})  # 1 day
    practised = ScoredMemory(_item("practised", accessed=now - 30 * DAY, count=2), 0.5)  # 30 days, S = 90
    out = apply_decay([old, fresh, practised], c, now)
    r_old, r_fresh, r_pr = retention(60, 0, c), retention(1, 0, c), retention(30, 2, c)
    assert [h.item.id for h in out] == ["fresh", "practised", "old"]
    by_id = {h.item.id: h for h in out}
    assert by_id["old"].score == pytest.approx(0.9 * r_old) and by_id["old"].scores == {"dense": 0.7, "decay": r_old}
    assert by_id["fresh"].score == pytest.approx(0.6 * r_fresh)
    assert by_id["practised"].score == pytest.approx(0.5 * r_pr)
    assert old.score == 0.9 and "decay" not in old.scores  # the input hits are not modified


def test_a_negative_score_moves_down_with_age() -> None:
    assert decayed_score(2.0, 0.5) == 1.0
    assert decayed_score(-2.0, 0.5) == -3.0
    assert decayed_score(-2.0, 1.0) == -2.0
    c = DecayConfig(enabled=True)
    now = T0 + 90 * DAY
    out = apply_decay([ScoredMemory(_item("old"), -1.0), ScoredMemory(_item("new", created=now), -1.0)], c, now)
    assert [h.item.id for h in out] == ["new", "old"] and out[1].score < -1.0


def test_equal_scores_keep_their_order() -> None:
    c = DecayConfig(enabled=True)
    hits = [ScoredMemory(_item(k), 0.5) for k in "abcd"]
    assert [h.item.id for h in apply_decay(hits, c, T0 + DAY)] == list("abcd")


def test_naive_now_is_utc() -> None:
    c = DecayConfig(enabled=True)
    (h,) = apply_decay([ScoredMemory(_item("a"), 1.0)], c, datetime(2024, 5, 31, 12, 0))
    assert h.score == pytest.approx(retention(30, 0, c))


# -- rehearse() on real stores ----------------------------------------------------------------------


def _stored(label: str, seed: int) -> MemoryItem:
    v = np.random.default_rng(seed).standard_normal(8).astype(np.float32)
    it = _item(label)
    it.embedding = v / np.linalg.norm(v)
    return it


@pytest.fixture
async def sqlite_store(tmp_path: Path):
    s = SQLiteVectorStore(SQLiteVectorStore.Config(path=str(tmp_path / "r.db")))
    yield s
    await s.aclose()


async def _counts(store: Any, ids: list[str]) -> dict[str, int]:
    return {i.id: i.access_count for i in await store.get(ids)}


async def test_rehearse_selects_active_hits_above_the_threshold(sqlite_store: SQLiteVectorStore) -> None:
    items = [_stored(k, n) for n, k in enumerate("abcd")]
    await sqlite_store.write(WriteBatch(upserts=items))
    a, b, c, _ = items
    archived = _item("d", archived=T0)  # an archived version of d: its id names the active d
    hits = [ScoredMemory(a, 0.9), ScoredMemory(b, 0.5), ScoredMemory(a, 0.8), ScoredMemory(c, 0.2),
            ScoredMemory(archived, 0.95)]
    now = T0 + DAY
    assert await rehearse(sqlite_store, hits, DecayConfig(), now) == 0  # off: nothing recorded
    assert await rehearse(sqlite_store, hits, DecayConfig(enabled=True, rehearse_threshold=0.5), now) == 2
    assert await _counts(sqlite_store, list("abcd")) == {"a": 1, "b": 1, "c": 0, "d": 0}
    assert await rehearse(sqlite_store, hits, DecayConfig(enabled=True), now) == 3  # None: every active hit
    assert await _counts(sqlite_store, list("abcd")) == {"a": 2, "b": 2, "c": 1, "d": 0}
    (got,) = await sqlite_store.get(["a"])
    assert got.last_accessed_at == now


async def test_rehearse_needs_the_capability() -> None:
    class NoRehearsal(MemoryVectorStore):  # a real store that does not announce the capability
        capabilities = frozenset({"archive"})

    store = NoRehearsal()
    await store.write(WriteBatch(upserts=[_stored("a", 1)]))
    (a,) = await store.get(["a"])
    assert await rehearse(store, [ScoredMemory(a, 1.0)], DecayConfig(enabled=True), T0) == 0
    assert await _counts(store, ["a"]) == {"a": 0}


async def test_a_store_failure_is_logged_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = SQLiteVectorStore(SQLiteVectorStore.Config(path=str(tmp_path / "closed.db")))
    await store.aclose()  # a closed database raises ProviderError on every call
    with caplog.at_level(logging.WARNING, logger="engram"):
        assert await rehearse(store, [ScoredMemory(_item("a"), 1.0)], DecayConfig(enabled=True), T0) == 0
    assert "recording 1 rehearsals failed" in caplog.text and "closed" in caplog.text


# -- through the engine -----------------------------------------------------------------------------


def _config(store: str, **decay: Any) -> dict[str, Any]:
    return {"vector_store": store, "embedder": EMBEDDER, "search": {"decay": {"enabled": True, **decay}}}


@pytest.fixture(params=["sqlite", "memory"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'x.db'}" if request.param == "sqlite" else "memory"


async def _add(mem: AsyncMemory, text: str, **meta: Any) -> str:
    out = await mem.add(text, user_id="u", metadata=meta or None, infer=False)
    return out["results"][0]["id"]


async def test_engine_off_by_default_changes_nothing(store_url: str) -> None:
    clock = FakeClock(datetime.now(UTC))
    async with AsyncMemory({"vector_store": store_url, "embedder": EMBEDDER}, clock=clock) as mem:
        mid = await _add(mem, "I like green tea")
        await _add(mem, "Bob plays chess on Sundays")
        first = (await mem.search("green tea", user_id="u"))["results"]
        clock.advance(400 * DAY)
        later = (await mem.search("green tea", user_id="u"))["results"]
        assert [(r["id"], r["score"]) for r in later] == [(r["id"], r["score"]) for r in first]
        assert all("decay" not in r["scores"] for r in later)
        got = await mem.get(mid)
        assert got is not None
        assert "access_count" not in got and "last_accessed_at" not in got
        assert (await mem.vector_store.get([mid]))[0].access_count == 0


async def test_engine_rehearsed_memory_outlasts_an_unrehearsed_twin(store_url: str) -> None:
    """Two memories with the same text score the same; only one is recalled (by a metadata filter).
    Sixty days later the recalled one ranks first, each with the retention the formula gives."""
    clock = FakeClock(datetime.now(UTC) + DAY)  # after the memories' created_at (the real time)
    async with AsyncMemory(_config(store_url), clock=clock) as mem:
        a = await _add(mem, "I like green tea", k="a")
        b = await _add(mem, "I like green tea", k="b")
        await _add(mem, "Bob plays chess on Sundays", k="c")
        store = mem.vector_store
        first_at = clock.now
        start = [r["id"] for r in (await mem.search("green tea", user_id="u", limit=2))["results"]]
        assert sorted(start) == sorted([a, b])
        weaker = start[1]  # rehearse the one ranked second, so the flip cannot be the tie order
        stronger = start[0]
        clock.advance(DAY)
        recalled_at = clock.now
        out = await mem.search("green tea", user_id="u", filters={"k": "a" if weaker == a else "b"}, limit=1)
        assert [r["id"] for r in out["results"]] == [weaker]
        clock.advance(60 * DAY)
        res = (await mem.search("green tea", user_id="u", limit=2))["results"]
        assert [r["id"] for r in res] == [weaker, stronger]
        c = DecayConfig(enabled=True)
        # weighed before this search's own rehearsal: the weaker twin was returned by both earlier
        # searches (the last 60 days ago, S = 90), the stronger one by the first (61 days ago, S = 60)
        want_w = retention((clock.now - recalled_at) / DAY, 2, c)
        want_s = retention((clock.now - first_at) / DAY, 1, c)
        assert res[0]["scores"]["decay"] == pytest.approx(want_w)
        assert res[1]["scores"]["decay"] == pytest.approx(want_s) and want_s < want_w
        assert res[0]["score"] / res[1]["score"] == pytest.approx(want_w / want_s)
        got = {i.id: i for i in await store.get([a, b])}
        assert got[weaker].access_count == 3 and got[weaker].last_accessed_at == clock.now
        assert got[stronger].access_count == 2
        assert res[0]["access_count"] == 2 and res[1]["access_count"] == 1  # as weighed, before this search


async def test_engine_rehearses_only_what_it_returns(store_url: str) -> None:
    clock = FakeClock(datetime.now(UTC) + DAY)
    async with AsyncMemory(_config(store_url), clock=clock) as mem:
        ids = [await _add(mem, t) for t in ("green tea every morning", "green tea", "black coffee", "chess")]
        store = mem.vector_store
        top = (await mem.search("green tea", user_id="u", limit=1))["results"]
        assert len(top) == 1
        counts = await _counts(store, ids)
        assert counts[top[0]["id"]] == 1 and sum(counts.values()) == 1  # the limit cut the others
        await mem.search("green tea", user_id="u", limit=4)  # all four now rehearsed at this instant ...
        scores = {r["id"]: r["score"] for r in (await mem.search("green tea", user_id="u", limit=4))["results"]}
        assert all(r == 1.0 for r in await _decays(mem))  # ... so their weights stay put below
        counts = await _counts(store, ids)
        cut = sorted(scores.values())[1]
        kept = {i for i, s in scores.items() if s > cut}
        await mem.search("green tea", user_id="u", limit=4, threshold=cut + 1e-9)
        after = await _counts(store, ids)
        assert {i for i in ids if after[i] == counts[i] + 1} == kept  # below the threshold: not returned
        assert all(after[i] == counts[i] for i in ids if i not in kept)


async def _decays(mem: AsyncMemory) -> list[float]:
    return [r["scores"]["decay"] for r in (await mem.search("green tea", user_id="u", limit=4))["results"]]


async def test_engine_rehearse_threshold_counts_only_strong_results(store_url: str) -> None:
    clock = FakeClock(datetime.now(UTC) + DAY)
    async with AsyncMemory(_config(store_url, rehearse_threshold=0.5), clock=clock) as mem:
        ids = [await _add(mem, t) for t in ("green tea", "green tea with lemon", "chess", "coffee")]
        res = (await mem.search("green tea", user_id="u", limit=4))["results"]
        assert len(res) == 4  # every result is returned ...
        strong = {r["id"] for r in res if r["score"] >= 0.5}
        assert strong and strong != set(ids)
        counts = await _counts(mem.vector_store, ids)
        assert {i for i, n in counts.items() if n == 1} == strong  # ... only the strong ones count
        assert all(n == 0 for i, n in counts.items() if i not in strong)


async def test_engine_concurrent_searches_count_exactly(store_url: str) -> None:
    clock = FakeClock(datetime.now(UTC) + DAY)
    async with AsyncMemory(_config(store_url), clock=clock) as mem:
        target = await _add(mem, "green tea")
        other = await _add(mem, "chess on Sundays")
        searches = 25

        async def one() -> None:
            res = (await mem.search("green tea", user_id="u", limit=1))["results"]
            assert [r["id"] for r in res] == [target]

        async with anyio.create_task_group() as tg:
            for _ in range(searches):
                tg.start_soon(one)
        assert await _counts(mem.vector_store, [target, other]) == {target: searches, other: 0}


async def test_engine_does_not_rehearse_archived_versions(store_url: str) -> None:
    clock = FakeClock(datetime.now(UTC) + DAY)
    async with AsyncMemory(_config(store_url), clock=clock) as mem:
        mid = await _add(mem, "Alice lives in Paris")
        await mem.search("Paris", user_id="u")
        await mem.update(mid, "Alice lives in Rome")
        assert await _counts(mem.vector_store, [mid]) == {mid: 0}  # the new text starts afresh
        clock.advance(DAY)
        res = (await mem.search("Alice lives in Paris", user_id="u", include_archived=True))["results"]
        assert any(r.get("archived") for r in res) and any(not r.get("archived") for r in res)
        assert all("decay" in r["scores"] for r in res)  # archived versions decay too
        (old,) = await mem.vector_store.list(None, archived=True)
        assert old.access_count == 1  # its count from before the update, not this search's
        assert await _counts(mem.vector_store, [mid]) == {mid: 1}
