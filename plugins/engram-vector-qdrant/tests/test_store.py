"""Qdrant-specific checks: configuration and URLs, laziness, the filter translation (exact at the
number edges, refusals), BM25 statistics, errors at the boundary, the registry, and an
AsyncMemory round trip.

Checks that need a server are marked ``integration`` and skipped, naming the server, without
``ENGRAM_TEST_QDRANT_URL`` (see test_conformance.py for how to start one).
"""

from __future__ import annotations

import itertools
import os
import socket
import time
import uuid
import warnings
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from engram.core import AsyncMemory, Registry, Scope, VectorQuery, WriteBatch, matches, parse_filters
from engram.core.errors import (
    ConfigurationError,
    InvalidFilterError,
    InvalidInputError,
    ProviderError,
    ProviderTimeoutError,
)
from engram.testing import assert_same_item, newest_first
from engram.testing._data import BASE_TIME, make_item, mid, random_unit
from engram.vector.qdrant import QdrantVectorStore
from engram.vector.qdrant._filters import EVERYTHING, NOTHING, translate
from engram.vector.qdrant._layout import field_name
from engram.vector.qdrant._store import _check_version
from pydantic import SecretStr, ValidationError

URL = os.environ.get("ENGRAM_TEST_QDRANT_URL")
GRPC_PORT = os.environ.get("ENGRAM_TEST_QDRANT_GRPC_PORT")
NEEDS_SERVER = (
    "needs a Qdrant server: run `python scripts/qdrant_server.py start --state DIR` and set "
    "ENGRAM_TEST_QDRANT_URL (nox -s integration does both)"
)
DIMS = 8


def _config(**kw: Any) -> QdrantVectorStore.Config:
    return QdrantVectorStore.Config(**kw)


# -- configuration and URLs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "want"),
    [
        ("qdrant://localhost:6333/memories", {"url": "http://localhost:6333", "collection": "memories"}),
        ("qdrant://db.example.com", {"url": "http://db.example.com:6333", "collection": "engram"}),
        ("qdrant+https://db.example.com/m", {"url": "https://db.example.com:6333", "collection": "m"}),
        ("qdrant://db.example.com:443/m?https=true", {"url": "https://db.example.com:443"}),
        ("qdrant+http://h:1234", {"url": "http://h:1234"}),
        ("qdrant://[::1]:6333/c", {"url": "http://[::1]:6333", "collection": "c"}),
        ("qdrant://h/c?grpc=true&grpc_port=7000", {"prefer_grpc": True, "grpc_port": 7000}),
        (
            "qdrant://h/c?prefer_grpc=1&timeout=3&exact=true",
            {"prefer_grpc": True, "timeout": 3, "exact": True},
        ),
        ("qdrant://h?collection=other", {"collection": "other"}),
        ("qdrant:///:memory:", {"location": ":memory:", "url": None, "path": None}),
        ("qdrant:///data/qdrant?collection=mine", {"path": "data/qdrant", "collection": "mine"}),
        ("qdrant:////var/lib/qdrant", {"path": "/var/lib/qdrant"}),
        ("qdrant:///with%20space", {"path": "with space"}),
    ],
)
def test_url_forms(url: str, want: dict[str, Any]) -> None:
    store = QdrantVectorStore.from_url(url)
    for k, v in want.items():
        assert getattr(store.config, k) == v, (url, k)


def test_url_api_key_is_the_password_and_stays_secret() -> None:
    store = QdrantVectorStore.from_url("qdrant+https://:s3cr%40t@cloud.example.com/mem")
    assert isinstance(store.config.api_key, SecretStr)
    assert store.config.api_key.get_secret_value() == "s3cr@t"
    assert "s3cr" not in repr(store.config) and "s3cr" not in str(store.config.model_dump())


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///x.db",
        "qdrant://",
        "qdrant://h/a/b",
        "qdrant://h/c?collection=d",
        "qdrant://h/c?https=maybe",
        "qdrant+https://h/c?https=false",
        "qdrant:///:memory:?https=true",
        "qdrant+https:///folder",
        "qdrant://h/c?api_key=abc",
        "qdrant://h/c?unknown=1",
        "qdrant://h:99999/c",
        "qdrant://h/bad%2Fname",
    ],
)
def test_bad_urls(url: str) -> None:
    with pytest.raises(ConfigurationError):
        QdrantVectorStore.from_url(url)


