"""The graph store conformance suite: a pytest mixin every graph store's tests inherit."""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, ClassVar

import anyio
import numpy as np
import pytest
from engram.core import Entity, GraphBatch, Relation, Scope, relation_key
from engram.core.errors import InvalidInputError

from ._data import BASE_TIME, mid, random_unit
from ._requires import ProviderSuite, requires, skip_unless_capable
from ._vector import _assert_time

__all__ = ["GraphStoreConformance", "assert_same_entity", "assert_same_relation"]

_MINUTE = timedelta(minutes=1)


def assert_same_entity(got: Entity, want: Entity) -> None:
    """Every field of an entity round-trips: ids, name, key, type, scope, mentions, aware-UTC times
    (to the millisecond) and the embedding (float32-close, as a ``list``)."""
    assert isinstance(got, Entity), f"expected an Entity, got {type(got).__name__}"
    for name in ("id", "name", "key", "type", "user_id", "agent_id", "run_id", "mentions"):
        assert getattr(got, name) == getattr(want, name), (
            f"entity {want.name!r} {name}: {getattr(got, name)!r} != {getattr(want, name)!r}"
        )
    _assert_time(got.created_at, want.created_at, f"entity {want.name!r} created_at")
    _assert_time(got.updated_at, want.updated_at, f"entity {want.name!r} updated_at")
    if want.embedding is None:
        assert got.embedding is None, (
            f"entity {want.name!r}: expected no embedding, got {got.embedding!r:.60}"
        )
        return
    assert isinstance(got.embedding, list), (
        f"entity {want.name!r}: embedding should be a list of floats, got {type(got.embedding).__name__}"
    )
    assert len(got.embedding) == len(want.embedding), (
        f"entity {want.name!r}: embedding has {len(got.embedding)} values, expected {len(want.embedding)}"
    )
    np.testing.assert_allclose(
        np.asarray(got.embedding, dtype=np.float32),
        np.asarray(want.embedding, dtype=np.float32),
        rtol=1e-6,
        atol=1e-7,
        err_msg=f"entity {want.name!r}: embedding differs",
    )


def assert_same_relation(got: Relation, want: Relation) -> None:
    """Every field of a relation round-trips: ids, names, scope, mentions, provenance (in order)
    and the four aware-UTC times (to the millisecond)."""
    assert isinstance(got, Relation), f"expected a Relation, got {type(got).__name__}"
    for name in (
        "id",
        "source",
        "relation",
        "destination",
        "source_id",
        "destination_id",
        "user_id",
        "agent_id",
        "run_id",
        "mentions",
    ):
        assert getattr(got, name) == getattr(want, name), (
            f"relation {want.triple()} {name}: {getattr(got, name)!r} != {getattr(want, name)!r}"
        )
    assert list(got.memory_ids) == list(want.memory_ids), (
        f"relation {want.triple()} memory_ids: {got.memory_ids!r} != {want.memory_ids!r}"
    )
    for name in ("valid_at", "invalid_at", "created_at", "expired_at"):
        _assert_time(getattr(got, name), getattr(want, name), f"relation {want.triple()} {name}")


def _ids(rows: Sequence[Any]) -> list[str]:
    return [r.id for r in rows]


