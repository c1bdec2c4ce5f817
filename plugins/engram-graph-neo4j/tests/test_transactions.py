"""The store's transaction logic against a recording stand-in for the driver (no server): which
statements run, in which order, with which parameters, and that validation precedes every write."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from engram.core import Entity, GraphBatch, Relation, Scope
from engram.core.errors import InvalidInputError, ProviderError
from engram.graph.neo4j import Neo4jGraphStore
from engram.graph.neo4j import _cypher as q
from neo4j.exceptions import ClientError, ConstraintError

WRITES = {q.DELETE_RELATIONS_BY_ID, q.DELETE_ENTITIES, q.UPSERT_ENTITIES, q.UPSERT_RELATIONS}


class FakeResult:
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        async def gen() -> AsyncIterator[dict[str, Any]]:
            for row in self.rows:
                yield row

        return gen()

    async def single(self) -> dict[str, Any] | None:
        return self.rows[0] if self.rows else None

    async def consume(self) -> None:
        return None


class FakeDriver:
    """Answers each statement from ``answers`` (a statement -> rows or exception mapping)."""

    def __init__(self, answers: dict[str, Any] | None = None) -> None:
        self.answers = answers or {}
        self.log: list[tuple[str, str, dict[str, Any]]] = []  # (kind, statement, params)
        self.execute_query_bookmark_manager = None

    def session(self, **_: Any) -> FakeDriver:
        return self

    async def __aenter__(self) -> FakeDriver:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def run(self, query: str, params: dict[str, Any] | None = None) -> FakeResult:
        self.log.append(("run", query, dict(params or {})))
        answer: Any = self.answers.get(query, [])
        if isinstance(answer, Exception):
            raise answer
        rows = cast("list[dict[str, Any]]", answer(params) if callable(answer) else answer)
        return FakeResult(rows)

    async def execute_write(self, work: Any) -> Any:
        self.log.append(("tx", "write", {}))
        return await work(self)

    async def execute_read(self, work: Any) -> Any:
        self.log.append(("tx", "read", {}))
        return await work(self)

    async def close(self) -> None:
        self.log.append(("close", "", {}))


def store_with(driver: FakeDriver) -> Neo4jGraphStore:
    store = Neo4jGraphStore(uri="bolt://fake:7687")
    store._driver = driver  # type: ignore[assignment]
    return store


def statements(driver: FakeDriver) -> list[str]:
    return [s for kind, s, _ in driver.log if kind == "run"]


def ent(name: str, **kw: Any) -> Entity:
    return Entity(name, user_id="u1", embedding=[1.0, 0.0, 0.0], **kw)


def rel(a: Entity, b: Entity, **kw: Any) -> Relation:
    return Relation(a.name, "knows", b.name, user_id="u1", source_id=a.id, destination_id=b.id, **kw)


async def test_apply_order_and_parameters() -> None:
    driver = FakeDriver({q.EXISTING_ENTITY_IDS: lambda p: [{"id": i} for i in p["ids"]]})
    store = store_with(driver)
    a, b, c = ent("Alice"), ent("Bob"), ent("Carol")
    r = rel(a, c, memory_ids=["m1"])
    await store.apply(GraphBatch([a, b], [r, rel(b, c)], ["dead-rel"], ["dead-ent"]))
    ran = statements(driver)
    assert ran[:6] == [
        q.EXISTING_ENTITY_IDS,
        q.STORED_DIMS,
        q.DELETE_RELATIONS_BY_ID,
        q.DELETE_ENTITIES,
        q.UPSERT_ENTITIES,
        q.UPSERT_RELATIONS,
    ]
    assert ran[6:] == [q.create_vector_index(3), q.AWAIT_INDEX], "the index follows the first embeddings"
    assert [k for k, *_ in driver.log].count("tx") == 1, "one write transaction"
    params = {s: p for kind, s, p in driver.log if kind == "run"}
    assert params[q.EXISTING_ENTITY_IDS]["ids"] == [c.id], "only ids outside the batch are looked up"
    assert params[q.STORED_DIMS]["exclude"] == sorted({a.id, b.id, "dead-ent"})
    rows = params[q.UPSERT_RELATIONS]["rows"]
    assert rows[0]["memory_ids"] == ["m1"] and isinstance(rows[0]["created_at"], int)
    assert params[q.AWAIT_INDEX] == {"index": q.VECTOR_INDEX, "seconds": 60}
    await store.apply(GraphBatch([ent("Dan")]))
    assert q.create_vector_index(3) not in statements(driver)[8:], "the index is created once"


async def test_unknown_entity_fails_before_any_write() -> None:
    driver = FakeDriver({q.EXISTING_ENTITY_IDS: []})
    store = store_with(driver)
    a, ghost = ent("Alice"), ent("Ghost")
    with pytest.raises(InvalidInputError, match=ghost.id):
        await store.apply(GraphBatch([a], [rel(a, ghost)], ["x"]))
    assert not WRITES & set(statements(driver))


async def test_entity_deleted_by_the_batch_is_unknown() -> None:
    driver = FakeDriver({q.EXISTING_ENTITY_IDS: lambda p: [{"id": i} for i in p["ids"]]})
    store = store_with(driver)
    a, b = ent("Alice"), ent("Bob")
    with pytest.raises(InvalidInputError, match=b.id):
        await store.apply(GraphBatch([a], [rel(a, b)], delete_entities=[b.id]))
    assert not WRITES & set(statements(driver))


async def test_stored_dims_mismatch_fails_before_any_write() -> None:
    driver = FakeDriver({q.STORED_DIMS: [{"dims": 16}]})
    store = store_with(driver)
    with pytest.raises(InvalidInputError, match="16"):
        await store.apply(GraphBatch([ent("Alice")]))
    assert not WRITES & set(statements(driver))


async def test_driver_errors_are_translated() -> None:
    exc = ConstraintError._hydrate_neo4j(
        code="Neo.ClientError.Schema.ConstraintValidationFailed", message="dup"
    )
    store = store_with(FakeDriver({q.UPSERT_ENTITIES: exc}))
    with pytest.raises(InvalidInputError) as info:
        await store.apply(GraphBatch([Entity("Alice", user_id="u1")]))
    assert info.value.__cause__ is exc
    boom = ClientError._hydrate_neo4j(code="Neo.ClientError.Statement.SyntaxError", message="bad")
    store = store_with(FakeDriver({q.ENTITIES: boom}))
    with pytest.raises(ProviderError, match="bolt://fake:7687") as info2:
        await store.entities(Scope(user_id="u1"))
    assert info2.value.__cause__ is boom


async def test_similar_uses_the_index_then_falls_back_when_short() -> None:
    hit = {
        "entity": {
            "id": "e1",
            "name": "Alice",
            "key": "alice",
            "user_id": "u1",
            "created_at": 0,
            "embedding": [1.0, 0.0],
        },
        "score": 0.9,
    }
    driver = FakeDriver({q.SIMILAR_INDEXED: [hit], q.SIMILAR_EXACT: [hit]})
    store = store_with(driver)
    got = await store.similar_entities(Scope(user_id="u1"), [2.0, 0.0], limit=1)
    assert [(e.id, s) for e, s in got] == [("e1", 0.9)] and statements(driver) == [q.SIMILAR_INDEXED]
    params = driver.log[-1][2]
    assert params["k"] == 100 and params["qnorm"] == 2.0 and params["index"] == q.VECTOR_INDEX
    driver.log.clear()
    await store.similar_entities(Scope(user_id="u1"), [2.0, 0.0], limit=5)
    assert statements(driver) == [q.SIMILAR_INDEXED, q.SIMILAR_EXACT], "short: the exact scan answers"
    missing = ClientError._hydrate_neo4j(
        code="Neo.ClientError.Procedure.ProcedureCallFailed", message="no index"
    )
    driver = FakeDriver({q.SIMILAR_INDEXED: missing, q.SIMILAR_EXACT: [hit]})
    got = await store_with(driver).similar_entities(Scope(user_id="u1"), [1.0, 0.0])
    assert [e.id for e, _ in got] == ["e1"] and statements(driver) == [q.SIMILAR_INDEXED, q.SIMILAR_EXACT]


async def test_neighbors_and_deletes() -> None:
    row = {
        "relation": {
            "id": "r1",
            "source": "a",
            "relation": "knows",
            "destination": "b",
            "user_id": "u1",
            "created_at": 5,
            "memory_ids": ["m1"],
        },
        "hops": 2,
    }
    driver = FakeDriver(
        {
            q.neighbors(5): [row],
            q.PRUNE_PROVENANCE: [{"id": "r1", "source_id": "a", "destination_id": "b"}],
            q.DELETE_RELATIONS: [{"n": 1}],
            q.DELETE_SCOPE_RELATIONS: [{"n": 0}],
            q.DELETE_SCOPE_ENTITIES: [{"n": 0}],
        }
    )
    store = store_with(driver)
    ((r, hops),) = await store.neighbors(Scope(user_id="u1"), keys=["alice"], depth=9)
    assert r.id == "r1" and hops == 2 and r.memory_ids == ["m1"]
    assert await store.delete_memories(["m1"]) == 1
    ran = statements(driver)
    assert ran[1:] == [q.PRUNE_PROVENANCE, q.DELETE_RELATIONS, q.PRUNE_ENTITIES]
    assert driver.log[-1][2] == {"ids": ["a", "b"]}
    driver.log.clear()
    await store.delete_scope(Scope(user_id="u1", agent_id="a1"))
    assert statements(driver) == [q.DELETE_SCOPE_RELATIONS, q.DELETE_SCOPE_ENTITIES]
    assert driver.log[1][2] == {"user_id": "u1", "agent_id": "a1", "run_id": None, "batch": 10_000}
    await store.aclose()
    assert driver.log[-1][0] == "close" and store._driver is None