@pytest.mark.parametrize(
    "kw",
    [
        {"url": "http://h:6333", "path": "x"},
        {"location": ":memory:", "path": "x"},
        {"location": "http://h:6333"},
        {"path": " "},
        {"path": "x", "api_key": "k"},
        {"location": ":memory:", "prefer_grpc": True},
        {"url": "ftp://h"},
        {"collection": ""},
        {"collection": "a/b"},
        {"unknown": 1},
        {"timeout": 0},
        {"bm25_b": 2},
    ],
)
def test_bad_configs(kw: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        _config(**kw)


def test_default_is_a_local_server_and_capabilities_follow_the_mode() -> None:
    assert QdrantVectorStore().config.where == "http://localhost:6333"
    assert QdrantVectorStore(location=":memory:").capabilities == frozenset({"lexical", "archive"})
    assert QdrantVectorStore(path="x").capabilities == frozenset({"lexical", "archive", "persistent"})
    assert "persistent" in QdrantVectorStore(url="http://h:6333").capabilities
    for caps in (QdrantVectorStore(location=":memory:").capabilities,):
        assert not caps & {"history", "substring_filters", "string_range_filters"}


# -- laziness ------------------------------------------------------------------------------------


def _refused_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_nothing_happens_in_the_constructor(tmp_path: Path) -> None:
    folder = tmp_path / "never"
    local = QdrantVectorStore(path=str(folder))
    remote = QdrantVectorStore(url=f"http://127.0.0.1:{_refused_port()}")
    assert not folder.exists(), "local mode opened its folder in __init__"
    assert local._client._local is None and remote._client._remote is None
    await remote.aclose()  # closing a store that never connected is fine
    await local.aclose()
    assert not folder.exists()


async def test_local_folder_is_created_on_first_use(tmp_path: Path) -> None:
    folder = tmp_path / "made"
    async with QdrantVectorStore(path=str(folder)) as store:
        assert await store.count() == 0
        assert folder.is_dir()


# -- errors at the boundary ------------------------------------------------------------------------


@pytest.mark.parametrize("grpc", [False, True], ids=["rest", "grpc"])
async def test_unreachable_server_is_a_provider_error_fast(grpc: bool) -> None:
    port = _refused_port()
    store = QdrantVectorStore(
        url=f"http://127.0.0.1:{port}", prefer_grpc=grpc, grpc_port=_refused_port(), timeout=5
    )
    started = time.monotonic()
    with pytest.raises(ProviderError) as info:
        await store.count()
    assert time.monotonic() - started < 3.0
    assert "127.0.0.1" in str(info.value) and info.value.__cause__ is not None
    with pytest.raises(ProviderError):
        await store.write(
            WriteBatch(upserts=[make_item("a", "a", random_unit(np.random.default_rng(0), DIMS))])
        )
    await store.aclose()


async def test_a_silent_server_is_a_timeout() -> None:
    """A port that accepts connections and never answers: the request times out as
    ProviderTimeoutError (a ProviderError and a TimeoutError) after ``timeout`` seconds."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        store = QdrantVectorStore(url=f"http://127.0.0.1:{port}", timeout=1)
        started = time.monotonic()
        with pytest.raises(ProviderTimeoutError):
            await store.count()
        assert time.monotonic() - started < 5.0
        await store.aclose()


async def test_a_locked_folder_is_a_provider_error(tmp_path: Path) -> None:
    async with QdrantVectorStore(path=str(tmp_path / "q")) as first:
        await first.count()
        second = QdrantVectorStore(path=str(tmp_path / "q"))
        with pytest.raises(ProviderError, match="already accessed"):
            await second.count()


def test_version_check_warns_only_across_minor_versions() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _check_version("1.16.3", "here")
        _check_version("1.17.0", "here")
    with pytest.warns(UserWarning, match="may not work with the Qdrant 2.0.0 server"):
        _check_version("2.0.0", "here")


# -- the filter translation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mapping", "op", "why"),
    [
        ({"city": {"contains": "ar"}}, "contains", "substrings"),
        ({"memory": {"icontains": "paris"}}, "icontains", "substrings"),
        ({"tags": {"contains": "work"}}, "contains", "substrings"),
        ({"category": {"gt": "m"}}, "gt", "order strings"),
        ({"user_id": {"lte": "u2"}}, "lte", "order strings"),
        ({"OR": [{"id": {"ne": None}}, {"city": {"icontains": "x"}}]}, "icontains", "substrings"),
        ({"NOT": {"AND": [{"priority": 1}, {"name": {"gte": "a"}}]}}, "gte", "order strings"),
    ],
)
def test_refused_filters_say_what_why_and_instead(mapping: dict[str, Any], op: str, why: str) -> None:
    with pytest.raises(InvalidFilterError) as info:
        translate(parse_filters(mapping))
    msg = str(info.value)
    assert f"({op} " in msg and why in msg and "sqlite vector store" in msg
    assert "Use " in msg or "use " in msg


def test_constant_filters_fold() -> None:
    assert translate(None) is EVERYTHING
    assert translate(parse_filters({"id": None})) is NOTHING
    assert translate(parse_filters({"memory": {"gt": 3}})) is NOTHING
    assert translate(parse_filters({"NOT": {"id": None}})) is EVERYTHING
    assert translate(parse_filters({"OR": [{"id": None}, {"hash": {"lt": 1}}]})) is NOTHING


def test_field_names() -> None:
    assert field_name("category") == "category"
    for odd in ("dotted.key", "with space", "ключ", "_private", "1st", "a" * 65):
        name = field_name(odd)
        assert name.startswith("_") and len(name) == 25 and name == field_name(odd)
    assert field_name("dotted.key") != field_name("dotted")


async def test_refused_filter_needs_no_connection_and_changes_nothing() -> None:
    unreachable = QdrantVectorStore(url=f"http://127.0.0.1:{_refused_port()}")
    f = parse_filters({"memory": {"contains": "x"}})
    with pytest.raises(InvalidFilterError):
        await unreachable.list(None, filters=f)
    with pytest.raises(InvalidFilterError):
        await unreachable.count(filters=f)
    with pytest.raises(InvalidFilterError):
        await unreachable.search(VectorQuery(Scope(user_id="u"), np.ones(DIMS, np.float32), filters=f))
    assert unreachable._client._remote is None
    async with QdrantVectorStore(location=":memory:") as store:
        items = [
            make_item(f"r{k}", f"text {k}", random_unit(np.random.default_rng(k), DIMS)) for k in range(3)
        ]
        await store.write(WriteBatch(upserts=items))
        for bad in ({"memory": {"icontains": "TEXT"}}, {"memory": {"gte": "t"}}):
            with pytest.raises(InvalidFilterError):
                await store.list(None, filters=parse_filters(bad))
        assert [i.id for i in await store.list(None)] == [i.id for i in newest_first(items)]


# Numbers where float64 rounds (2**53 and up, the int64 edges), with floats of the same values.
EDGES: list[Any] = [
    0,
    -0.0,
    1,
    1.0,
    1.5,
    -1,
    2**53 - 1,
    2**53,
    2**53 + 1,
    float(2**53),
    2**62,
    -(2**62) - 1,
    2**63 - 2,
    2**63 - 1,
    -(2**63),
    -(2**63) + 1,
    float(2**63),
    -float(2**63),
    9.223372036854775e18,
    1e30,
    -1e30,
    1e300,
    True,
    False,
    "1",
    None,
]


def _edge_items() -> list[Any]:
    rng = np.random.default_rng(5)
    items = []
    for k, v in enumerate(EDGES):
        items.append(
            make_item(
                f"e{k:02d}",
                f"edge {k} [e{k:02d}]",
                random_unit(rng, DIMS),
                created_at=BASE_TIME + timedelta(seconds=k),
                metadata={"v": v, "l": [v, "x"]},
            )
        )
    items.append(make_item("e-none", "no v [e-none]", random_unit(rng, DIMS), metadata={}))
    return items


def _edge_filters() -> list[Any]:
    out: list[Any] = []
    for v in EDGES:
        out += [{"v": v}, {"v": {"ne": v}}]
        if v is not None:
            out.append({"l": {"contains": v}} if not isinstance(v, str) else {"l": {"in": [v]}})
        if isinstance(v, int | float) and not isinstance(v, bool):
            out += [{"v": {op: v}} for op in ("gt", "gte", "lt", "lte")]
    for a, b in itertools.combinations([2**63 - 1, float(2**63), 2**53 + 1, 1.0, None, True], 2):
        out += [{"v": {"in": [a, b]}}, {"v": {"nin": [a, b]}}]
    return out


async def check_edges(store: QdrantVectorStore) -> int:
    """Every edge filter gives exactly what :func:`engram.core.matches` gives, in list and count."""
    items = _edge_items()
    await store.write(WriteBatch(upserts=items))
    failures = []
    for mapping in _edge_filters():
        f = parse_filters(mapping)
        want = [i.id for i in newest_first(items) if matches(f, i)]
        got = [i.id for i in await store.list(None, filters=f, limit=None)]
        if got != want:
            names = {i.id: i.memory.split("[")[1][:-1] for i in items}
            failures.append(f"{mapping!r}: got {[names[g] for g in got]}, want {[names[w] for w in want]}")
        elif await store.count(None, filters=f) != len(want):
            failures.append(f"count {mapping!r}")
    assert not failures, "\n".join(failures[:30])
    return len(_edge_filters())


async def check_random_floats(store: QdrantVectorStore) -> None:
    """Doubles of every magnitude come back as written, and equality and ranges on them agree
    with :func:`engram.core.matches` (a Qdrant server re-reads about one stored double in six one
    unit in the last place away, so the store must not rely on stored floats)."""
    rng = np.random.default_rng(11)
    raw = rng.integers(0, 2**63 - 2**52, size=120, dtype=np.int64)  # bit patterns of finite doubles
    values = [float(x) for x in raw.view(np.float64)] + [float(x) for x in rng.uniform(-1e6, 1e6, 80)]
    items = [
        make_item(
            f"f{k:03d}",
            f"float {k} [f{k:03d}]",
            random_unit(rng, DIMS),
            metadata={"x": v, "l": [v]},
            created_at=BASE_TIME + timedelta(seconds=k),
        )
        for k, v in enumerate(values)
    ]
    await store.write(WriteBatch(upserts=items))
    got = {i.id: i for i in await store.get([i.id for i in items])}
    for want in items:
        assert_same_item(got[want.id], want)
    for v in values[::10] + values[125::10]:
        for mapping in ({"x": v}, {"x": {"gt": v}}, {"x": {"lte": v}}, {"l": {"contains": v}}):
            f = parse_filters(mapping)
            want_ids = {i.id for i in items if matches(f, i)}
            assert {i.id for i in await store.list(None, filters=f, limit=None)} == want_ids, mapping


async def test_random_floats_are_exact_locally() -> None:
    async with QdrantVectorStore(location=":memory:") as store:
        await check_random_floats(store)


async def test_number_edges_are_exact_locally() -> None:
    async with QdrantVectorStore(location=":memory:") as store:
        assert await check_edges(store) > 150


# -- list order over ties ----------------------------------------------------------------------------


async def check_tied_pages(store: QdrantVectorStore) -> None:
    """Pages that cut through runs of equal created_at come out as newest_first says."""
    rng = np.random.default_rng(3)
    items = [
        make_item(
            f"t{k}", f"tied {k}", random_unit(rng, DIMS), created_at=BASE_TIME + timedelta(minutes=k % 3)
        )
        for k in range(20)
    ]
    await store.write(WriteBatch(upserts=items))
    order = [i.id for i in newest_first(items)]
    for offset in range(0, 21, 3):
        for limit in (1, 4, 7):
            got = [i.id for i in await store.list(None, limit=limit, offset=offset)]
            assert got == order[offset : offset + limit], (offset, limit)


async def test_list_pages_through_ties_locally() -> None:
    async with QdrantVectorStore(location=":memory:") as store:
        await check_tied_pages(store)


# -- BM25 ----------------------------------------------------------------------------------------------


async def _lexical_scores(store: QdrantVectorStore, text: str) -> dict[str, float]:
    hits = await store.search(VectorQuery(Scope(user_id="u1"), None, text, None, 10, "lexical"))
    return {h.item.id: h.score for h in hits}


async def test_deletes_leave_local_bm25_statistics_as_if_never_written() -> None:
    """qdrant-client's local mode keeps deleted points in its IDF counts; the store clears their
    sparse vectors first, so scores after a delete equal those of a store that never had them."""
    rng = np.random.default_rng(9)
    x = make_item("x", "echo foxtrot", random_unit(rng, DIMS))
    y = make_item("y", "echo golf", random_unit(rng, DIMS))
    z = make_item("z", "echo hotel", random_unit(rng, DIMS))
    async with (
        QdrantVectorStore(location=":memory:") as churned,
        QdrantVectorStore(location=":memory:") as fresh,
    ):
        await churned.write(WriteBatch(upserts=[x, y, z]))
        await churned.write(WriteBatch(deletes=[x.id], archive=[(z.id, "deleted")]))
        await fresh.write(WriteBatch(upserts=[y]))
        await fresh.write(WriteBatch(upserts=[z]))
        await fresh.write(WriteBatch(archive=[(z.id, "deleted")]))
        got, want = await _lexical_scores(churned, "echo"), await _lexical_scores(fresh, "echo")
        assert list(got) == [y.id] and got[y.id] > 0
        assert got[y.id] == pytest.approx(want[y.id])


async def test_bm25_settings_stay_with_the_collection(tmp_path: Path) -> None:
    item = make_item("a", "alpha beta", random_unit(np.random.default_rng(1), DIMS))
    async with QdrantVectorStore(path=str(tmp_path / "q"), bm25_k1=2.0, bm25_b=0.5, bm25_avg_len=30) as store:
        await store.write(WriteBatch(upserts=[item]))
        before = await _lexical_scores(store, "alpha")
    async with QdrantVectorStore(path=str(tmp_path / "q")) as reopened:  # default settings asked
        assert await _lexical_scores(reopened, "alpha") == pytest.approx(before)
        assert reopened._bm25 == (2.0, 0.5, 30.0)


async def test_a_foreign_collection_is_refused() -> None:
    from qdrant_client import models

    async with QdrantVectorStore(location=":memory:", collection="theirs") as store:
        await store._client.call(
            "create_collection",
            collection_name="theirs",
            vectors_config=models.VectorParams(size=DIMS, distance=models.Distance.DOT),
        )
        with pytest.raises(ConfigurationError, match="not created by engram"):
            await store.count()


async def test_bad_metadata_is_refused_before_anything_is_written() -> None:
    rng = np.random.default_rng(2)
    async with QdrantVectorStore(location=":memory:") as store:
        good = make_item("g", "good", random_unit(rng, DIMS))
        await store.write(WriteBatch(upserts=[good]))
        for bad_meta in ({"n": 2**64}, {"n": float("nan")}, {"when": BASE_TIME}, {"nested": {1: "x"}}):
            bad = make_item("b", "bad", random_unit(rng, DIMS), metadata=bad_meta)
            with pytest.raises(InvalidInputError):
                await store.write(
                    WriteBatch(upserts=[make_item("c", "c", random_unit(rng, DIMS)), bad], deletes=[good.id])
                )
        assert [i.id for i in await store.list(None)] == [good.id]


# -- registry and the engine -------------------------------------------------------------------------


def test_registry_finds_it_by_name_and_by_url() -> None:
    r = Registry()
    by_name = r.create(
        "vector_store", {"provider": "qdrant", "config": {"location": ":memory:", "collection": "c1"}}
    )
    assert isinstance(by_name, QdrantVectorStore) and by_name.config.collection == "c1"
    by_url = r.create("vector_store", "qdrant://127.0.0.1:6333/memories")
    assert isinstance(by_url, QdrantVectorStore) and by_url.config.url == "http://127.0.0.1:6333"
    https = r.create("vector_store", "qdrant+https://example.com/m")
    assert isinstance(https, QdrantVectorStore) and https.config.url == "https://example.com:6333"
    assert isinstance(r.create("vector_store", "qdrant"), QdrantVectorStore)
    with pytest.raises(ConfigurationError):
        r.create("vector_store", {"provider": "qdrant", "config": {"location": "elsewhere"}})


async def test_async_memory_add_and_search_on_local_mode() -> None:
    cfg = {"vector_store": "qdrant:///:memory:", "embedder": {"provider": "hash", "config": {"dims": 64}}}
    async with AsyncMemory(cfg) as memory:
        assert isinstance(memory.vector_store, QdrantVectorStore)
        await memory.add("I run every morning in the park", user_id="alice", infer=False)
        await memory.add("My cat is called Miso", user_id="alice", infer=False, metadata={"topic": "pets"})
        await memory.add("I run marathons", user_id="bob", infer=False)
        res = (await memory.search("running", user_id="alice"))["results"]
        assert res[0]["memory"] == "I run every morning in the park"
        assert "lexical" in res[0]["scores"] and "dense" in res[0]["scores"]
        assert all(r["user_id"] == "alice" for r in res)
        pets = (await memory.search("cat", user_id="alice", filters={"topic": "pets"}))["results"]
        assert [r["memory"] for r in pets] == ["My cat is called Miso"]
        listed = (await memory.get_all(user_id="alice"))["results"]
        assert len(listed) == 2
        await memory.update(pets[0]["id"], "My cat is called Tofu")
        versions = (await memory.get_all(user_id="alice", include_archived=True))["results"]
        assert sorted(r["memory"] for r in versions if "cat" in r["memory"]) == [
            "My cat is called Miso",
            "My cat is called Tofu",
        ]
        assert [e["event"] for e in await memory.history(pets[0]["id"])] == ["ADD", "UPDATE"]
        await memory.delete(pets[0]["id"])
        assert await memory.count(user_id="alice") == 1
        with pytest.raises(InvalidFilterError, match="substrings"):
            await memory.get_all(user_id="alice", filters={"memory": {"contains": "run"}})


# -- against a server -------------------------------------------------------------------------------


@pytest.fixture
async def server_store() -> AsyncIterator[QdrantVectorStore]:
    config = QdrantVectorStore.Config(url=URL, collection=f"engram_test_{uuid.uuid4().hex[:12]}")
    store = QdrantVectorStore(config)
    try:
        yield store
    finally:
        await store.reset()
        await store.aclose()


@pytest.mark.integration
@pytest.mark.skipif(not URL, reason=NEEDS_SERVER)
class TestOnServer:
    async def test_number_edges_are_exact(self, server_store: QdrantVectorStore) -> None:
        assert await check_edges(server_store) > 150

    async def test_random_floats_are_exact(self, server_store: QdrantVectorStore) -> None:
        await check_random_floats(server_store)

    async def test_list_pages_through_ties(self, server_store: QdrantVectorStore) -> None:
        await check_tied_pages(server_store)

    async def test_payload_indexes_and_no_version_warning(self, server_store: QdrantVectorStore) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            await server_store.write(
                WriteBatch(upserts=[make_item("a", "a", random_unit(np.random.default_rng(0), DIMS))])
            )
        info = await server_store._client.call(
            "get_collection", collection_name=server_store.config.collection
        )
        assert set(info.payload_schema) == {
            "id",
            "hash",
            "user_id",
            "agent_id",
            "run_id",
            "keys",
            "archived",
            "created_at",
            "updated_at",
            "archived_at",
        }

    async def test_dropped_collection_is_recreated_on_write(self, server_store: QdrantVectorStore) -> None:
        rng = np.random.default_rng(4)
        await server_store.write(WriteBatch(upserts=[make_item("a", "a", random_unit(rng, DIMS))]))
        other = QdrantVectorStore(server_store.config)
        await other.reset()  # another instance drops the collection behind this one's back
        await other.aclose()
        assert await server_store.count() == 0
        await server_store.write(WriteBatch(upserts=[make_item("b", "b", random_unit(rng, DIMS + 2))]))
        assert [i.id for i in await server_store.list(None)] == [mid("b")]

    @pytest.mark.skipif(not GRPC_PORT, reason=NEEDS_SERVER)
    async def test_grpc_and_rest_see_the_same_data(self, server_store: QdrantVectorStore) -> None:
        items = _edge_items()
        await server_store.write(WriteBatch(upserts=items))
        grpc = QdrantVectorStore(
            server_store.config.model_copy(update={"prefer_grpc": True, "grpc_port": int(GRPC_PORT or 0)})
        )
        try:
            f = parse_filters({"v": {"gt": 2**63 - 2}})
            assert [i.id for i in await grpc.list(None, filters=f)] == [
                i.id for i in await server_store.list(None, filters=f)
            ]
            for a, b in zip(await grpc.get([i.id for i in items]), items, strict=True):
                assert_same_item(a, b)  # metadata by its JSON text: 2**63 - 1024 as a float stays itself
        finally:
            await grpc.aclose()
