"""Property tests: no filter or query string raises an unexpected error, stores agree with the
Python truth (``engram.core.matches``) on every parsed filter, and no scope sees another's memory.

Each runs against the in-process ``memory`` store and, when it is installed, the ``sqlite`` store.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from engram.core import AsyncMemory, Scope, VectorQuery, WriteBatch, matches, parse_filters
from engram.core.errors import InvalidFilterError, InvalidInputError
from engram.embedding.hash import HashEmbedder
from engram.testing import filter_dataset, newest_first, random_unit
from engram.testing import strategies as est
from engram.vector.memory import MemoryVectorStore
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

try:
    from engram.vector.sqlite import SQLiteVectorStore
except ImportError:  # not built yet: the memory store alone
    SQLiteVectorStore = None  # type: ignore[assignment,misc]

DIMS = 16
STORES = ["memory", "sqlite"]
FIXTURE_OK = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _open(kind: str, tmp_path: Any) -> Any:
    if kind == "memory":
        return MemoryVectorStore()
    if SQLiteVectorStore is None:
        pytest.skip("engram.vector.sqlite is not available")
    return SQLiteVectorStore(SQLiteVectorStore.Config(path=str(tmp_path / "prop.db")))


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    s = _open(request.param, tmp_path)
    yield s
    await s.aclose()


@pytest.fixture
async def loaded(store: Any) -> tuple[Any, list[Any]]:
    items = filter_dataset(DIMS)
    await store.write(WriteBatch(upserts=items))
    return store, items


# -- (a) filters -------------------------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(est.any_filters())
def test_parse_filters_raises_only_invalid_filter(mapping: Any) -> None:
    try:
        f = parse_filters(mapping)
    except InvalidFilterError as exc:
        assert str(exc)  # a message, never an empty error
        return
    for item in filter_dataset(DIMS):  # whatever parses, the truth evaluates without raising
        assert matches(f, item) in (True, False)


async def _check_store_truth(store: Any, items: list[Any], mapping: Any) -> None:
    try:
        f = parse_filters(mapping)
    except InvalidFilterError:
        return
    want = [i.id for i in newest_first(items) if matches(f, i)]
    got = [i.id for i in await store.list(None, filters=f, limit=None)]
    assert got == want, mapping
    assert await store.count(None, filters=f) == len(want), mapping
    scope = Scope(user_id="u1")
    hits = await store.search(VectorQuery(scope, random_unit(np.random.default_rng(0), DIMS),
                                          "paris", f, 100, "dense"))
    assert {h.item.id for h in hits} == {i.id for i in items if i.user_id == "u1" and matches(f, i)}, mapping


@settings(FIXTURE_OK, max_examples=150)
@given(mapping=est.valid_filters())
async def test_store_filter_equals_truth(loaded: tuple[Any, list[Any]], mapping: dict[str, Any]) -> None:
    await _check_store_truth(*loaded, mapping)


@settings(FIXTURE_OK, max_examples=150)
@given(mapping=est.any_filters())
async def test_store_any_parsed_filter_equals_truth(loaded: tuple[Any, list[Any]], mapping: Any) -> None:
    await _check_store_truth(*loaded, mapping)


# -- (b) query strings -------------------------------------------------------------------------


@pytest.fixture
async def memory(store: Any) -> AsyncMemory:
    m = AsyncMemory({"vector_store": store, "embedder": HashEmbedder(dims=64)})
    await m.add(
        ["I moved to Paris in June", "Caroline's dog is named Rex", "Running every morning", "東京で寿司を食べた 🍣"],
        user_id="alice", infer=False,
    )
    await m.add("Bob's secret: the vault code is 1234", user_id="bob", infer=False)
    yield m
    await m.aclose()


@settings(FIXTURE_OK, max_examples=150)
@given(query=est.query_strings())
async def test_any_query_string_searches(memory: AsyncMemory, query: str) -> None:
    out = await memory.search(query, user_id="alice", limit=5)
    assert all(r["user_id"] == "alice" for r in out["results"])
    scores = [r["score"] for r in out["results"]]
    assert scores == sorted(scores, reverse=True)


@settings(FIXTURE_OK, max_examples=100)
@given(query=est.query_strings(), mode=st.sampled_from(["lexical", "hybrid"]))
async def test_any_query_string_in_store(loaded: tuple[Any, list[Any]], query: str, mode: str) -> None:
    store, _ = loaded
    q = VectorQuery(Scope(user_id="u1"), random_unit(np.random.default_rng(1), DIMS), query,
                    None, 5, mode)  # type: ignore[arg-type]
    hits = await store.search(q)
    assert all(h.item.user_id == "u1" for h in hits)


@settings(FIXTURE_OK, max_examples=150)
@given(mapping=est.any_filters())
async def test_search_filters_raise_only_invalid_filter(memory: AsyncMemory, mapping: Any) -> None:
    try:
        out = await memory.search("paris", user_id="alice", filters=mapping)
    except InvalidFilterError:
        return
    assert all(r["user_id"] == "alice" for r in out["results"])


# -- (c) scope isolation -----------------------------------------------------------------------


@settings(FIXTURE_OK, max_examples=60)
@given(
    data=st.lists(st.tuples(est.scopes(), st.sampled_from(["tea", "coffee time", "the cat", "paris trip", "x"])),
                  min_size=1, max_size=12),
    query_scope=est.scopes(),
    query=st.sampled_from(["tea", "cat", "paris", "", "coffee?"]),
)
async def test_scope_never_leaks(store: Any, data: list[tuple[Scope, str]], query_scope: Scope, query: str) -> None:
    await store.reset()
    m = AsyncMemory({"vector_store": store, "embedder": HashEmbedder(dims=64)})
    written: dict[str, Scope] = {}
    for scope, text in data:
        out = await m.add(text, user_id=scope.user_id, agent_id=scope.agent_id, run_id=scope.run_id, infer=False)
        for r in out["results"]:
            written[r["id"]] = scope
    visible = {i for i, s in written.items() if query_scope.matches(s.user_id, s.agent_id, s.run_id)}
    kw = {"user_id": query_scope.user_id, "agent_id": query_scope.agent_id, "run_id": query_scope.run_id}
    listed = {r["id"] for r in (await m.get_all(limit=1000, **kw))["results"]}
    assert listed == visible
    found = {r["id"] for r in (await m.search(query, limit=100, **kw))["results"]}
    assert found == visible  # dense recall ranks every memory in scope; nothing from outside it
    assert await store.count(query_scope) == len(visible)


async def test_bad_scope_is_invalid_input(memory: AsyncMemory) -> None:
    for kw in ({}, {"user_id": ""}, {"user_id": "a\n"}, {"agent_id": "x" * 257}, {"run_id": 5}):
        with pytest.raises(InvalidInputError):
            await memory.search("q", **kw)
