"""The vector store conformance suite: a pytest mixin every vector store's tests inherit."""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar

import anyio
import numpy as np
import pytest
from engram.core import (
    Event,
    HistoryEvent,
    MemoryItem,
    Scope,
    ScoredMemory,
    VectorQuery,
    WriteBatch,
    matches,
    parse_filters,
)
from engram.core._filters import OPERATORS
from engram.core.errors import InvalidFilterError, InvalidInputError

from ._data import (
    BASE_TIME,
    COMBINATIONS,
    NASTY_QUERIES,
    filter_dataset,
    filter_probes,
    make_item,
    mid,
    query_scopes,
    random_unit,
    scope_dataset,
)
from ._requires import ProviderSuite, filter_requirements, requires, skip_unless_capable

__all__ = ["VectorStoreConformance", "assert_same_item", "newest_first"]

TIME_TOLERANCE = timedelta(milliseconds=1)


def newest_first(items: Iterable[MemoryItem]) -> list[MemoryItem]:
    """The order ``VectorStore.list`` promises: ``created_at`` descending, then ``id`` descending."""
    return sorted(items, key=lambda i: (i.created_at, i.id), reverse=True)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _assert_time(got: datetime | None, want: datetime | None, what: str) -> None:
    if want is None:
        assert got is None, f"{what}: expected None, got {got!r}"
        return
    assert isinstance(got, datetime), f"{what}: expected a datetime, got {got!r}"
    assert got.tzinfo is not None and got.utcoffset() == timedelta(0), f"{what}: {got!r} is not aware UTC"
    assert abs(got - want) <= TIME_TOLERANCE, f"{what}: {got.isoformat()} != {want.isoformat()}"


def assert_same_item(got: MemoryItem, want: MemoryItem) -> None:
    """Every field round-trips: ids, text, hash, scope, metadata (JSON types kept: ``True`` is not
    ``1``, ``1.0`` stays a float), aware-UTC times (to the millisecond)."""
    assert isinstance(got, MemoryItem), f"expected a MemoryItem, got {type(got).__name__}"
    for name in ("id", "memory", "hash", "user_id", "agent_id", "run_id"):
        assert getattr(got, name) == getattr(want, name), (
            f"{want.id} {name}: {getattr(got, name)!r} != {getattr(want, name)!r}"
        )
    assert _json(got.metadata) == _json(want.metadata), f"{want.id} metadata: {got.metadata!r} != {want.metadata!r}"
    _assert_time(got.created_at, want.created_at, f"{want.id} created_at")
    _assert_time(got.updated_at, want.updated_at, f"{want.id} updated_at")


def _label(item: MemoryItem) -> str:
    text = item.memory
    return text[text.rfind("[") + 1 : -1] if text.endswith("]") and "[" in text else item.id[:8]


class ArchiveChecks:
    """Archive checks, mixed into :class:`VectorStoreConformance` (capability ``"archive"``)."""

    dims: ClassVar[int]

    @requires("archive")
    async def test_archive_keeps_the_old_version(self, store: Any) -> None:
        old = self.item("a", "Alice lives in Paris")  # type: ignore[attr-defined]
        other = self.item("b", "Bob likes tea")  # type: ignore[attr-defined]
        await store.write(WriteBatch(upserts=[old, other]))
        new = self.item("a", "Alice lives in Rome", seed=7)  # type: ignore[attr-defined]
        await store.write(WriteBatch(archive=[(old.id, "superseded")], upserts=[new]))
        (active,) = await store.get([old.id])
        assert active.memory == "Alice lives in Rome" and active.archived_at is None
        assert await store.count(Scope(user_id="u1")) == 2
        assert sorted(i.id for i in await store.list(Scope(user_id="u1"), limit=None)) == sorted([old.id, other.id])
        (kept,) = await store.list(Scope(user_id="u1"), archived=True, limit=None)
        assert kept.id == old.id and kept.memory == "Alice lives in Paris"
        assert kept.archive_reason == "superseded" and kept.archived_at is not None
        assert kept.archived_at.tzinfo is not None
        assert kept.to_dict()["archived"] is True

    @requires("archive")
    async def test_archived_versions_are_searched_apart(self, store: Any) -> None:
        old = self.item("a", "Alice lives in Paris")  # type: ignore[attr-defined]
        await store.write(WriteBatch(upserts=[old]))
        await store.write(WriteBatch(archive=[(old.id, "deleted")]))
        assert await store.get([old.id]) == []
        assert await store.count() == 0
        q = old.embedding
        active = await store.search(VectorQuery(Scope(user_id="u1"), q, "Paris", None, 10, "dense"))
        assert active == []
        hits = await store.search(VectorQuery(Scope(user_id="u1"), q, "Paris", None, 10, "dense", archived=True))
        assert [h.item.id for h in hits] == [old.id]
        assert hits[0].score == pytest.approx(1.0, abs=1e-5)  # the embedding was kept
        assert hits[0].item.archive_reason == "deleted"
        other_scope = await store.search(VectorQuery(Scope(user_id="u2"), q, None, None, 10, "dense", archived=True))
        assert other_scope == []
        if "lexical" in getattr(store, "capabilities", ()):
            lex = await store.search(VectorQuery(Scope(user_id="u1"), None, "Paris", None, 10, "lexical"))
            assert lex == []
            lex = await store.search(VectorQuery(Scope(user_id="u1"), None, "Paris", None, 10, "lexical", archived=True))
            assert [h.item.id for h in lex] == [old.id]

    @requires("archive")
    async def test_versions_accumulate_and_purge_removes_all(self, store: Any) -> None:
        first = self.item("a", "version one")  # type: ignore[attr-defined]
        await store.write(WriteBatch(upserts=[first]))
        for k in (2, 3):
            await store.write(
                WriteBatch(archive=[(first.id, "superseded")], upserts=[self.item("a", f"version {k}", seed=k)])  # type: ignore[attr-defined]
            )
        archived = await store.list(None, archived=True, limit=None)
        assert sorted(i.memory for i in archived) == sorted(["version one", "version 2"])
        assert [i.memory for i in await store.get([first.id])] == ["version 3"]
        await store.write(WriteBatch(archive=[("no-such-id", "deleted")]))  # unknown ids are ignored
        await store.write(WriteBatch(deletes=[first.id]))
        assert await store.get([first.id]) == []
        assert await store.list(None, archived=True, limit=None) == []


