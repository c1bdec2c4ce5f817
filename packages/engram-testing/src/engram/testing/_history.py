"""The history store conformance suite: a pytest mixin every history store's tests inherit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import anyio
import pytest
from engram.core import Event, HistoryEvent

from ._data import BASE_TIME, mid
from ._requires import ProviderSuite, requires, skip_unless_capable
from ._vector import assert_same_event

__all__ = ["HistoryStoreConformance"]


def _event(label: str, memory: str, event: Event, seconds: float, **kw: Any) -> HistoryEvent:
    kw.setdefault("user_id", "u1")
    return HistoryEvent(
        id=mid(label), memory_id=mid(memory), event=event, old_memory=kw.pop("old", None),
        new_memory=kw.pop("new", None), created_at=BASE_TIME + timedelta(seconds=seconds), **kw,
    )


def _lifecycle() -> list[HistoryEvent]:
    """Two memories' changes, interleaved: m1 ADD, m2 ADD, m1 UPDATE, m2 DELETE, m1 UPDATE, m1 DELETE."""
    return [
        _event("e1", "m1", Event.ADD, 0, new="Likes tea", actor_id="Caroline", role="user",
               metadata={"source": "chat", "turn": 3, "score": 0.5, "flags": [True, None]}),
        _event("e2", "m2", Event.ADD, 1, new="Lives in Oslo", agent_id="a1", run_id="r1", role="assistant"),
        _event("e3", "m1", Event.UPDATE, 2, old="Likes tea", new="Likes green tea", actor_id="Caroline",
               metadata={"reason": "more specific"}),
        _event("e4", "m2", Event.DELETE, 3, old="Lives in Oslo", agent_id="a1", run_id="r1"),
        _event("e5", "m1", Event.UPDATE, 4.5, old="Likes green tea", new="Likes matcha 🍵 ünïcode 'quotes' \"dq\""),
        _event("e6", "m1", Event.DELETE, 5.25, old="Likes matcha 🍵 ünïcode 'quotes' \"dq\"", actor_id="api"),
    ]


class HistoryStoreConformance(ProviderSuite):
    """Checks every :class:`~engram.core.HistoryStore` must pass. Inherit it in a pytest class::

        class TestMyHistory(HistoryStoreConformance):
            @pytest.fixture
            async def history_store(self, tmp_path):
                h = MyHistory(MyHistory.Config(path=str(tmp_path / "db")))
                yield h
                await h.aclose()

            async def reopen(self, provider):     # only for stores with "persistent"
                await provider.aclose()
                return MyHistory(MyHistory.Config(path=provider.config.path))

    The ``history_store`` fixture yields a new, empty store per check. A vector store that also keeps
    history inherits both mixins and defines ``history_store`` as its ``store``. Checks needing
    ``"persistent"`` are skipped, naming it, when the store's ``capabilities`` (or the class's
    ``capabilities`` override) lack it.
    """

    @pytest.fixture(autouse=True)
    def _engram_history_store_requirements(self, request: pytest.FixtureRequest, history_store: Any) -> None:
        skip_unless_capable(request, history_store)

    async def test_history_oldest_first_per_memory(self, history_store: Any) -> None:
        events = _lifecycle()
        await history_store.add_events(events[:3])
        await history_store.add_events(events[3:])
        m1 = await history_store.history(mid("m1"))
        assert [e.id for e in m1] == [mid("e1"), mid("e3"), mid("e5"), mid("e6")]
        assert [e.event for e in m1] == [Event.ADD, Event.UPDATE, Event.UPDATE, Event.DELETE]
        m2 = await history_store.history(mid("m2"))
        assert [e.id for e in m2] == [mid("e2"), mid("e4")]

    async def test_history_fields_roundtrip(self, history_store: Any) -> None:
        events = _lifecycle()
        await history_store.add_events(events)
        got = await history_store.history(mid("m1")) + await history_store.history(mid("m2"))
        want = [e for e in events if e.memory_id == mid("m1")] + [e for e in events if e.memory_id == mid("m2")]
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert_same_event(g, w)
            assert type(g.event) is Event

    async def test_history_times_are_aware_utc(self, history_store: Any) -> None:
        plus2 = timezone(timedelta(hours=2))
        when = datetime(2024, 6, 1, 14, 30, 15, 250_000, tzinfo=plus2)
        ev = HistoryEvent(id=mid("tz"), memory_id=mid("m"), event=Event.ADD, old_memory=None, new_memory="x",
                          user_id="u1", created_at=when)
        await history_store.add_events([ev])
        (got,) = await history_store.history(mid("m"))
        assert got.created_at.utcoffset() == timedelta(0)
        assert abs(got.created_at - when.astimezone(UTC)) <= timedelta(milliseconds=1)

    async def test_history_unknown_memory_is_empty(self, history_store: Any) -> None:
        assert await history_store.history(mid("nobody")) == []
        await history_store.add_events(_lifecycle())
        assert await history_store.history(mid("nobody")) == []

    async def test_history_empty_add_is_fine(self, history_store: Any) -> None:
        await history_store.add_events([])
        assert await history_store.history(mid("m1")) == []

    async def test_history_optional_fields_may_be_none(self, history_store: Any) -> None:
        ev = HistoryEvent(id=mid("bare"), memory_id=mid("m"), event=Event.DELETE, old_memory=None, new_memory=None)
        await history_store.add_events([ev])
        (got,) = await history_store.history(mid("m"))
        assert_same_event(got, ev)

    async def test_history_reset_clears(self, history_store: Any) -> None:
        await history_store.add_events(_lifecycle())
        await history_store.reset()
        assert await history_store.history(mid("m1")) == []
        assert await history_store.history(mid("m2")) == []
        await history_store.add_events(_lifecycle()[:1])
        assert len(await history_store.history(mid("m1"))) == 1

    async def test_history_concurrent_writers(self, history_store: Any) -> None:
        """8 tasks x 25 events on their own memories at once: every event lands, each memory's in order."""

        async def writer(w: int) -> None:
            for j in range(25):
                await history_store.add_events(
                    [_event(f"c{w}-{j}", f"cm{w}", Event.UPDATE, j, old=str(j - 1), new=str(j))]
                )

        async with anyio.create_task_group() as tg:
            for w in range(8):
                tg.start_soon(writer, w)
        for w in range(8):
            got = await history_store.history(mid(f"cm{w}"))
            assert [e.new_memory for e in got] == [str(j) for j in range(25)]

    @requires("persistent")
    async def test_history_persists_across_reopen(self, history_store: Any) -> None:
        events = _lifecycle()
        await history_store.add_events(events)
        store2 = await self.reopened(history_store)
        try:
            got = await store2.history(mid("m1"))
            want = [e for e in events if e.memory_id == mid("m1")]
            assert len(got) == len(want)
            for g, w in zip(got, want, strict=True):
                assert_same_event(g, w)
            more = _event("e7", "m1", Event.ADD, 9, new="back again")
            await store2.add_events([more])
            assert [e.id for e in await store2.history(mid("m1"))][-1] == more.id
        finally:
            await store2.aclose()