def _cosine_truth(matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    m = matrix.astype(np.float64)
    q = query.astype(np.float64)
    return (m @ q) / (np.linalg.norm(m, axis=1) * np.linalg.norm(q))


class GraphStoreConformance(ProviderSuite):
    """Checks every :class:`~engram.core.GraphStore` must pass. Inherit it in a pytest class::

        class TestMyGraph(GraphStoreConformance):
            @pytest.fixture
            async def graph_store(self, tmp_path):
                g = MyGraph(MyGraph.Config(path=str(tmp_path / "db")))
                yield g
                await g.aclose()

            async def reopen(self, provider):     # only for stores with "persistent"
                await provider.aclose()
                return MyGraph(MyGraph.Config(path=provider.config.path))

    The ``graph_store`` fixture yields a new, empty store per check. Checks needing ``"persistent"``
    are skipped, naming it, when the store's ``capabilities`` (or the class's ``capabilities``
    override) lack it.

    What the checks pin down beyond the protocol's docstrings: entities and relations come back as
    new objects with every field intact (times aware UTC to the millisecond, embeddings as float32
    ``list``s, ``memory_ids`` in the order written); ``apply`` validates the whole batch before it
    writes anything; a batch's deletes are applied before its upserts.

    Class attributes a test class may set:
        capabilities: a frozenset that replaces the store's own ``capabilities`` for these checks.
        dims: the embedding length the checks write (default 16).
        big: how many relations the large-batch check writes in one ``apply`` (default 10,000).
    """

    dims: ClassVar[int] = 16
    big: ClassVar[int] = 10_000

    @pytest.fixture(autouse=True)
    def _engram_graph_store_requirements(self, request: pytest.FixtureRequest, graph_store: Any) -> None:
        skip_unless_capable(request, graph_store)

    # -- helpers ---------------------------------------------------------------------------------

    def vec(self, label: str) -> list[float]:
        """A deterministic unit vector for a label, as the ``list[float]`` an Entity holds."""
        rng = np.random.default_rng(zlib.crc32(label.encode()))
        return random_unit(rng, self.dims).tolist()

    def entity(
        self,
        label: str,
        name: str | None = None,
        *,
        user: str | None = "u1",
        agent: str | None = None,
        run: str | None = None,
        minutes: float = 0,
        embed: bool = True,
        **kw: Any,
    ) -> Entity:
        """An entity whose id is derived from ``label`` (created ``minutes`` after BASE_TIME)."""
        return Entity(
            name=name or label,
            user_id=user,
            agent_id=agent,
            run_id=run,
            id=mid(f"entity:{user}:{label}"),
            embedding=self.vec(label) if embed else None,
            created_at=BASE_TIME + minutes * _MINUTE,
            **kw,
        )

    @staticmethod
    def relation(
        source: Entity,
        predicate: str,
        destination: Entity,
        *,
        label: str | None = None,
        minutes: float = 0,
        **kw: Any,
    ) -> Relation:
        """A relation between two entities, in the source's scope (id derived from the triple)."""
        label = label or f"{source.id}-{predicate}-{destination.id}"
        return Relation(
            source=source.name,
            relation=relation_key(predicate),
            destination=destination.name,
            user_id=source.user_id,
            agent_id=source.agent_id,
            run_id=source.run_id,
            id=mid(f"relation:{label}"),
            source_id=source.id,
            destination_id=destination.id,
            created_at=BASE_TIME + minutes * _MINUTE,
            **kw,
        )

    @staticmethod
    async def apply(
        store: Any,
        entities: Sequence[Entity] = (),
        relations: Sequence[Relation] = (),
        *,
        delete_relations: Sequence[str] = (),
        delete_entities: Sequence[str] = (),
    ) -> None:
        await store.apply(
            GraphBatch(list(entities), list(relations), list(delete_relations), list(delete_entities))
        )

    @staticmethod
    async def all_relations(store: Any, scope: Scope, **kw: Any) -> list[Relation]:
        got = await store.relations(scope, **kw)
        assert isinstance(got, list), f"relations() returned {type(got).__name__}, expected a list"
        return got

    def chain(
        self, labels: Sequence[str], *, user: str = "u1", agent: str | None = None
    ) -> tuple[list[Entity], list[Relation]]:
        """Entities ``labels`` linked ``l0 -next-> l1 -next-> l2 ...``."""
        ents = [self.entity(lb, user=user, agent=agent, minutes=i) for i, lb in enumerate(labels)]
        rels = [self.relation(a, "next", b, minutes=i) for i, (a, b) in enumerate(itertools.pairwise(ents))]
        return ents, rels

    def scoped_graph(self) -> tuple[list[Entity], list[Relation]]:
        """u1 in agents a1 (run r1) and a2, u2 in a1: two entities and one relation each."""
        ents: list[Entity] = []
        rels: list[Relation] = []
        for i, (user, agent, run) in enumerate([("u1", "a1", "r1"), ("u1", "a2", None), ("u2", "a1", None)]):
            a = self.entity(f"alice-{agent}-{run}", "Alice", user=user, agent=agent, run=run, minutes=i)
            b = self.entity(
                f"paris-{agent}-{run}", "Paris", user=user, agent=agent, run=run, minutes=i, type="place"
            )
            ents += [a, b]
            rels.append(self.relation(a, "lives in", b, minutes=i))
        return ents, rels

    # -- round trips -----------------------------------------------------------------------------

    async def test_apply_entities_roundtrip(self, graph_store: Any) -> None:
        plus2 = timezone(timedelta(hours=2))
        full = Entity(
            name="Alice Smith",
            type="person",
            user_id="u1",
            agent_id="a1",
            run_id="r1",
            embedding=self.vec("alice"),
            id=mid("alice"),
            mentions=3,
            created_at=datetime(2024, 6, 1, 14, 30, 15, 250_000, tzinfo=plus2),
            updated_at=datetime(2024, 6, 2, 9, 0, 0, 999_000, tzinfo=UTC),
        )
        bare = Entity(name="Paris", user_id="u1", id=mid("paris"), created_at=BASE_TIME + timedelta(days=60))
        await self.apply(graph_store, [full, bare])
        got = await graph_store.entities(Scope(user_id="u1"))
        assert isinstance(got, list), f"entities() returned {type(got).__name__}, expected a list"
        assert _ids(got) == [full.id, bare.id], f"expected Alice then Paris (created_at order), got {got!r}"
        assert_same_entity(got[0], full)
        assert_same_entity(got[1], bare)
        assert got[0].key == "alice smith" and got[1].type == "entity"

    async def test_apply_relations_roundtrip(self, graph_store: Any) -> None:
        a, b = self.entity("alice", "Alice"), self.entity("paris", "Paris", type="place")
        plus5 = timezone(timedelta(hours=-5))
        r = self.relation(
            a,
            "lives in",
            b,
            mentions=4,
            memory_ids=[mid("m2"), mid("m1")],
            valid_at=datetime(2020, 1, 1, 8, 0, 0, 123_000, tzinfo=plus5),
            invalid_at=datetime(2023, 3, 4, 5, 6, 7, tzinfo=UTC),
            expired_at=BASE_TIME + timedelta(days=1, milliseconds=500),
        )
        plain = self.relation(b, "home of", a, minutes=1)
        await self.apply(graph_store, [a, b], [r, plain])
        got = await self.all_relations(graph_store, Scope(user_id="u1"), include_expired=True)
        assert _ids(got) == [plain.id, r.id], f"expected newest first, got {[g.triple() for g in got]}"
        assert_same_relation(got[1], r)
        assert_same_relation(got[0], plain)
        assert got[0].memory_ids == [] and got[0].valid_at is None and got[0].current

    async def test_returned_objects_are_copies(self, graph_store: Any) -> None:
        a, b = self.entity("alice"), self.entity("bob", minutes=1)
        r = self.relation(a, "knows", b, memory_ids=[mid("m1")])
        await self.apply(graph_store, [a, b], [r])
        (ga, _) = await graph_store.entities(Scope(user_id="u1"))
        ga.name, ga.mentions = "changed", 99
        assert ga.embedding is not None
        ga.embedding[0] = 42.0
        (gr,) = await self.all_relations(graph_store, Scope(user_id="u1"))
        gr.memory_ids.append("x")
        gr.mentions = 99
        a.mentions = 50  # the caller's objects are not the store's either
        r.memory_ids.append("y")
        assert_same_entity((await graph_store.entities(Scope(user_id="u1")))[0], self.entity("alice"))
        (again,) = await self.all_relations(graph_store, Scope(user_id="u1"))
        assert again.memory_ids == [mid("m1")] and again.mentions == 1, "mutating a result changed the store"

    async def test_empty_batch_and_empty_store(self, graph_store: Any) -> None:
        await graph_store.apply(GraphBatch())
        scope = Scope(user_id="u1")
        assert await graph_store.entities(scope) == []
        assert await graph_store.relations(scope, include_expired=True) == []
        assert await graph_store.similar_entities(scope, self.vec("q")) == []
        assert await graph_store.neighbors(scope, [mid("nobody")]) == []
        assert await graph_store.delete_memories([mid("m1")]) == 0

    # -- entities --------------------------------------------------------------------------------

    async def test_entities_by_keys_ids_and_empty(self, graph_store: Any) -> None:
        ents = [self.entity(n, n, minutes=i) for i, n in enumerate(["Alice", "Bob", "New York", "Zoë"])]
        await self.apply(graph_store, ents)
        u1 = Scope(user_id="u1")
        assert _ids(await graph_store.entities(u1, keys=["bob", "new york", "nobody"])) == [
            ents[1].id,
            ents[2].id,
        ]
        assert _ids(await graph_store.entities(u1, ids=[ents[3].id, mid("nobody"), ents[0].id])) == [
            ents[0].id,
            ents[3].id,
        ], "ids come back in created_at order, not the order asked"
        assert _ids(await graph_store.entities(u1, keys=["alice", "bob"], ids=[ents[1].id])) == [
            ents[1].id
        ], "keys and ids together narrow to entities matching both"
        assert await graph_store.entities(u1, keys=[]) == [], "an empty keys sequence must match nothing"
        assert await graph_store.entities(u1, ids=[]) == [], "an empty ids sequence must match nothing"
        assert await graph_store.entities(u1, keys=["zoë"]) != []

    async def test_entities_limit_and_order(self, graph_store: Any) -> None:
        # created_at out of insertion order, two sharing a time (then ordered by id)
        ents = [self.entity(f"e{i}", minutes=m) for i, m in enumerate([5, 1, 3, 3, 0, 9])]
        await self.apply(graph_store, ents[:3])
        await self.apply(graph_store, ents[3:])
        want = [e.id for e in sorted(ents, key=lambda e: (e.created_at, e.id))]
        u1 = Scope(user_id="u1")
        assert _ids(await graph_store.entities(u1)) == want, "order must be created_at, then id"
        assert _ids(await graph_store.entities(u1, limit=4)) == want[:4]
        assert _ids(await graph_store.entities(u1, limit=100)) == want

    # -- scope isolation -------------------------------------------------------------------------

    async def test_scope_isolation_entities(self, graph_store: Any) -> None:
        ents, rels = self.scoped_graph()
        await self.apply(graph_store, ents, rels)
        by = {(e.user_id, e.agent_id, e.run_id, e.name): e.id for e in ents}

        def ids_of(user: str | None = None, agent: str | None = None, run: str | None = None) -> set[str]:
            return {
                i
                for (u, a, r, _), i in by.items()
                if (user is None or u == user) and (agent is None or a == agent) and (run is None or r == run)
            }

        for scope in [
            Scope(user_id="u1"),
            Scope(user_id="u2"),
            Scope(user_id="u1", agent_id="a1"),
            Scope(agent_id="a1"),
            Scope(run_id="r1"),
            Scope(user_id="u2", agent_id="a2"),
        ]:
            got = set(_ids(await graph_store.entities(scope)))
            assert got == ids_of(scope.user_id, scope.agent_id, scope.run_id), (
                f"entities({scope}) wrong: {got}"
            )
        assert await graph_store.entities(Scope(user_id="u3")) == []
        u2_alice = by[("u2", "a1", None, "Alice")]
        assert await graph_store.entities(Scope(user_id="u1"), ids=[u2_alice]) == [], (
            "another user's id leaked"
        )
        got = _ids(await graph_store.entities(Scope(user_id="u1"), keys=["alice"]))
        assert sorted(got) == sorted([by[("u1", "a1", "r1", "Alice")], by[("u1", "a2", None, "Alice")]]), (
            "Scope(user_id='u1') sees the user's entities of every agent and run"
        )

    async def test_scope_isolation_relations(self, graph_store: Any) -> None:
        ents, rels = self.scoped_graph()
        await self.apply(graph_store, ents, rels)
        u1 = set(_ids(await self.all_relations(graph_store, Scope(user_id="u1"))))
        assert u1 == {rels[0].id, rels[1].id}, "u1 sees its relations of every agent and run"
        assert _ids(await self.all_relations(graph_store, Scope(user_id="u2"))) == [rels[2].id]
        assert _ids(await self.all_relations(graph_store, Scope(user_id="u1", agent_id="a2"))) == [rels[1].id]
        assert set(_ids(await self.all_relations(graph_store, Scope(agent_id="a1")))) == {
            rels[0].id,
            rels[2].id,
        }
        assert await self.all_relations(graph_store, Scope(user_id="u3")) == []
        leaked = await self.all_relations(
            graph_store, Scope(user_id="u1"), entity_ids=[ents[4].id, ents[5].id]
        )
        assert leaked == [], "another user's relations leaked through entity_ids"

    async def test_scope_isolation_similar_entities(self, graph_store: Any) -> None:
        ents, rels = self.scoped_graph()
        await self.apply(graph_store, ents, rels)
        q = ents[0].embedding
        assert q is not None
        u1 = {e.id for e, _ in await graph_store.similar_entities(Scope(user_id="u1"), q, limit=100)}
        assert u1 == {e.id for e in ents if e.user_id == "u1"}
        u2 = {e.id for e, _ in await graph_store.similar_entities(Scope(user_id="u2"), q, limit=100)}
        assert u2 == {e.id for e in ents if e.user_id == "u2"}, "similar_entities leaked across users"
        assert await graph_store.similar_entities(Scope(user_id="u3"), q) == []
        run = await graph_store.similar_entities(Scope(run_id="r1"), q, limit=100)
        assert {e.id for e, _ in run} == {ents[0].id, ents[1].id}

    async def test_scope_isolation_neighbors(self, graph_store: Any) -> None:
        ents, rels = self.scoped_graph()
        await self.apply(graph_store, ents, rels)
        seeds = [e.id for e in ents if e.name == "Alice"]
        got = {r.id for r, _ in await graph_store.neighbors(Scope(user_id="u1"), seeds)}
        assert got == {rels[0].id, rels[1].id}, "u1 walks its relations of every agent, never u2's"
        assert {r.id for r, _ in await graph_store.neighbors(Scope(user_id="u2"), seeds)} == {rels[2].id}
        assert await graph_store.neighbors(Scope(user_id="u3"), seeds) == []
        assert await graph_store.neighbors(Scope(user_id="u2"), seeds[:2]) == [], (
            "seeds of another user walked"
        )

    # -- relations -------------------------------------------------------------------------------

    async def test_relations_include_expired(self, graph_store: Any) -> None:
        a, b, c = self.entity("alice"), self.entity("paris"), self.entity("rome")
        old = self.relation(a, "lives in", b, expired_at=BASE_TIME + _MINUTE, invalid_at=BASE_TIME)
        new = self.relation(a, "lives in", c, minutes=1)
        await self.apply(graph_store, [a, b, c], [old, new])
        u1 = Scope(user_id="u1")
        assert _ids(await self.all_relations(graph_store, u1)) == [new.id], (
            "expired relations are hidden by default"
        )
        assert _ids(await self.all_relations(graph_store, u1, include_expired=True)) == [new.id, old.id]

    async def test_relations_entity_ids_filter(self, graph_store: Any) -> None:
        a, b, c, d = (self.entity(x) for x in "abcd")
        ab = self.relation(a, "r", b, minutes=1)
        cb = self.relation(c, "r", b, minutes=2)
        cd = self.relation(c, "r", d, minutes=3)
        await self.apply(graph_store, [a, b, c, d], [ab, cb, cd])
        u1 = Scope(user_id="u1")
        assert _ids(await self.all_relations(graph_store, u1, entity_ids=[b.id])) == [cb.id, ab.id], (
            "entity_ids matches the destination as well as the source"
        )
        assert _ids(await self.all_relations(graph_store, u1, entity_ids=[a.id, d.id])) == [cd.id, ab.id]
        assert await self.all_relations(graph_store, u1, entity_ids=[]) == [], (
            "an empty entity_ids matches nothing"
        )
        assert await self.all_relations(graph_store, u1, entity_ids=[mid("nobody")]) == []

    async def test_relations_memory_ids_filter(self, graph_store: Any) -> None:
        a, b, c = self.entity("a"), self.entity("b"), self.entity("c")
        r1 = self.relation(a, "r", b, minutes=1, memory_ids=[mid("m1"), mid("m2")])
        r2 = self.relation(b, "r", c, minutes=2, memory_ids=[mid("m2")])
        r3 = self.relation(a, "r", c, minutes=3)
        r4 = self.relation(c, "r", a, minutes=4, memory_ids=[mid("m3")], expired_at=BASE_TIME)
        await self.apply(graph_store, [a, b, c], [r1, r2, r3, r4])
        u1 = Scope(user_id="u1")
        assert _ids(await self.all_relations(graph_store, u1, memory_ids=[mid("m1")])) == [r1.id]
        assert _ids(await self.all_relations(graph_store, u1, memory_ids=[mid("m2")])) == [r2.id, r1.id]
        assert _ids(await self.all_relations(graph_store, u1, memory_ids=[mid("m1"), mid("m3")])) == [r1.id]
        assert _ids(
            await self.all_relations(graph_store, u1, memory_ids=[mid("m3")], include_expired=True)
        ) == [r4.id]
        assert await self.all_relations(graph_store, u1, memory_ids=[]) == [], (
            "an empty memory_ids matches nothing"
        )
        both = await self.all_relations(graph_store, u1, memory_ids=[mid("m2")], entity_ids=[c.id])
        assert _ids(both) == [r2.id], "entity_ids and memory_ids together narrow to relations matching both"

    async def test_relations_newest_first_and_limit(self, graph_store: Any) -> None:
        ents = [self.entity(f"e{i}") for i in range(6)]
        rels = [self.relation(ents[i], "r", ents[i + 1], minutes=m) for i, m in enumerate([3, 0, 4, 1, 2])]
        await self.apply(graph_store, ents, rels[:2])
        await self.apply(graph_store, [], rels[2:])
        want = [r.id for r in sorted(rels, key=lambda r: r.created_at, reverse=True)]
        u1 = Scope(user_id="u1")
        assert _ids(await self.all_relations(graph_store, u1)) == want, "relations come newest first"
        assert _ids(await self.all_relations(graph_store, u1, limit=2)) == want[:2]

    # -- replace by id ---------------------------------------------------------------------------

    async def test_replace_relation_closes_interval(self, graph_store: Any) -> None:
        a, b = self.entity("alice"), self.entity("paris")
        r = self.relation(a, "lives in", b, valid_at=BASE_TIME - timedelta(days=30), memory_ids=[mid("m1")])
        await self.apply(graph_store, [a, b], [r])
        closed_at = BASE_TIME + timedelta(days=2, milliseconds=250)
        closed = self.relation(
            a,
            "lives in",
            b,
            valid_at=r.valid_at,
            memory_ids=[mid("m1")],
            expired_at=closed_at,
            invalid_at=closed_at - timedelta(hours=1),
        )
        await self.apply(graph_store, [], [closed])
        u1 = Scope(user_id="u1")
        assert await self.all_relations(graph_store, u1) == [], "a closed relation is not current"
        assert await graph_store.neighbors(u1, [a.id]) == []
        (got,) = await self.all_relations(graph_store, u1, include_expired=True)
        assert_same_relation(got, closed)
        assert not got.current

    async def test_replace_bumps_mentions(self, graph_store: Any) -> None:
        a, b = self.entity("alice"), self.entity("paris", minutes=1)
        r = self.relation(a, "lives in", b, memory_ids=[mid("m1")])
        await self.apply(graph_store, [a, b], [r])
        later = BASE_TIME + timedelta(hours=3)
        a2 = self.entity("alice", mentions=2, updated_at=later)
        r2 = self.relation(a, "lives in", b, mentions=2, memory_ids=[mid("m1"), mid("m2")])
        await self.apply(graph_store, [a2], [r2])
        u1 = Scope(user_id="u1")
        got = await graph_store.entities(u1)
        assert len(got) == 2, f"replacing by id must not add an entity: {got!r}"
        assert_same_entity(got[0], a2)
        (gr,) = await self.all_relations(graph_store, u1)
        assert_same_relation(gr, r2)
        assert _ids(await self.all_relations(graph_store, u1, memory_ids=[mid("m2")])) == [r.id]

    async def test_replace_entity_embedding(self, graph_store: Any) -> None:
        a = self.entity("alice")
        await self.apply(graph_store, [a])
        moved = self.entity("alice", updated_at=BASE_TIME + _MINUTE)
        moved.embedding = self.vec("somewhere else")
        await self.apply(graph_store, [moved])
        ((hit, score),) = await graph_store.similar_entities(Scope(user_id="u1"), self.vec("somewhere else"))
        assert hit.id == a.id and score == pytest.approx(1.0, abs=1e-4), (
            "similarity uses the replaced embedding"
        )
        gone = self.entity("alice", embed=False)
        await self.apply(graph_store, [gone])
        assert await graph_store.similar_entities(Scope(user_id="u1"), self.vec("somewhere else")) == []

    # -- similar_entities ------------------------------------------------------------------------

    async def test_similar_entities_matches_bruteforce(self, graph_store: Any) -> None:
        rng = np.random.default_rng(7)
        n = 200
        vecs = random_unit(rng, self.dims, n)
        ents = [
            Entity(
                name=f"thing {i}",
                user_id="u1",
                agent_id=f"a{i % 3}",
                id=mid(f"sim{i}"),
                embedding=vecs[i].tolist(),
                created_at=BASE_TIME,
            )
            for i in range(n)
        ]
        await self.apply(graph_store, ents[:120])
        await self.apply(graph_store, ents[120:])
        for qi in range(5):
            q = random_unit(rng, self.dims) * (qi + 1)  # the query need not be unit length
            truth = _cosine_truth(vecs, q)
            order = np.argsort(-truth, kind="stable")
            got = await graph_store.similar_entities(Scope(user_id="u1"), q.tolist(), limit=10)
            assert isinstance(got, list) and len(got) == 10, f"expected 10 hits, got {len(got)}"
            assert [e.id for e, _ in got] == [ents[i].id for i in order[:10]], (
                f"query {qi}: order differs from brute-force cosine truth"
            )
            for (e, score), i in zip(got, order[:10], strict=True):
                assert isinstance(score, float), f"score should be a float, got {type(score).__name__}"
                assert score == pytest.approx(truth[i], abs=1e-4), f"{e.name}: cosine {score} != {truth[i]}"
            assert_same_entity(got[0][0], ents[order[0]])
        q = vecs[17]
        got = await graph_store.similar_entities(Scope(user_id="u1", agent_id="a2"), q.tolist(), limit=5)
        truth = _cosine_truth(vecs, q)
        in_scope = [i for i in np.argsort(-truth, kind="stable") if i % 3 == 2][:5]
        assert [e.id for e, _ in got] == [ents[i].id for i in in_scope], (
            "scope is applied before the cut to limit"
        )

    async def test_similar_entities_limit_and_min_score(self, graph_store: Any) -> None:
        rng = np.random.default_rng(3)
        vecs = random_unit(rng, self.dims, 30)
        ents = [
            Entity(name=f"x{i}", user_id="u1", id=mid(f"ms{i}"), embedding=vecs[i].tolist())
            for i in range(30)
        ]
        await self.apply(graph_store, ents)
        q = vecs[0].tolist()
        truth = _cosine_truth(vecs, vecs[0])
        u1 = Scope(user_id="u1")
        assert len(await graph_store.similar_entities(u1, q, limit=3)) == 3
        assert len(await graph_store.similar_entities(u1, q, limit=100)) == 30, (
            "min_score defaults to -1: all"
        )
        got = await graph_store.similar_entities(u1, q, limit=100, min_score=0.2)
        want = int((truth >= 0.2 + 1e-4).sum())
        assert want <= len(got) <= int((truth >= 0.2 - 1e-4).sum()), (
            f"min_score=0.2 kept {len(got)}, expected {want}"
        )
        assert all(s >= 0.2 - 1e-6 for _, s in got), "every hit must score at least min_score"
        assert [s for _, s in got] == sorted((s for _, s in got), reverse=True), "best first"
        assert got[0][0].id == ents[0].id and got[0][1] == pytest.approx(1.0, abs=1e-4)
        assert await graph_store.similar_entities(u1, q, min_score=1.01) == []

    async def test_similar_entities_skip_entities_without_embedding(self, graph_store: Any) -> None:
        with_e = [self.entity(f"w{i}") for i in range(3)]
        without = [self.entity(f"n{i}", embed=False) for i in range(3)]
        await self.apply(graph_store, with_e + without)
        got = await graph_store.similar_entities(Scope(user_id="u1"), self.vec("w0"), limit=100)
        assert {e.id for e, _ in got} == {e.id for e in with_e}, (
            "entities without an embedding are never returned"
        )
        assert got[0][0].id == with_e[0].id

    # -- neighbors -------------------------------------------------------------------------------

    def star(self) -> dict[str, Any]:
        """``hub`` with spokes to x1 (hub->x1) and x2 (x2->hub); x1->y1, y1<-z1 beyond; x1->x2 across."""
        e = {k: self.entity(k, minutes=i) for i, k in enumerate(["hub", "x1", "x2", "y1", "z1", "lone"])}
        r = {
            "hub-x1": self.relation(e["hub"], "knows", e["x1"], minutes=1),
            "x2-hub": self.relation(e["x2"], "knows", e["hub"], minutes=2),
            "x1-y1": self.relation(e["x1"], "knows", e["y1"], minutes=3),
            "z1-y1": self.relation(e["z1"], "knows", e["y1"], minutes=4),
            "x1-x2": self.relation(e["x1"], "knows", e["x2"], minutes=5),
        }
        return {"e": e, "r": r}

    async def test_neighbors_hops(self, graph_store: Any) -> None:
        g = self.star()
        e, r = g["e"], g["r"]
        await self.apply(graph_store, list(e.values()), list(r.values()))
        got = await graph_store.neighbors(Scope(user_id="u1"), [e["hub"].id], depth=2)
        assert isinstance(got, list), f"neighbors() returned {type(got).__name__}"
        hops = {rel.id: hop for rel, hop in got}
        want = {r["hub-x1"].id: 1, r["x2-hub"].id: 1, r["x1-y1"].id: 2, r["x1-x2"].id: 2}
        assert hops == want, f"depth 2 from hub: got {hops}, expected {want}"
        assert len(got) == 4, "each relation appears once, at its fewest hops"
        deeper = {
            rel.id: hop
            for rel, hop in await graph_store.neighbors(Scope(user_id="u1"), [e["hub"].id], depth=3)
        }
        assert deeper == {**want, r["z1-y1"].id: 3}
        for rel, _ in got:
            assert isinstance(rel, Relation)
        assert_same_relation(next(rel for rel, _ in got if rel.id == r["x1-y1"].id), r["x1-y1"])

    async def test_neighbors_both_directions(self, graph_store: Any) -> None:
        g = self.star()
        e, r = g["e"], g["r"]
        await self.apply(graph_store, list(e.values()), list(r.values()))
        got = {
            rel.id: hop
            for rel, hop in await graph_store.neighbors(Scope(user_id="u1"), [e["z1"].id], depth=2)
        }
        assert got == {r["z1-y1"].id: 1, r["x1-y1"].id: 2}, "edges are walked against their direction too"
        got = {
            rel.id: hop
            for rel, hop in await graph_store.neighbors(Scope(user_id="u1"), [e["y1"].id], depth=1)
        }
        assert got == {r["z1-y1"].id: 1, r["x1-y1"].id: 1}, "a seed that is only a destination has neighbors"
        multi = {
            rel.id: hop
            for rel, hop in await graph_store.neighbors(
                Scope(user_id="u1"), [e["z1"].id, e["hub"].id], depth=1
            )
        }
        assert multi == {r["z1-y1"].id: 1, r["hub-x1"].id: 1, r["x2-hub"].id: 1}
        assert await graph_store.neighbors(Scope(user_id="u1"), [e["lone"].id]) == []
        assert await graph_store.neighbors(Scope(user_id="u1"), []) == []

    async def test_neighbors_from_keys(self, graph_store: Any) -> None:
        g = self.star()
        e, r = g["e"], g["r"]
        await self.apply(graph_store, list(e.values()), list(r.values()))
        u1 = Scope(user_id="u1")
        by_id = await graph_store.neighbors(u1, [e["z1"].id], depth=2)
        by_key = await graph_store.neighbors(u1, keys=[e["z1"].key], depth=2)
        assert [(x.id, h) for x, h in by_key] == [(x.id, h) for x, h in by_id], (
            "a key seeds like the entity's id"
        )
        both = {x.id: h for x, h in await graph_store.neighbors(u1, [e["z1"].id], keys=["hub"], depth=1)}
        assert both == {r["z1-y1"].id: 1, r["hub-x1"].id: 1, r["x2-hub"].id: 1}, "ids and keys seed together"
        assert await graph_store.neighbors(u1, keys=["nobody"]) == [], "no seed found: no neighbors"
        assert await graph_store.neighbors(Scope(user_id="u2"), keys=["hub"]) == [], (
            "keys resolve in the scope"
        )
        assert await graph_store.neighbors(u1) == []

    async def test_neighbors_depth_one_stops(self, graph_store: Any) -> None:
        ents, rels = self.chain(["a", "b", "c", "d", "e"])
        await self.apply(graph_store, ents, rels)
        got = await graph_store.neighbors(Scope(user_id="u1"), [ents[2].id], depth=1)
        assert {rel.id for rel, _ in got} == {rels[1].id, rels[2].id} and {h for _, h in got} == {1}
        got = await graph_store.neighbors(Scope(user_id="u1"), [ents[0].id], depth=2)
        assert [(rel.id, h) for rel, h in got] == [(rels[0].id, 1), (rels[1].id, 2)]
        got = await graph_store.neighbors(Scope(user_id="u1"), [ents[0].id], depth=10)
        assert [(rel.id, h) for rel, h in got] == [(rel.id, i + 1) for i, rel in enumerate(rels)]

    async def test_neighbors_skip_expired(self, graph_store: Any) -> None:
        ents, rels = self.chain(["a", "b", "c", "d"])
        rels[1].expired_at = BASE_TIME + _MINUTE
        rels[1].invalid_at = BASE_TIME
        await self.apply(graph_store, ents, rels)
        got = await graph_store.neighbors(Scope(user_id="u1"), [ents[0].id], depth=3)
        assert [(rel.id, h) for rel, h in got] == [(rels[0].id, 1)], (
            "expired relations are neither returned nor walked"
        )
        got = await graph_store.neighbors(Scope(user_id="u1"), [ents[1].id], depth=3)
        assert [rel.id for rel, _ in got] == [rels[0].id]

    async def test_neighbors_order_and_limit(self, graph_store: Any) -> None:
        seed = self.entity("seed")
        others = [self.entity(f"o{i}") for i in range(6)]
        far = self.entity("far")
        rels = [
            self.relation(seed, "r", others[0], mentions=1, minutes=5),
            self.relation(others[1], "r", seed, mentions=5, minutes=1),
            self.relation(seed, "r", others[2], mentions=2, minutes=2),
            self.relation(seed, "r", others[3], mentions=2, minutes=3),
            self.relation(others[0], "r", far, mentions=9, minutes=9),  # hop 2 despite most mentions
        ]
        await self.apply(graph_store, [seed, *others, far], rels)
        got = await graph_store.neighbors(Scope(user_id="u1"), [seed.id], depth=2)
        want = [(rels[1].id, 1), (rels[3].id, 1), (rels[2].id, 1), (rels[0].id, 1), (rels[4].id, 2)]
        assert [(rel.id, h) for rel, h in got] == want, (
            "order: hops, then mentions desc, then created_at newest first"
        )
        limited = await graph_store.neighbors(Scope(user_id="u1"), [seed.id], depth=2, limit=2)
        assert [(rel.id, h) for rel, h in limited] == want[:2]

    # -- deletes ---------------------------------------------------------------------------------

    async def test_delete_memories_provenance(self, graph_store: Any) -> None:
        a, b, c = self.entity("a"), self.entity("b", minutes=1), self.entity("c", minutes=2)
        shared = self.relation(a, "r", b, minutes=1, memory_ids=[mid("m1"), mid("m2")])
        only = self.relation(b, "r", c, minutes=2, memory_ids=[mid("m1")])
        await self.apply(graph_store, [a, b, c], [shared, only])
        assert await graph_store.delete_memories([mid("m1")]) == 1, "one relation lost its last memory"
        (kept,) = await self.all_relations(graph_store, Scope(user_id="u1"), include_expired=True)
        assert kept.id == shared.id and kept.memory_ids == [mid("m2")], "m1 must leave the provenance"
        assert await self.all_relations(graph_store, Scope(user_id="u1"), memory_ids=[mid("m1")]) == []
        assert _ids(await graph_store.entities(Scope(user_id="u1"))) == [a.id, b.id], (
            "c lost its only relation and goes; b is still used and stays"
        )
        assert await graph_store.delete_memories([mid("m2"), mid("m9")]) == 1
        assert await graph_store.entities(Scope(user_id="u1")) == [], "every orphaned endpoint goes"
        assert await graph_store.delete_memories([mid("m2")]) == 0

    async def test_delete_memories_spares_relations_without_provenance(self, graph_store: Any) -> None:
        a, b, c = self.entity("a"), self.entity("b", minutes=1), self.entity("c", minutes=2)
        bare = self.relation(a, "r", b, minutes=1)
        sourced = self.relation(a, "r", c, minutes=2, memory_ids=[mid("m1")])
        expired = self.relation(b, "r", c, minutes=3, memory_ids=[mid("m1")], expired_at=BASE_TIME)
        lonely = self.entity("lonely", minutes=3)
        await self.apply(graph_store, [a, b, c, lonely], [bare, sourced, expired])
        assert await graph_store.delete_memories([mid("m1")]) == 2, "expired relations lose provenance too"
        assert _ids(await self.all_relations(graph_store, Scope(user_id="u1"), include_expired=True)) == [
            bare.id
        ], "a relation that never had provenance is not deleted"
        assert _ids(await graph_store.entities(Scope(user_id="u1"))) == [a.id, b.id, lonely.id], (
            "only the deleted relations' orphaned endpoints go (c); entities no deleted relation touched stay"
        )
        assert await graph_store.delete_memories([]) == 0

    async def test_delete_memories_across_scopes(self, graph_store: Any) -> None:
        ents, rels = self.scoped_graph()
        for r in rels:
            r.memory_ids = [mid(f"m-{r.user_id}")]
        await self.apply(graph_store, ents, rels)
        assert await graph_store.delete_memories([mid("m-u1")]) == 2
        assert await self.all_relations(graph_store, Scope(user_id="u1"), include_expired=True) == []
        assert await graph_store.entities(Scope(user_id="u1")) == []
        assert _ids(await self.all_relations(graph_store, Scope(user_id="u2"))) == [rels[2].id]
        assert len(await graph_store.entities(Scope(user_id="u2"))) == 2

    async def test_delete_scope(self, graph_store: Any) -> None:
        ents, rels = self.scoped_graph()
        await self.apply(graph_store, ents, rels)
        await graph_store.delete_scope(Scope(user_id="u1", agent_id="a2"))
        assert {e.agent_id for e in await graph_store.entities(Scope(user_id="u1"))} == {"a1"}
        assert _ids(await self.all_relations(graph_store, Scope(user_id="u1"))) == [rels[0].id]
        await graph_store.delete_scope(Scope(user_id="u1"))
        assert await graph_store.entities(Scope(user_id="u1")) == []
        assert await self.all_relations(graph_store, Scope(user_id="u1"), include_expired=True) == []
        assert await graph_store.similar_entities(Scope(user_id="u1"), self.vec("x")) == []
        assert len(await graph_store.entities(Scope(user_id="u2"))) == 2, "another user's data is untouched"
        assert _ids(await self.all_relations(graph_store, Scope(user_id="u2"))) == [rels[2].id]
        assert len(await graph_store.similar_entities(Scope(user_id="u2"), self.vec("x"))) == 2
        await graph_store.delete_scope(Scope(user_id="nobody"))

    async def test_batch_delete_entities_removes_touching_relations(self, graph_store: Any) -> None:
        ents, rels = self.chain(["a", "b", "c", "d"])
        await self.apply(graph_store, ents, rels)
        await self.apply(graph_store, delete_entities=[ents[1].id, mid("nobody")])
        assert _ids(await graph_store.entities(Scope(user_id="u1"))) == [ents[0].id, ents[2].id, ents[3].id]
        assert _ids(await self.all_relations(graph_store, Scope(user_id="u1"), include_expired=True)) == [
            rels[2].id
        ]
        assert all(
            e.id != ents[1].id
            for e, _ in await graph_store.similar_entities(Scope(user_id="u1"), self.vec("b"))
        )

    async def test_batch_delete_relations(self, graph_store: Any) -> None:
        ents, rels = self.chain(["a", "b", "c"])
        await self.apply(graph_store, ents, rels)
        await self.apply(graph_store, delete_relations=[rels[0].id, mid("nobody")])
        assert _ids(await self.all_relations(graph_store, Scope(user_id="u1"), include_expired=True)) == [
            rels[1].id
        ]
        assert len(await graph_store.entities(Scope(user_id="u1"))) == 3, (
            "deleting a relation keeps its entities"
        )

    async def test_batch_deletes_before_upserts(self, graph_store: Any) -> None:
        ents, rels = self.chain(["a", "b"])
        await self.apply(graph_store, ents, rels)
        fresh = self.relation(ents[1], "again", ents[0], minutes=5)
        await self.apply(graph_store, [], [fresh], delete_relations=[rels[0].id])
        assert _ids(await self.all_relations(graph_store, Scope(user_id="u1"))) == [fresh.id]
        back = self.relation(ents[0], "next", ents[1], minutes=6, label=f"{ents[0].id}-next-{ents[1].id}")
        await self.apply(graph_store, [], [back], delete_relations=[back.id])
        assert back.id in _ids(await self.all_relations(graph_store, Scope(user_id="u1"))), (
            "a batch's deletes apply before its upserts"
        )

    async def test_reset(self, graph_store: Any) -> None:
        ents, rels = self.scoped_graph()
        await self.apply(graph_store, ents, rels)
        await graph_store.reset()
        for user in ("u1", "u2"):
            assert await graph_store.entities(Scope(user_id=user)) == []
            assert await graph_store.relations(Scope(user_id=user), include_expired=True) == []
            assert await graph_store.similar_entities(Scope(user_id=user), self.vec("x")) == []
        await self.apply(graph_store, ents[:2], rels[:1])
        assert len(await graph_store.entities(Scope(user_id="u1"))) == 2, "the store is usable after reset"

    # -- bad input -------------------------------------------------------------------------------

    async def test_apply_unknown_entity_is_atomic(self, graph_store: Any) -> None:
        a, b = self.entity("a"), self.entity("b")
        await self.apply(graph_store, [a], [])
        ghost = self.entity("ghost")
        c = self.entity("c")
        bad = [self.relation(a, "r", b), self.relation(c, "r", ghost)]  # b is in the batch, ghost nowhere
        with pytest.raises(InvalidInputError):
            await self.apply(graph_store, [b, c], bad, delete_relations=[mid("x")])
        assert _ids(await graph_store.entities(Scope(user_id="u1"))) == [a.id], (
            "a failed batch must write nothing, not even its valid entities"
        )
        assert await graph_store.relations(Scope(user_id="u1"), include_expired=True) == []

    async def test_embedding_length_mismatch(self, graph_store: Any) -> None:
        a = self.entity("a")
        await self.apply(graph_store, [a])
        b = self.entity("b")
        b.embedding = [0.5] * (self.dims + 1)
        c = self.entity("c")
        with pytest.raises(InvalidInputError):
            await self.apply(graph_store, [c, b])
        assert _ids(await graph_store.entities(Scope(user_id="u1"))) == [a.id], (
            "nothing of the bad batch is written"
        )
        d, e = self.entity("d"), self.entity("e")
        d.embedding, e.embedding = [1.0, 0.0], [1.0, 0.0, 0.0]
        with pytest.raises(InvalidInputError):
            await self.apply(graph_store, [d, e])
        assert len(await graph_store.entities(Scope(user_id="u1"))) == 1

    async def test_unicode_names(self, graph_store: Any) -> None:
        names = ["Zoë Ünïcode", "東京", "Ольга", "🍵 Matcha", 'O\'Brien "the" Great', "a;DROP TABLE x;--"]
        ents = [self.entity(f"uni{i}", n, minutes=i) for i, n in enumerate(names)]
        rels = [self.relation(ents[i], "likes 東京", ents[i + 1], minutes=i) for i in range(len(ents) - 1)]
        await self.apply(graph_store, ents, rels)
        got = await graph_store.entities(Scope(user_id="u1"))
        assert [g.name for g in got] == names
        for g, w in zip(got, ents, strict=True):
            assert_same_entity(g, w)
        by_key = await graph_store.entities(Scope(user_id="u1"), keys=[ents[0].key, ents[1].key])
        assert [g.name for g in by_key] == names[:2]
        (r,) = await self.all_relations(graph_store, Scope(user_id="u1"), entity_ids=[ents[0].id])
        assert r.relation == "likes_東京" and r.source == names[0] and r.destination == names[1]
        scoped = self.entity("uni-s", "Émile", user="üser ✓")
        await self.apply(graph_store, [scoped])
        assert _ids(await graph_store.entities(Scope(user_id="üser ✓"))) == [scoped.id]

    # -- persistence, scale, concurrency ---------------------------------------------------------

    @requires("persistent")
    async def test_persists_across_reopen(self, graph_store: Any) -> None:
        ents, rels = self.scoped_graph()
        rels[0].memory_ids = [mid("m1")]
        rels[1].expired_at = BASE_TIME + _MINUTE
        await self.apply(graph_store, ents, rels)
        store2 = await self.reopened(graph_store)
        try:
            got = await store2.entities(Scope(user_id="u1"))
            want = sorted((e for e in ents if e.user_id == "u1"), key=lambda e: (e.created_at, e.id))
            assert len(got) == len(want)
            for g, w in zip(got, want, strict=True):
                assert_same_entity(g, w)
            got_r = await store2.relations(Scope(user_id="u1"), include_expired=True)
            assert [r.id for r in got_r] == [rels[1].id, rels[0].id]
            for g, w in zip(got_r, [rels[1], rels[0]], strict=True):
                assert_same_relation(g, w)
            hits = await store2.similar_entities(Scope(user_id="u1"), ents[0].embedding or [], limit=1)
            assert [e.id for e, _ in hits] == [ents[0].id]
            assert [r.id for r, _ in await store2.neighbors(Scope(user_id="u1"), [ents[0].id])] == [
                rels[0].id
            ]
            assert await store2.delete_memories([mid("m1")]) == 1
            more = self.entity("after", user="u1")
            await store2.apply(GraphBatch(entities=[more]))
            assert more.id in [e.id for e in await store2.entities(Scope(user_id="u1"))]
        finally:
            await store2.aclose()

    async def test_large_batch_then_neighbors(self, graph_store: Any) -> None:
        hubs_n = 100
        per_hub = max(1, self.big // hubs_n - 1)
        center = self.entity("center", embed=False)
        hubs = [self.entity(f"hub{i}", embed=False) for i in range(hubs_n)]
        leaves = [[self.entity(f"leaf{i}-{j}", embed=False) for j in range(per_hub)] for i in range(hubs_n)]
        rels = [self.relation(center, "has", h) for h in hubs]
        rels += [self.relation(h, "has", leaf) for h, row in zip(hubs, leaves, strict=True) for leaf in row]
        await self.apply(graph_store, [center, *hubs, *(x for row in leaves for x in row)], rels)
        seed = leaves[7][3]
        got = await graph_store.neighbors(Scope(user_id="u1"), [seed.id], depth=2, limit=1000)
        hops = [h for _, h in got]
        assert hops.count(1) == 1 and hops.count(2) == per_hub, f"hop counts {hops.count(1)}, {hops.count(2)}"
        assert got[0][0].destination_id == seed.id
        assert {r.source_id for r, h in got if h == 2} == {center.id, hubs[7].id}
        top = await graph_store.neighbors(Scope(user_id="u1"), [center.id], depth=2, limit=50)
        assert len(top) == 50 and all(h == 1 for _, h in top)
        assert len(await graph_store.relations(Scope(user_id="u1"), limit=None)) == len(rels)

    async def test_concurrent_applies(self, graph_store: Any) -> None:
        """8 tasks x 10 batches (two entities and a relation each) at once: nothing is lost."""

        async def writer(w: int) -> None:
            for j in range(10):
                a = self.entity(f"c{w}-{j}-a", user="uc", minutes=j)
                b = self.entity(f"c{w}-{j}-b", user="uc", minutes=j)
                await self.apply(graph_store, [a, b], [self.relation(a, "r", b, memory_ids=[mid(f"m{w}")])])

        async with anyio.create_task_group() as tg:
            for w in range(8):
                tg.start_soon(writer, w)
        scope = Scope(user_id="uc")
        assert len(await graph_store.entities(scope)) == 160
        assert len(await graph_store.relations(scope)) == 80
        for w in range(8):
            assert len(await graph_store.relations(scope, memory_ids=[mid(f"m{w}")])) == 10