class RehearsalChecks:
    """Rehearsal checks, mixed into :class:`VectorStoreConformance` (capability ``"rehearsal"``:
    :meth:`~engram.core.RehearsalStore.record_access`)."""

    dims: ClassVar[int]

    def _accessed(self, label: str, count: int, at: datetime | None, **kw: Any) -> MemoryItem:
        it = self.item(label, **kw)  # type: ignore[attr-defined]
        it.access_count, it.last_accessed_at = count, at
        return it

    @staticmethod
    def _assert_access(got: MemoryItem, count: int, at: datetime | None, what: str) -> None:
        assert got.access_count == count, f"{what}: access_count {got.access_count} != {count}"
        _assert_time(got.last_accessed_at, at, f"{what} last_accessed_at")

    @requires("rehearsal")
    async def test_access_fields_roundtrip(self, store: Any) -> None:
        t = BASE_TIME + timedelta(days=3, microseconds=250_000)
        a, b = self._accessed("a", 3, t), self._accessed("b", 0, None)
        await store.write(WriteBatch(upserts=[a, b]))
        got = {i.id: i for i in await store.get([a.id, b.id])}
        self._assert_access(got[a.id], 3, t, "get a")
        self._assert_access(got[b.id], 0, None, "get b")
        listed = {i.id: i for i in await store.list(None, limit=None)}
        self._assert_access(listed[a.id], 3, t, "list a")
        (hit,) = await store.search(VectorQuery(Scope(user_id="u1"), a.embedding, None, None, 1, "dense"))
        assert hit.item.id == a.id
        self._assert_access(hit.item, 3, t, "search a")
        await store.write(WriteBatch(upserts=[self._accessed("a", 0, None)]))  # an upsert replaces them
        (again,) = await store.get([a.id])
        self._assert_access(again, 0, None, "replaced a")

    @requires("rehearsal")
    async def test_record_access_counts_and_keeps_the_latest_time(self, store: Any) -> None:
        a, b, c = self.item("a"), self.item("b"), self.item("c")  # type: ignore[attr-defined]
        await store.write(WriteBatch(upserts=[a, b, c]))
        t1 = BASE_TIME + timedelta(days=1)
        assert await store.record_access([a.id, a.id, b.id, mid("nobody")], t1) == 2  # distinct, known ids
        got = {i.id: i for i in await store.get([a.id, b.id, c.id])}
        self._assert_access(got[a.id], 1, t1, "a")
        self._assert_access(got[b.id], 1, t1, "b")
        self._assert_access(got[c.id], 0, None, "c (not accessed)")
        assert await store.record_access([a.id], t1 - timedelta(hours=5)) == 1  # late, older report
        assert await store.record_access([a.id], t1 + timedelta(hours=2)) == 1
        (got_a,) = await store.get([a.id])
        self._assert_access(got_a, 3, t1 + timedelta(hours=2), "a after three")
        assert got_a.memory == a.memory and got_a.updated_at is None  # nothing else changes
        _assert_time(got_a.created_at, a.created_at, "a created_at")
        assert await store.record_access([], t1) == 0
        for bad in (datetime(2024, 5, 2, 12, 0), "2024-05-02T12:00:00+00:00"):  # naive, not a datetime
            with pytest.raises(InvalidInputError):
                await store.record_access([b.id], bad)
        (got_b,) = await store.get([b.id])
        self._assert_access(got_b, 1, t1, "b after refused calls")
        hits = await store.search(VectorQuery(Scope(user_id="u1"), c.embedding, None, None, 3, "dense"))
        assert hits[0].item.id == c.id and len(hits) == 3  # search is unaffected

    @requires("rehearsal")
    async def test_record_access_is_atomic_under_concurrency(self, store: Any) -> None:
        """40 tasks record at once, each a (hot, own) pair: no increment is lost."""
        tasks = 40
        hot = self.item("hot")  # type: ignore[attr-defined]
        own = [self.item(f"own{k}") for k in range(tasks)]  # type: ignore[attr-defined]
        await store.write(WriteBatch(upserts=[hot, *own]))
        times = [BASE_TIME + timedelta(minutes=k) for k in range(tasks)]

        async def one(k: int) -> None:
            assert await store.record_access([hot.id, own[k].id], times[k]) == 2

        async with anyio.create_task_group() as tg:
            for k in range(tasks):
                tg.start_soon(one, k)
        (got,) = await store.get([hot.id])
        self._assert_access(got, tasks, max(times), "hot")
        for k, it in enumerate(await store.get([i.id for i in own])):
            self._assert_access(it, 1, times[k], f"own{k}")

    @requires("rehearsal", "archive")
    async def test_record_access_ignores_archived_versions(self, store: Any) -> None:
        old = self._accessed("a", 2, BASE_TIME)
        await store.write(WriteBatch(upserts=[old]))
        await store.write(WriteBatch(archive=[(old.id, "deleted")]))
        assert await store.record_access([old.id], BASE_TIME + timedelta(days=1)) == 0
        (kept,) = await store.list(None, archived=True, limit=None)
        self._assert_access(kept, 2, BASE_TIME, "archived version")
        new = self.item("a", "a new text", seed=3)  # type: ignore[attr-defined]
        await store.write(WriteBatch(upserts=[new]))
        assert await store.record_access([old.id], BASE_TIME + timedelta(days=2)) == 1
        (active,) = await store.get([old.id])
        self._assert_access(active, 1, BASE_TIME + timedelta(days=2), "new active version")
        (kept,) = await store.list(None, archived=True, limit=None)
        self._assert_access(kept, 2, BASE_TIME, "archived version after")

    @requires("rehearsal", "persistent")
    async def test_access_counts_persist(self, store: Any) -> None:
        a = self.item("a")  # type: ignore[attr-defined]
        await store.write(WriteBatch(upserts=[a]))
        t = BASE_TIME + timedelta(days=4)
        await store.record_access([a.id], t)
        store2 = await self.reopened(store)  # type: ignore[attr-defined]
        try:
            (got,) = await store2.get([a.id])
            self._assert_access(got, 1, t, "after reopen")
            assert await store2.record_access([a.id], t) == 1
            (got,) = await store2.get([a.id])
            assert got.access_count == 2
        finally:
            await store2.aclose()


class NeighborChecks:
    """Neighbour checks, mixed into :class:`VectorStoreConformance` (capability ``"neighbors"``:
    :meth:`~engram.core.NeighborStore.neighbors`)."""

    @requires("neighbors")
    async def test_neighbors_in_order_of_writing(self, store: Any) -> None:
        t0 = BASE_TIME
        mine = [self.item(f"n{i}", created_at=t0 + timedelta(seconds=i), metadata={"k": i % 2})  # type: ignore[attr-defined]
                for i in range(5)]
        theirs = [self.item(f"o{i}", user_id="u2", created_at=t0 + timedelta(seconds=i, milliseconds=500))  # type: ignore[attr-defined]
                  for i in range(5)]
        await store.write(WriteBatch(upserts=[x for pair in zip(mine, theirs, strict=True) for x in pair]))
        ids = [m.id for m in mine]
        got = await store.neighbors(Scope(user_id="u1"), [ids[0], ids[2], ids[4], theirs[1].id, mid("nobody")])
        assert {k: [m.id for m in v] for k, v in got.items()} == {
            ids[0]: [ids[1]], ids[2]: [ids[1], ids[3]], ids[4]: [ids[3]],
        }, "neighbours: the scope's memories just before and after, other scopes and unknown ids left out"
        got = await store.neighbors(Scope(user_id="u1"), [ids[2]], filters=parse_filters({"k": 0}))
        assert [m.id for m in got[ids[2]]] == [ids[0], ids[4]], "neighbours: only those matching the filters"
        assert await store.neighbors(Scope(user_id="u1"), []) == {}

    @requires("neighbors")
    async def test_neighbors_in_an_agent_and_run_scope(self, store: Any) -> None:
        items = [
            self.item(f"r{i}", user_id=None, agent_id="ag", run_id=f"run{i % 2}",  # type: ignore[attr-defined]
                      created_at=BASE_TIME + timedelta(seconds=i))
            for i in range(6)
        ]
        await store.write(WriteBatch(upserts=items))
        got = await store.neighbors(Scope(agent_id="ag", run_id="run0"), [items[2].id, items[1].id])
        assert {k: [m.id for m in v] for k, v in got.items()} == {items[2].id: [items[0].id, items[4].id]}
        got = await store.neighbors(Scope(agent_id="ag"), [items[2].id])
        assert [m.id for m in got[items[2].id]] == [items[1].id, items[3].id]

    @requires("neighbors")
    async def test_neighbors_same_time_follow_the_order_of_writing(self, store: Any) -> None:
        same = [self.item(f"s{i}", created_at=BASE_TIME) for i in range(4)]  # type: ignore[attr-defined]
        await store.write(WriteBatch(upserts=same))
        got = await store.neighbors(Scope(user_id="u1"), [same[1].id])
        assert [m.id for m in got[same[1].id]] == [same[0].id, same[2].id]


class VectorStoreConformance(NeighborChecks, ArchiveChecks, RehearsalChecks, ProviderSuite):
    """Checks every :class:`~engram.core.VectorStore` must pass. Inherit it in a pytest class::

        class TestMyStore(VectorStoreConformance):
            @pytest.fixture
            async def store(self, tmp_path):
                s = MyStore(MyStore.Config(path=str(tmp_path / "db")))
                yield s
                await s.aclose()

            async def reopen(self, store):           # only for stores with "persistent"
                await store.aclose()
                return MyStore(MyStore.Config(path=store.config.path))

    The ``store`` fixture yields a new, empty store for each check. Checks that exercise an optional
    feature are marked with :func:`~engram.testing.requires` and skipped, naming the capability, when
    the store's ``capabilities`` lack it: ``"lexical"`` (BM25 search), ``"history"`` (the store is
    also a HistoryStore fed by ``WriteBatch.events``), ``"persistent"`` (data survives a reopen),
    ``"archive"`` (``WriteBatch.archive`` keeps old versions, listed and searched with ``archived``),
    ``"rehearsal"`` (``record_access`` counts accesses atomically; the items carry the counts),
    ``"neighbors"`` (``neighbors`` returns the memories written just before and after given ones).

    Class attributes a test class may set:
        capabilities: a frozenset that replaces the store's own ``capabilities`` for these checks
            (``None``, the default, reads the store's).
        dims: the embedding length the checks write (default 16).

    To opt out of one check, set its name to ``None`` in the class with a comment saying why.
    """

    dims: ClassVar[int] = 16

    @pytest.fixture(autouse=True)
    def _engram_vector_store_requirements(self, request: pytest.FixtureRequest, store: Any) -> None:
        skip_unless_capable(request, store)

    # -- helpers ---------------------------------------------------------------------------------

    def rng(self, seed: int = 0) -> np.random.Generator:
        return np.random.default_rng(seed)

    @staticmethod
    async def write(store: Any, upserts: Sequence[MemoryItem] = (), deletes: Sequence[str] = (),
                    events: Sequence[HistoryEvent] = ()) -> None:
        await store.write(WriteBatch(upserts=list(upserts), deletes=list(deletes), events=list(events)))

    @staticmethod
    async def ids(store: Any, scope: Scope | None = None, **kwargs: Any) -> list[str]:
        return [i.id for i in await store.list(scope, limit=None, **kwargs)]

    async def search(self, store: Any, scope: Scope, *, embedding: np.ndarray | None = None, text: str | None = None,
                     filters: Any = None, limit: int = 100, mode: str = "dense") -> list[ScoredMemory]:
        if embedding is None and mode != "lexical":
            embedding = random_unit(self.rng(99), self.dims)
        hits = await store.search(VectorQuery(scope, embedding, text, filters, limit, mode))  # type: ignore[arg-type]
        assert isinstance(hits, list), f"search returned {type(hits).__name__}, expected a list"
        for h in hits:
            assert isinstance(h, ScoredMemory), f"search returned a {type(h).__name__}, expected ScoredMemory"
        return hits

    def item(self, label: str, text: str | None = None, *, seed: int | None = None, **kwargs: Any) -> MemoryItem:
        rng = self.rng(seed if seed is not None else zlib.crc32(label.encode()))
        return make_item(label, text if text is not None else f"memory {label}", random_unit(rng, self.dims), **kwargs)

    # -- CRUD ------------------------------------------------------------------------------------

    async def test_write_get_roundtrip(self, store: Any) -> None:
        items = filter_dataset(self.dims)
        await self.write(store, items)
        got = await store.get([i.id for i in items])
        assert len(got) == len(items)
        for g, w in zip(got, items, strict=True):
            assert_same_item(g, w)

    async def test_get_in_order_asked(self, store: Any) -> None:
        items = filter_dataset(self.dims)
        await self.write(store, items)
        asked = [items[5].id, mid("nobody"), items[0].id, items[13].id, items[2].id]
        got = await store.get(asked)
        assert [g.id for g in got] == [items[5].id, items[0].id, items[13].id, items[2].id]

    async def test_get_unknown_and_empty(self, store: Any) -> None:
        assert await store.get([]) == []
        assert await store.get([mid("nobody")]) == []
        await self.write(store, [self.item("one")])
        assert await store.get([mid("nobody"), "not-a-uuid", ""]) == []

    async def test_write_empty_batch(self, store: Any) -> None:
        await store.write(WriteBatch())
        assert await store.count() == 0

    async def test_upsert_replaces(self, store: Any) -> None:
        first = self.item("x", "first text", metadata={"a": 1, "keep": "no"}, user_id="u1")
        await self.write(store, [first, self.item("y")])
        second = self.item("x", "second text", seed=5, metadata={"b": [True]}, user_id="u2", agent_id="a9",
                           updated_at=BASE_TIME + timedelta(hours=1))
        await self.write(store, [second])
        assert await store.count() == 2
        (got,) = await store.get([first.id])
        assert_same_item(got, second)
        assert await self.ids(store, Scope(user_id="u1")) == [mid("y")]
        assert await self.ids(store, Scope(user_id="u2")) == [first.id]

    async def test_delete(self, store: Any) -> None:
        a, b, c = self.item("a"), self.item("b"), self.item("c")
        await self.write(store, [a, b, c])
        await self.write(store, deletes=[b.id])
        assert await store.get([b.id]) == []
        assert {i.id for i in await store.get([a.id, b.id, c.id])} == {a.id, c.id}
        assert await store.count() == 2
        assert b.id not in {h.item.id for h in await self.search(store, Scope(user_id="u1"), embedding=b.embedding)}

    async def test_delete_unknown_id_is_fine(self, store: Any) -> None:
        await self.write(store, deletes=[mid("nobody")])
        await self.write(store, [self.item("a")])
        await self.write(store, deletes=[mid("nobody"), "not-a-uuid"])
        assert await store.count() == 1

    async def test_returned_items_are_copies(self, store: Any) -> None:
        await self.write(store, [self.item("a", metadata={"tags": ["x"]})])
        (got,) = await store.get([mid("a")])
        got.metadata["tags"].append("y")
        got.metadata["new"] = 1
        got.memory = "changed"
        (again,) = await store.get([mid("a")])
        assert again.metadata == {"tags": ["x"]} and again.memory == "memory a"

    # -- list and count --------------------------------------------------------------------------

    async def test_list_newest_first(self, store: Any) -> None:
        items = filter_dataset(self.dims)
        await self.write(store, list(reversed(items)))
        assert await self.ids(store) == [i.id for i in newest_first(items)], "created_at desc, then id desc"
        u1 = Scope(user_id="u1")
        want = [i.id for i in newest_first(i for i in items if u1.matches(i.user_id, i.agent_id, i.run_id))]
        assert await self.ids(store, u1) == want

    async def test_list_limit_offset(self, store: Any) -> None:
        items = filter_dataset(self.dims)
        await self.write(store, items)
        order = [i.id for i in newest_first(items)]
        assert [i.id for i in await store.list(None)] == order  # default limit 100
        assert [i.id for i in await store.list(None, limit=3)] == order[:3]
        assert [i.id for i in await store.list(None, limit=3, offset=2)] == order[2:5]
        assert [i.id for i in await store.list(None, limit=None, offset=10)] == order[10:]
        assert [i.id for i in await store.list(None, limit=5, offset=len(order))] == []
        assert [i.id for i in await store.list(None, limit=1000)] == order

    async def test_list_items_roundtrip(self, store: Any) -> None:
        items = filter_dataset(self.dims)
        await self.write(store, items)
        by_id = {i.id: i for i in items}
        for got in await store.list(None, limit=None):
            assert_same_item(got, by_id[got.id])

    async def test_count(self, store: Any) -> None:
        assert await store.count() == 0
        assert await store.count(Scope(user_id="u1")) == 0
        items = filter_dataset(self.dims)
        await self.write(store, items)
        assert await store.count() == len(items)
        assert await store.count(None) == len(items)
        for scope in (Scope(user_id="u1"), Scope(user_id="u2", agent_id="a2"), Scope(run_id="r1"), Scope(user_id="zz")):
            want = sum(scope.matches(i.user_id, i.agent_id, i.run_id) for i in items)
            assert await store.count(scope) == want, scope
        f = parse_filters({"priority": {"gte": 2}})
        assert await store.count(None, filters=f) == sum(matches(f, i) for i in items)
        assert await store.count(Scope(user_id="u1"), filters=f) == sum(
            matches(f, i) and i.user_id == "u1" for i in items
        )

    # -- filters ---------------------------------------------------------------------------------

    async def check_filters(self, store: Any, items: Sequence[MemoryItem], mappings: Iterable[Any], *,
                            search_every: int = 4) -> int:
        """Compare the store with :func:`engram.core.matches` for each filter: ``list`` (ids and
        order), ``count``, and every ``search_every``-th filter a dense search in two scopes.
        Mappings that do not parse are skipped. Returns how many filters were checked."""
        failures: list[str] = []
        checked = 0
        query = random_unit(self.rng(3), self.dims)
        for n, mapping in enumerate(mappings):
            try:
                f = parse_filters(mapping)
            except InvalidFilterError:
                continue
            checked += 1
            lacking = filter_requirements(f) - self.caps(store)
            if lacking:
                failures.extend(await self.refuses_filter(store, f, f"{mapping!r} (lacks {sorted(lacking)})"))
                continue
            want = [i for i in newest_first(items) if matches(f, i)]
            try:
                got = await store.list(None, filters=f, limit=None)
                if [g.id for g in got] != [w.id for w in want]:
                    failures.append(
                        f"list {mapping!r}: got {[_label(g) for g in got]}, want {[_label(w) for w in want]}"
                    )
                count = await store.count(None, filters=f)
                if count != len(want):
                    failures.append(f"count {mapping!r}: got {count}, want {len(want)}")
                if n % search_every == 0:
                    for scope in (Scope(user_id="u1"), Scope(agent_id="a1")):
                        hits = await self.search(store, scope, embedding=query, filters=f)
                        want_s = {_label(i) for i in want if scope.matches(i.user_id, i.agent_id, i.run_id)}
                        got_s = {_label(h.item) for h in hits}
                        if got_s != want_s:
                            failures.append(f"search {scope} {mapping!r}: got {sorted(got_s)}, want {sorted(want_s)}")
            except Exception as exc:
                failures.append(f"{mapping!r} raised {type(exc).__name__}: {exc}")
        assert not failures, f"{len(failures)} mismatches over {checked} filters:\n" + "\n".join(failures[:40])
        return checked

    async def refuses_filter(self, store: Any, f: Any, what: str) -> list[str]:
        """A filter needing a capability the store lacks must raise InvalidFilterError from list,
        count and search (a clear error, never a wrong answer). Returns the failures."""
        failures = []
        calls = {
            "list": lambda: store.list(None, filters=f, limit=None),
            "count": lambda: store.count(None, filters=f),
            "search": lambda: self.search(store, Scope(user_id="u1"), filters=f),
        }
        for name, call in calls.items():
            try:
                got = await call()
            except InvalidFilterError:
                continue
            except Exception as exc:
                failures.append(f"{name} {what}: raised {type(exc).__name__} instead of InvalidFilterError: {exc}")
                continue
            failures.append(f"{name} {what}: answered {got!r:.80} instead of raising InvalidFilterError")
        return failures

    async def filtered_labels(self, store: Any, mapping: Any, scope: Scope | None = None) -> set[str] | None:
        """Labels ``list`` returns for a filter, or ``None`` after checking the store refuses a filter
        that needs a capability it lacks."""
        f = parse_filters(mapping)
        lacking = filter_requirements(f) - self.caps(store)
        if lacking:
            failures = await self.refuses_filter(store, f, f"{mapping!r} (lacks {sorted(lacking)})")
            assert not failures, "\n".join(failures)
            return None
        return {_label(i) for i in await store.list(scope, filters=f, limit=None)}

    @pytest.mark.parametrize("op", sorted(OPERATORS))
    async def test_filter_operator(self, store: Any, op: str) -> None:
        items = filter_dataset(self.dims)
        await self.write(store, items)
        assert await self.check_filters(store, items, filter_probes(op)) > 20

    async def test_filter_type_strict(self, store: Any) -> None:
        """``True`` is not ``1``, ``"1"`` is not ``1``, ``1`` equals ``1.0``; null matches missing."""
        items = filter_dataset(self.dims)
        await self.write(store, items)
        cases = {
            "mixed=1": ({"mixed": 1}, {"m00", "m01"}),
            "mixed=1.0": ({"mixed": 1.0}, {"m00", "m01"}),
            "mixed=True": ({"mixed": True}, {"m03"}),
            "mixed=False": ({"mixed": False}, {"m04"}),
            "mixed=0": ({"mixed": 0}, {"m05"}),
            "mixed='1'": ({"mixed": "1"}, {"m02"}),
            "priority=4": ({"priority": 4}, {"m09"}),
            "note=None": ({"note": None}, {f"m{k:02d}" for k in range(14)} - {"m02", "m13"}),
            "done in [True]": ({"done": {"in": [True]}}, {"m01", "m03", "m07"}),
            "tags contains True": ({"tags": {"contains": True}}, {"m04"}),
            "tags contains 1": ({"tags": {"contains": 1}}, {"m03", "m04"}),
            "score gt 2": ({"score": {"gt": 2}}, {"m01", "m06"}),
            "priority lt 0": ({"priority": {"lt": 0}}, {"m04"}),
            "category gt 'w'": ({"category": {"gt": "w"}}, {"m02", "m05", "m08", "m11", "m12"}),  # "Ü" > "w"
        }
        for name, (mapping, want) in cases.items():
            f = parse_filters(mapping)
            assert {_label(i) for i in items if matches(f, i)} == want, f"the test's own truth for {name}"
            got = await self.filtered_labels(store, mapping)
            assert got is None or got == want, f"{name}: got {sorted(got)}, want {sorted(want)}"

    @requires("substring_filters")
    async def test_filter_icontains_unicode_casefold(self, store: Any) -> None:
        """``icontains`` folds case the Unicode way: ``"STRASSE"`` finds ``"straße"``, ``"ünï"`` finds ``"Ünï"``."""
        items = filter_dataset(self.dims)
        await self.write(store, items)
        for needle, want in (("strasse", {"m05", "m10"}), ("ünï", {"m05"}), ("STRASSE", {"m05", "m10"})):
            f = parse_filters({"category": {"icontains": needle}})
            assert {_label(i) for i in items if matches(f, i)} == want
            got = {_label(i) for i in await store.list(None, filters=f, limit=None)}
            assert got == want, f"icontains {needle!r}: got {sorted(got)}, want {sorted(want)}"

    async def test_filter_odd_key_names(self, store: Any) -> None:
        """Keys with dots, spaces and non-ASCII letters name one metadata field each (not a path)."""
        items = filter_dataset(self.dims)
        await self.write(store, items)
        mappings = [
            {"dotted.key": "yes"}, {"dotted.key": {"ne": "yes"}}, {"with space": 1}, {"with space": {"gte": 1}},
            {"ключ": "значение"}, {"ключ": {"ne": None}}, {"ключ": {"icontains": "ЗНАЧ"}}, {"dotted": "yes"},
        ]
        assert await self.check_filters(store, items, mappings, search_every=1) == len(mappings)

    async def test_filter_numbers_at_the_int64_edges(self, store: Any) -> None:
        """The 64-bit integer edges and huge floats compare like any number, never overflow.
        (Integers beyond 64 bits are refused by ``parse_filters`` before any store sees them.)"""
        items = filter_dataset(self.dims)
        await self.write(store, items)
        mappings = [
            {"priority": 2**63 - 1}, {"priority": {"ne": -(2**63)}}, {"priority": {"lt": 1e30}},
            {"priority": {"gt": -(2**63)}}, {"priority": {"in": [2**63 - 1, 1]}}, {"priority": {"nin": [1e30]}},
            {"score": {"lte": 1e300}}, {"tags": {"contains": 2**62}}, {"mixed": {"gte": 2**63 - 1}},
        ]
        assert await self.check_filters(store, items, mappings, search_every=1) == len(mappings)

    async def test_filter_builtin_and_time_fields(self, store: Any) -> None:
        items = filter_dataset(self.dims)
        await self.write(store, items)
        mappings: list[Any] = [
            {"id": items[3].id}, {"id": {"in": [items[0].id, items[9].id]}}, {"hash": items[2].hash},
            {"memory": {"contains": "Paris"}}, {"memory": {"icontains": "paris"}}, {"user_id": "u1"},
            {"user_id": None}, {"agent_id": {"ne": None}}, {"run_id": {"in": ["r1", "r2"]}},
            {"created_at": {"gte": BASE_TIME + timedelta(minutes=5)}}, {"created_at": BASE_TIME},
            {"created_at": {"lt": "2024-05-01T12:02:00Z"}}, {"updated_at": None}, {"updated_at": {"gt": BASE_TIME}},
            {"updated_at": {"lte": (BASE_TIME + timedelta(minutes=70)).timestamp()}},
            {"created_at": {"in": [BASE_TIME, "2024-05-01T12:02:00+00:00"]}},
        ]
        assert await self.check_filters(store, items, mappings, search_every=1) == len(mappings)

    async def test_filter_combinations(self, store: Any) -> None:
        items = filter_dataset(self.dims)
        await self.write(store, items)
        assert await self.check_filters(store, items, COMBINATIONS, search_every=1) == len(COMBINATIONS)

    async def test_filter_with_scope(self, store: Any) -> None:
        items = filter_dataset(self.dims)
        await self.write(store, items)
        for mapping in COMBINATIONS[:8]:
            f = parse_filters(mapping)
            if filter_requirements(f) - self.caps(store):
                continue  # test_filter_combinations checks that the store refuses it
            for scope in (Scope(user_id="u1"), Scope(user_id="u2", run_id="r1"), Scope(agent_id="a1")):
                want = [i.id for i in newest_first(items)
                        if matches(f, i) and scope.matches(i.user_id, i.agent_id, i.run_id)]
                assert await self.ids(store, scope, filters=f) == want, (scope, mapping)
                assert await store.count(scope, filters=f) == len(want), (scope, mapping)

    # -- scope isolation -------------------------------------------------------------------------

    async def test_scope_isolation(self, store: Any) -> None:
        """A scope sees exactly the memories it matches, in list, count and every search mode."""
        items = scope_dataset(self.dims)
        await self.write(store, items)
        lexical = "lexical" in self.caps(store)
        failures = []
        for scope in query_scopes():
            want = {i.id for i in items if scope.matches(i.user_id, i.agent_id, i.run_id)}
            got_list = set(await self.ids(store, scope))
            if got_list != want:
                failures.append(f"list {scope}: {len(got_list ^ want)} wrong")
            if (n := await store.count(scope)) != len(want):
                failures.append(f"count {scope}: {n} != {len(want)}")
            modes = ("dense", "lexical", "hybrid") if lexical else ("dense",)
            for mode in modes:
                got = {h.item.id for h in await self.search(store, scope, text="shared memory", mode=mode)}
                if got != want:
                    failures.append(f"search {mode} {scope}: extra {len(got - want)}, missing {len(want - got)}")
        assert not failures, "\n".join(failures)

    async def test_scope_ids_are_literal(self, store: Any) -> None:
        """Ids holding SQL wildcards or quotes match only themselves."""
        items = filter_dataset(self.dims)
        await self.write(store, items)
        lexical = "lexical" in self.caps(store)
        cases = [
            (Scope(user_id="u%"), {"m11"}), (Scope(user_id="u_1"), {"m12"}), (Scope(agent_id="a%"), {"m12"}),
            (Scope(run_id="r_"), {"m12"}), (Scope(user_id="o'brien"), {"m13"}), (Scope(agent_id='a"1'), {"m13"}),
            (Scope(user_id="u"), set()), (Scope(user_id="%"), set()), (Scope(user_id="U1"), set()),
            (Scope(user_id="u1 "), set()),
        ]
        for scope, want in cases:
            assert {_label(i) for i in await store.list(scope, limit=None)} == want, scope
            assert await store.count(scope) == len(want), scope
            assert {_label(h.item) for h in await self.search(store, scope)} == want, scope
            if lexical:
                hits = await self.search(store, scope, text="Owner id", mode="lexical")
                assert {_label(h.item) for h in hits} == want, scope

    # -- dense search ----------------------------------------------------------------------------

    async def test_dense_search_matches_bruteforce(self, store: Any) -> None:
        rng = self.rng(1)
        n = 150
        vecs = random_unit(rng, self.dims, n)
        items = [
            make_item(f"d{k}", f"dense {k}", vecs[k], user_id="u1" if k % 3 else "u2",
                      created_at=BASE_TIME + timedelta(seconds=k))
            for k in range(n)
        ]
        await self.write(store, items)
        mine = np.array([k for k in range(n) if k % 3])
        for q in random_unit(rng, self.dims, 5):
            sims = vecs[mine] @ q
            order = mine[np.argsort(-sims, kind="stable")][:10]
            hits = await self.search(store, Scope(user_id="u1"), embedding=q, limit=10)
            assert [h.item.id for h in hits] == [items[k].id for k in order]
            want_scores = vecs[order] @ q
            np.testing.assert_allclose([h.score for h in hits], want_scores, atol=1e-4)
        few = await self.search(store, Scope(user_id="u2"), limit=1000)
        assert len(few) == n - len(mine)

    async def test_dense_search_limit_and_order(self, store: Any) -> None:
        items = filter_dataset(self.dims)
        await self.write(store, items)
        q = random_unit(self.rng(4), self.dims)
        in_scope = sum(i.user_id == "u1" for i in items)
        for limit in (1, 3, in_scope + 1, 50):
            hits = await self.search(store, Scope(user_id="u1"), embedding=q, limit=limit)
            assert len(hits) == min(limit, in_scope)
            scores = [h.score for h in hits]
            assert scores == sorted(scores, reverse=True)
            assert len({h.item.id for h in hits}) == len(hits)

    async def test_search_empty_store(self, store: Any) -> None:
        assert await self.search(store, Scope(user_id="u1")) == []
        if "lexical" in self.caps(store):
            assert await self.search(store, Scope(user_id="u1"), text="anything", mode="lexical") == []
            assert await self.search(store, Scope(user_id="u1"), text="anything", mode="hybrid") == []

    async def test_search_hits_roundtrip(self, store: Any) -> None:
        items = filter_dataset(self.dims)
        await self.write(store, items)
        by_id = {i.id: i for i in items}
        for h in await self.search(store, Scope(user_id="u1")):
            assert_same_item(h.item, by_id[h.item.id])

    async def test_dense_search_ignores_text(self, store: Any) -> None:
        """``mode="dense"`` ranks by the vector alone; any text beside it changes nothing."""
        items = filter_dataset(self.dims)
        await self.write(store, items)
        q = random_unit(self.rng(5), self.dims)
        base = [h.item.id for h in await self.search(store, Scope(user_id="u1"), embedding=q)]
        for text in ("", "Paris", '"(*', None):
            assert [h.item.id for h in await self.search(store, Scope(user_id="u1"), embedding=q, text=text)] == base

    # -- lexical search --------------------------------------------------------------------------

    LEXICAL_DOCS: ClassVar[list[tuple[str, str, str]]] = [
        ("lx-run1", "She runs every morning in the park", "u1"),
        ("lx-run2", "Running shoes are on sale this week", "u1"),
        ("lx-cat", "The cat sat on the mat", "u1"),
        ("lx-paris", "We flew to Paris in June; Paris was lovely", "u1"),
        ("lx-paris1", "A postcard from Paris", "u1"),
        ("lx-dog", "My dog's name is Rex", "u1"),
        ("lx-other", "Nothing to see here", "u1"),
        ("lx-u2", "Bob runs marathons and has a cat", "u2"),
    ]

    async def lexical_docs(self, store: Any) -> list[MemoryItem]:
        items = [
            self.item(label, f"{text} [{label}]", user_id=user, created_at=BASE_TIME + timedelta(minutes=k))
            for k, (label, text, user) in enumerate(self.LEXICAL_DOCS)
        ]
        await self.write(store, items)
        return items

    async def lexical(self, store: Any, text: str, scope: Scope | None = None, **kw: Any) -> list[str]:
        hits = await self.search(store, scope or Scope(user_id="u1"), text=text, mode="lexical", **kw)
        return [_label(h.item) for h in hits]

    @requires("lexical")
    async def test_lexical_finds_word(self, store: Any) -> None:
        await self.lexical_docs(store)
        assert await self.lexical(store, "cat") == ["lx-cat"]
        assert await self.lexical(store, "CAT") == ["lx-cat"]
        assert await self.lexical(store, "cat", Scope(user_id="u2")) == ["lx-u2"]
        assert await self.lexical(store, "xylophone") == []

    @requires("lexical")
    async def test_lexical_stems(self, store: Any) -> None:
        """A stemming tokenizer (Porter): "running" finds "runs" and "Running"."""
        await self.lexical_docs(store)
        assert set(await self.lexical(store, "running")) == {"lx-run1", "lx-run2"}
        assert set(await self.lexical(store, "run")) == {"lx-run1", "lx-run2"}

    @requires("lexical")
    async def test_lexical_bm25_scores(self, store: Any) -> None:
        """Scores are BM25, > 0, best first: two mentions of Paris in a doc beat one."""
        await self.lexical_docs(store)
        hits = await self.search(store, Scope(user_id="u1"), text="paris", mode="lexical")
        assert [_label(h.item) for h in hits] == ["lx-paris", "lx-paris1"]
        assert all(h.score > 0 for h in hits)
        assert hits[0].score > hits[1].score
        assert await self.lexical(store, "paris", limit=1) == ["lx-paris"]

    @requires("lexical")
    async def test_lexical_question_finds_partial_match(self, store: Any) -> None:
        """A natural question matches the memories sharing some of its words (OR semantics, as BM25)."""
        await self.lexical_docs(store)
        assert "lx-dog" in await self.lexical(store, "What is my dog's name?")
        assert (await self.lexical(store, "Where did we fly in June?"))[:1] == ["lx-paris"]

    @requires("lexical")
    async def test_lexical_with_filters(self, store: Any) -> None:
        items = await self.lexical_docs(store)
        await self.write(store, [self.item("lx-tagged", "Another cat story [lx-tagged]", metadata={"k": 1})])
        f = parse_filters({"k": 1})
        assert await self.lexical(store, "cat", filters=f) == ["lx-tagged"]
        f = parse_filters({"NOT": {"k": 1}})
        assert await self.lexical(store, "cat", filters=f) == ["lx-cat"]
        assert items

    @requires("lexical")
    async def test_any_query_string_is_valid(self, store: Any) -> None:
        """Any user string is a query: FTS syntax, quotes, operators, emoji, empty and huge strings."""
        await self.lexical_docs(store)
        q = random_unit(self.rng(6), self.dims)
        failures = []
        for text in NASTY_QUERIES:
            for mode in ("lexical", "hybrid"):
                try:
                    hits = await self.search(store, Scope(user_id="u1"), embedding=q, text=text, mode=mode, limit=5)
                except Exception as exc:
                    failures.append(f"{mode} {text[:40]!r}: {type(exc).__name__}: {exc}"[:300])
                    continue
                if any(h.item.user_id != "u1" for h in hits):
                    failures.append(f"{mode} {text[:40]!r}: returned another scope's memory")
        assert not failures, "\n".join(failures)

    @requires("lexical")
    async def test_query_words_still_match_beside_syntax(self, store: Any) -> None:
        """Words inside FTS syntax are searched as words: ``"paris"``, ``paris*``, ``(cat)``, ``cat?``."""
        await self.lexical_docs(store)
        for text in ('"paris"', "paris*", "^paris", "-paris", "paris:", "paris AND", "NOT paris", "(paris"):
            assert "lx-paris" in await self.lexical(store, text), text
        assert await self.lexical(store, "cat?") == ["lx-cat"]

    async def test_lexical_without_capability_returns_nothing(self, store: Any) -> None:
        if "lexical" in self.caps(store):
            pytest.skip("the store has 'lexical': covered by the lexical checks")
        await self.write(store, [self.item("a", "the cat sat")])
        assert await self.search(store, Scope(user_id="u1"), text="cat", mode="lexical") == []

    @requires("lexical")
    async def test_hybrid_is_union_fused(self, store: Any) -> None:
        """Hybrid returns the union of the dense and lexical hits, fused and best first; the best
        lexical match wins a place even when its vector is the worst."""
        q = random_unit(self.rng(7), self.dims)
        rng = self.rng(8)
        fillers = [make_item(f"hy{k}", f"filler text number {k} [hy{k}]", random_unit(rng, self.dims))
                   for k in range(8)]
        dense_best = make_item("hy-dense", "unrelated words entirely [hy-dense]", q)
        lexical_best = make_item("hy-lex", "zebra zebra zebra crossing [hy-lex]", -q)
        await self.write(store, [*fillers, dense_best, lexical_best])
        scope = Scope(user_id="u1")
        hits = await self.search(store, scope, embedding=q, text="zebra", mode="hybrid", limit=3)
        got = [_label(h.item) for h in hits]
        assert "hy-dense" in got and "hy-lex" in got, got
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
        by = {_label(h.item): h for h in hits}
        assert by["hy-lex"].scores.get("lexical", 0) > 0, by["hy-lex"].scores
        assert "dense" in by["hy-dense"].scores, by["hy-dense"].scores
        dense = {h.item.id for h in await self.search(store, scope, embedding=q, mode="dense", limit=100)}
        lex = {h.item.id for h in await self.search(store, scope, text="zebra", mode="lexical", limit=100)}
        hybrid = await self.search(store, scope, embedding=q, text="zebra", mode="hybrid", limit=100)
        assert {h.item.id for h in hybrid} == dense | lex
        assert len(hybrid) == len({h.item.id for h in hybrid}), "duplicate ids in hybrid results"

    @requires("lexical")
    async def test_hybrid_with_empty_text_is_dense(self, store: Any) -> None:
        items = filter_dataset(self.dims)
        await self.write(store, items)
        q = random_unit(self.rng(9), self.dims)
        dense = {h.item.id for h in await self.search(store, Scope(user_id="u1"), embedding=q)}
        for text in ("", "   ", "?"):
            hybrid = await self.search(store, Scope(user_id="u1"), embedding=q, text=text, mode="hybrid")
            assert {h.item.id for h in hybrid} == dense, repr(text)

    # -- keeping the lexical index in step ------------------------------------------------------

    @requires("lexical")
    async def test_update_keeps_lexical_in_step(self, store: Any) -> None:
        x = self.item("x", "alpha bravo [x]")
        await self.write(store, [x, self.item("y", "unrelated [y]")])
        assert await self.lexical(store, "alpha") == ["x"]
        await self.write(store, [self.item("x", "charlie delta [x]")])
        assert await self.lexical(store, "alpha") == []
        assert await self.lexical(store, "bravo") == []
        assert await self.lexical(store, "charlie") == ["x"]
        # a move to another scope moves its lexical entry too
        await self.write(store, [self.item("x", "charlie delta [x]", user_id="u2")])
        assert await self.lexical(store, "charlie") == []
        assert await self.lexical(store, "charlie", Scope(user_id="u2")) == ["x"]
        # metadata changes are seen by lexical search with filters
        await self.write(store, [self.item("x", "charlie delta [x]", user_id="u2", metadata={"k": "v"})])
        assert await self.lexical(store, "charlie", Scope(user_id="u2"), filters=parse_filters({"k": "v"})) == ["x"]

    @requires("lexical")
    async def test_delete_keeps_lexical_in_step(self, store: Any) -> None:
        await self.write(store, [self.item("x", "echo foxtrot [x]"), self.item("y", "echo golf [y]")])
        await self.write(store, deletes=[mid("x")])
        assert await self.lexical(store, "foxtrot") == []
        assert await self.lexical(store, "echo") == ["y"]
        hybrid = await self.search(store, Scope(user_id="u1"), text="foxtrot", mode="hybrid")
        assert mid("x") not in {h.item.id for h in hybrid}
        await self.write(store, [self.item("x", "echo foxtrot [x]")])
        assert await self.lexical(store, "foxtrot") == ["x"]
        await self.write(store, deletes=[mid("x"), mid("y")])
        assert await self.lexical(store, "echo") == []

    @requires("lexical")
    async def test_delete_and_upsert_in_one_batch(self, store: Any) -> None:
        await self.write(store, [self.item("x", "hotel india [x]")])
        await self.write(store, [self.item("z", "juliet kilo [z]")], deletes=[mid("x")])
        assert await self.lexical(store, "hotel") == []
        assert await self.lexical(store, "juliet") == ["z"]
        assert await store.count() == 1

    async def test_reset_clears_everything(self, store: Any) -> None:
        items = filter_dataset(self.dims)
        await self.write(store, items)
        await store.reset()
        assert await store.count() == 0
        assert await store.list(None) == []
        assert await store.get([i.id for i in items]) == []
        assert await self.search(store, Scope(user_id="u1")) == []
        if "lexical" in self.caps(store):
            assert await self.search(store, Scope(user_id="u1"), text="Paris", mode="lexical") == []
        await self.write(store, items[:2])
        assert await store.count() == 2

    # -- invalid input ---------------------------------------------------------------------------

    async def test_dimension_mismatch_raises_and_changes_nothing(self, store: Any) -> None:
        a = self.item("a", "first [a]")
        await self.write(store, [a])
        bad = make_item("bad", "bad", random_unit(self.rng(1), self.dims // 2))
        good = self.item("good")
        with pytest.raises(InvalidInputError):
            await self.write(store, [good, bad])
        assert await store.count() == 1
        assert await store.get([good.id, bad.id]) == []
        with pytest.raises(InvalidInputError):
            await self.write(store, [make_item("a", "changed", random_unit(self.rng(2), self.dims + 3))])
        (got,) = await store.get([a.id])
        assert got.memory == "first [a]"
        with pytest.raises(InvalidInputError):  # a delete in a failed batch is not applied either
            await self.write(store, [bad], deletes=[a.id])
        assert await store.count() == 1
        assert [h.item.id for h in await self.search(store, Scope(user_id="u1"), embedding=a.embedding)] == [a.id]

    async def test_mixed_dimensions_in_first_batch(self, store: Any) -> None:
        one = make_item("one", "one", random_unit(self.rng(1), self.dims))
        two = make_item("two", "two", random_unit(self.rng(2), self.dims + 1))
        with pytest.raises(InvalidInputError):
            await self.write(store, [one, two])
        assert await store.count() == 0

    async def test_upsert_without_embedding_raises(self, store: Any) -> None:
        item = self.item("a")
        item.embedding = None
        with pytest.raises(InvalidInputError):
            await self.write(store, [item, self.item("b")])
        assert await store.count() == 0
        flat = self.item("c")
        flat.embedding = np.zeros((1, self.dims), dtype=np.float32)
        with pytest.raises(InvalidInputError):
            await self.write(store, [flat])
        assert await store.count() == 0

    async def test_search_with_wrong_dimension_raises(self, store: Any) -> None:
        await self.write(store, [self.item("a")])
        with pytest.raises(InvalidInputError):
            await self.search(store, Scope(user_id="u1"), embedding=random_unit(self.rng(1), self.dims + 2))

    # -- concurrency -----------------------------------------------------------------------------

    async def test_concurrent_writers(self, store: Any) -> None:
        """8 tasks x 50 single-memory writes at once (with readers alongside): all land, counts exact."""
        tasks, per_task = 8, 50
        history = "history" in self.caps(store)
        rng = self.rng(10)
        vecs = random_unit(rng, self.dims, tasks * per_task)
        seen: list[int] = []
        done = anyio.Event()

        async def writer(w: int) -> None:
            for j in range(per_task):
                it = make_item(f"c{w}-{j}", f"concurrent {w} {j}", vecs[w * per_task + j], user_id=f"w{w}",
                               created_at=BASE_TIME + timedelta(seconds=j))
                events = [_add_event(it)] if history else []
                await self.write(store, [it], events=events)

        async def reader() -> None:
            while not done.is_set():
                seen.append(await store.count())
                await store.list(None, limit=5)
                # a pause between reads: a store that reads on the event loop must not starve the
                # writers (a spinning reader once held a store's worker-thread saves off for minutes)
                await anyio.sleep(0.002)

        async with anyio.create_task_group() as outer:
            outer.start_soon(reader)
            async with anyio.create_task_group() as tg:
                for w in range(tasks):
                    tg.start_soon(writer, w)
            done.set()
        assert await store.count() == tasks * per_task
        for w in range(tasks):
            assert await store.count(Scope(user_id=f"w{w}")) == per_task
        ids = [mid(f"c{w}-{j}") for w in range(tasks) for j in range(per_task)]
        assert len(await store.get(ids)) == tasks * per_task
        assert seen == sorted(seen), "a reader saw the count go down"
        if history:
            for w in range(tasks):
                assert len(await store.history(mid(f"c{w}-7"))) == 1

    # -- scale -----------------------------------------------------------------------------------

    #: How many memories :meth:`test_batch_upsert_10k` writes in one batch.
    batch_size: ClassVar[int] = 10_000

    async def test_batch_upsert_10k(self, store: Any) -> None:
        """One batch of 10K memories lands whole: counted per scope, each one readable, listed
        newest first, found by its own vector; a second 10K batch replacing them all keeps the count."""
        n = self.batch_size
        vecs = random_unit(self.rng(21), self.dims, n)
        items = [make_item(f"b{k}", f"batch memory {k} [b{k}]", vecs[k], user_id=f"u{k % 4}",
                           created_at=BASE_TIME + timedelta(seconds=k), metadata={"k": k, "even": k % 2 == 0})
                 for k in range(n)]
        await self.write(store, items)
        assert await store.count() == n
        assert await store.count(Scope(user_id="u1")) == n // 4
        assert await store.count(None, filters=parse_filters({"even": True})) == (n + 1) // 2
        sample = [items[k] for k in (0, 1, n // 2, n - 1)]
        for g, w in zip(await store.get([i.id for i in sample]), sample, strict=True):
            assert_same_item(g, w)
        assert [i.id for i in await store.list(None, limit=3)] == [items[n - 1].id, items[n - 2].id, items[n - 3].id]
        for k in (7, n - 5):
            hits = await self.search(store, Scope(user_id=f"u{k % 4}"), embedding=vecs[k], limit=1)
            assert [h.item.id for h in hits] == [items[k].id]
        moved = [make_item(f"b{k}", f"batch memory {k} moved [b{k}]", vecs[k], user_id="u9",
                           created_at=BASE_TIME + timedelta(seconds=k)) for k in range(n)]
        await self.write(store, moved)
        assert await store.count() == n
        assert await store.count(Scope(user_id="u9")) == n
        (got,) = await store.get([items[3].id])
        assert got.memory == "batch memory 3 moved [b3]"

    # -- history written with the batch ---------------------------------------------------------

    @requires("history")
    async def test_batch_events_go_to_history(self, store: Any) -> None:
        item = self.item("h", "original [h]", agent_id="a1")
        add = _add_event(item, actor_id="Caroline", role="user", metadata={"source": "test"})
        await self.write(store, [item], events=[add])
        t1 = add.created_at + timedelta(seconds=1)
        upd_item = self.item("h", "changed [h]", agent_id="a1", updated_at=t1)
        upd = HistoryEvent(id=mid("ev-upd"), memory_id=item.id, event=Event.UPDATE, old_memory="original [h]",
                           new_memory="changed [h]", user_id="u1", agent_id="a1", created_at=t1)
        await self.write(store, [upd_item], events=[upd])
        dele = HistoryEvent(id=mid("ev-del"), memory_id=item.id, event=Event.DELETE, old_memory="changed [h]",
                            new_memory=None, user_id="u1", agent_id="a1", created_at=t1 + timedelta(seconds=1))
        await self.write(store, deletes=[item.id], events=[dele])
        got = await store.history(item.id)
        assert [e.event for e in got] == [Event.ADD, Event.UPDATE, Event.DELETE]
        for g, w in zip(got, [add, upd, dele], strict=True):
            assert_same_event(g, w)
        assert await store.get([item.id]) == []

    @requires("history")
    async def test_failed_batch_writes_no_history(self, store: Any) -> None:
        good = self.item("g")
        bad = make_item("bad", "bad", random_unit(self.rng(1), self.dims + 1))
        await self.write(store, [self.item("first")])
        with pytest.raises(InvalidInputError):
            await self.write(store, [good, bad], events=[_add_event(good), _add_event(bad)])
        assert await store.history(good.id) == []
        assert await store.history(bad.id) == []

    @requires("history")
    async def test_reset_clears_history(self, store: Any) -> None:
        item = self.item("h")
        await self.write(store, [item], events=[_add_event(item)])
        await store.reset()
        assert await store.history(item.id) == []

    # -- persistence -----------------------------------------------------------------------------

    @requires("persistent")
    async def test_persists_across_reopen(self, store: Any) -> None:
        items = filter_dataset(self.dims)
        history = "history" in self.caps(store)
        await self.write(store, items, events=[_add_event(i) for i in items] if history else [])
        await self.write(store, deletes=[items[1].id])
        lexical = "lexical" in self.caps(store)
        q = random_unit(self.rng(12), self.dims)
        before_dense = [h.item.id for h in await self.search(store, Scope(user_id="u1"), embedding=q)]
        before_lex = await self.lexical(store, "Paris") if lexical else []
        store2 = await self.reopened(store)
        try:
            assert await store2.count() == len(items) - 1
            assert await self.ids(store2) == [i.id for i in newest_first(items) if i.id != items[1].id]
            kept = [i for i in items if i.id != items[1].id]
            for g, w in zip(await store2.get([i.id for i in kept]), kept, strict=True):
                assert_same_item(g, w)
            assert [h.item.id for h in await self.search(store2, Scope(user_id="u1"), embedding=q)] == before_dense
            if lexical:
                assert await self.lexical(store2, "Paris") == before_lex != []
            if history:
                (ev,) = await store2.history(items[0].id)
                assert ev.event == Event.ADD
            with pytest.raises(InvalidInputError):  # the dimension is remembered
                await self.write(store2, [make_item("bad", "bad", random_unit(self.rng(1), self.dims + 1))])
            await self.write(store2, [self.item("after")])
            assert await store2.count() == len(items)
        finally:
            await store2.aclose()


def _add_event(item: MemoryItem, **kw: Any) -> HistoryEvent:
    return HistoryEvent(
        id=mid(f"ev-add-{item.id}"), memory_id=item.id, event=Event.ADD, old_memory=None, new_memory=item.memory,
        user_id=item.user_id, agent_id=item.agent_id, run_id=item.run_id, created_at=item.created_at, **kw,
    )


def assert_same_event(got: HistoryEvent, want: HistoryEvent) -> None:
    """Every field of a history event round-trips (times aware UTC, to the millisecond)."""
    assert isinstance(got, HistoryEvent), f"expected a HistoryEvent, got {type(got).__name__}"
    assert isinstance(got.event, Event), f"event must be an Event, got {got.event!r}"
    for name in ("id", "memory_id", "event", "old_memory", "new_memory", "user_id", "agent_id", "run_id",
                 "actor_id", "role"):
        assert getattr(got, name) == getattr(want, name), f"{name}: {getattr(got, name)!r} != {getattr(want, name)!r}"
    assert _json(got.metadata) == _json(want.metadata), f"metadata: {got.metadata!r} != {want.metadata!r}"
    _assert_time(got.created_at, want.created_at, "created_at")
