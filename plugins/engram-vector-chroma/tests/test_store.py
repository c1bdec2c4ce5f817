"""Chroma-specific checks: config and URLs, laziness, refused filters, errors, the registry, the
record layout (stale keys, unchanged embeddings, chunks, Chroma's leaked array metadata), that
Chroma never embeds anything itself, the server script, and AsyncMemory end to end."""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import chromadb
import chromadb.errors as chroma_errors
import httpx
import hypothesis.strategies as st
import numpy as np
import pydantic
import pytest
from chromadb.config import Settings
from engram.core import (
    AsyncMemory,
    MemoryItem,
    Registry,
    Scope,
    VectorQuery,
    WriteBatch,
    content_hash,
    matches,
    parse_filters,
)
from engram.core.errors import (
    ConfigurationError,
    InvalidFilterError,
    InvalidInputError,
    ProviderError,
    ProviderTimeoutError,
)
from engram.vector.chroma import ChromaConfig, ChromaVectorStore
from engram.vector.chroma import _client as client_module
from engram.vector.chroma._errors import translate
from engram.vector.chroma._layout import float_key
from hypothesis import given

DIMS = 8
REPO = Path(__file__).resolve().parents[3]


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIMS).astype(np.float32)
    return v / np.linalg.norm(v)


def item(label: str, seed: int = 0, user: str = "u1", **kw: Any) -> MemoryItem:
    text = kw.pop("text", f"memory {label}")
    return MemoryItem(id=f"id-{label}", memory=text, hash=content_hash(text), user_id=user,
                      embedding=unit(seed), **kw)


@pytest.fixture
async def store(collection: str) -> AsyncIterator[ChromaVectorStore]:
    s = ChromaVectorStore(path=":memory:", collection=collection)
    yield s
    await s.aclose()


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Every collection call the stores make: ``(method, kwargs)``."""
    seen: list[tuple[str, dict[str, Any]]] = []
    real = client_module.Backend.call

    async def spy(self: Any, collection: Any, method: str, **kwargs: Any) -> Any:
        seen.append((method, kwargs))
        return await real(self, collection, method, **kwargs)

    monkeypatch.setattr(client_module.Backend, "call", spy)
    yield seen


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- config and URLs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "want"),
    [
        ("chroma://localhost:8000/memories", {"mode": "server", "host": "localhost", "port": 8000,
                                              "collection": "memories", "ssl": False}),
        ("chroma://db.example/mem", {"mode": "server", "host": "db.example", "port": 8000, "collection": "mem"}),
        ("chroma+https://db.example:8443/mem", {"mode": "server", "ssl": True, "port": 8443}),
        ("chroma+http://10.0.0.5:9000", {"mode": "server", "ssl": False, "collection": "engram"}),
        ("chroma://[::1]:8000/mem", {"mode": "server", "host": "::1", "where": "http://[::1]:8000"}),
        ("chroma://h:1/c1c?tenant=t1&database=d1&timeout=2.5", {"tenant": "t1", "database": "d1", "timeout": 2.5}),
        ("chroma://h/mem?ssl_verify=false", {"ssl_verify": False}),
        ("chroma://h/mem?ssl_verify=/etc/ca.pem", {"ssl_verify": "/etc/ca.pem"}),
        ("chroma:///:memory:", {"mode": "ephemeral", "path": ":memory:", "collection": "engram"}),
        ("chroma://:memory:?collection=abc", {"mode": "ephemeral", "collection": "abc"}),
        ("chroma:///data/chroma?collection=my.mem", {"mode": "persistent", "path": "data/chroma",
                                                     "collection": "my.mem"}),
        ("chroma:////var/lib/engram/chroma", {"mode": "persistent", "path": "/var/lib/engram/chroma"}),
        ("chroma:///my%20dir", {"mode": "persistent", "path": "my dir"}),
    ],
)
def test_from_url(url: str, want: dict[str, Any]) -> None:
    s = ChromaVectorStore.from_url(url)
    for name, value in want.items():
        assert getattr(s.config, name) == value, name
    assert s.capabilities == (frozenset() if s.config.mode == "ephemeral" else frozenset({"persistent"}))


def test_token_in_url_is_secret_and_sent_as_bearer() -> None:
    s = ChromaVectorStore.from_url("chroma://:s3cr%2Ft@localhost:8000/mem")
    assert s.config.token is not None and s.config.token.get_secret_value() == "s3cr/t"
    assert "s3cr" not in repr(s.config) and "s3cr" not in repr(s)
    assert s.config.http_headers() == {"Authorization": "Bearer s3cr/t"}
    s = ChromaVectorStore.from_url("chroma://:tok@h/mem?token_header=X-Chroma-Token")
    assert s.config.http_headers() == {"X-Chroma-Token": "tok"}
    cfg = ChromaConfig(host="h", headers={"X-Tenant-Key": "abc"}, token="t")  # type: ignore[arg-type]
    assert cfg.http_headers() == {"X-Tenant-Key": "abc", "Authorization": "Bearer t"}
    assert "abc" not in repr(cfg)


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///x.db", "chroma://", "chroma:///", "chroma+https:///data", "chroma://h/a/b",
        "chroma://h:99999/mem", "chroma://h/mem?collection=other", "chroma://h/mem?token=x",
        "chroma://h/x", "chroma://h/-bad-", "chroma://h/mem?ssl=true", "chroma://h/mem?nope=1",
        "chroma://:memory:/extra", "chroma://h/mem?token_header=Cookie",
    ],
)
def test_bad_urls(url: str) -> None:
    with pytest.raises(ConfigurationError):
        ChromaVectorStore.from_url(url)


def test_config_checks() -> None:
    with pytest.raises(pydantic.ValidationError, match="not both"):
        ChromaConfig(path="x", host="h")
    with pytest.raises(pydantic.ValidationError, match="server"):
        ChromaConfig(path=":memory:", token="t")  # type: ignore[arg-type]
    with pytest.raises(pydantic.ValidationError):
        ChromaConfig(path=":memory:", dims=3)  # type: ignore[call-arg]
    with pytest.raises(pydantic.ValidationError, match="Chroma's rule"):
        ChromaConfig(path=":memory:", collection="ab")
    assert ChromaConfig().mode == "server" and ChromaConfig().where == "http://localhost:8000"


# -- laziness and errors -------------------------------------------------------------------------


async def test_connects_lazily(tmp_path: Path, collection: str) -> None:
    folder = tmp_path / "sub" / "chroma"
    s = ChromaVectorStore(path=str(folder), collection=collection)
    assert s._backend is None and not folder.exists(), "the constructor must not touch the disk"
    assert await s.count() == 0
    assert folder.exists() and s._backend is not None
    assert await s.list(None) == [], "reads create no collection"
    backend = s._backend
    assert (await backend.get_collection(collection)) is None
    await s.aclose()
    with pytest.raises(ProviderError, match="closed"):
        await s.count()


async def test_unreachable_server_is_a_provider_error_quickly(collection: str) -> None:
    port = free_port()  # nothing listens there: connection refused
    s = ChromaVectorStore(host="127.0.0.1", port=port, collection=collection, timeout=10)
    start = time.monotonic()
    with pytest.raises(ProviderError, match=f"127.0.0.1:{port}") as info:
        await s.count()
    assert time.monotonic() - start < 5
    assert info.value.provider == "chroma" and info.value.__cause__ is not None
    with pytest.raises(ProviderError):
        await s.write(WriteBatch(upserts=[item("a")]))
    await s.aclose()


async def test_silent_server_times_out(collection: str) -> None:
    with socket.socket() as listener:  # accepts connections (the backlog), never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        s = ChromaVectorStore(host="127.0.0.1", port=port, collection=collection, timeout=0.5)
        start = time.monotonic()
        with pytest.raises(ProviderTimeoutError):
            await s.count()
        assert time.monotonic() - start < 5
        await s.aclose()


async def test_other_settings_on_the_same_folder_is_a_configuration_error(tmp_path: Path, collection: str) -> None:
    mine = chromadb.PersistentClient(str(tmp_path), Settings(anonymized_telemetry=False, allow_reset=True))
    s = ChromaVectorStore(path=str(tmp_path), collection=collection)
    try:
        with pytest.raises(ConfigurationError, match="other settings"):
            await s.count()
    finally:
        await s.aclose()
        mine.close()
    again = ChromaVectorStore(path=str(tmp_path), collection=collection)  # once that client is closed
    assert await again.count() == 0
    await again.aclose()


@pytest.mark.parametrize(
    ("exc", "want", "text"),
    [
        (chroma_errors.InvalidArgumentError("Collection expecting embedding with dimension of 2, got 3"),
         InvalidInputError, "dimension"),
        (chroma_errors.ChromaAuthError("no"), ProviderError, "not authorised"),
        (chroma_errors.AuthorizationError("no"), ProviderError, "not authorised"),
        (httpx.ConnectError("refused"), ProviderError, "cannot reach"),
        (ValueError("Could not connect to a Chroma server. Are you sure it is running?"), ProviderError, "cannot reach"),
        (httpx.ReadTimeout("slow"), ProviderTimeoutError, "in time"),
        (TimeoutError(), ProviderTimeoutError, "in time"),
        (chroma_errors.InternalError("boom"), ProviderError, "InternalError: boom"),
    ],
)
def test_chromadb_errors_become_engram_errors(exc: Exception, want: type, text: str) -> None:
    got = translate(exc, "get", "http://h:8000")
    assert type(got) is want and text in str(got)
    if isinstance(got, ProviderError):
        assert got.provider == "chroma"


async def test_foreign_collection_is_refused(tmp_path: Path, collection: str) -> None:
    raw = chromadb.PersistentClient(str(tmp_path), Settings(anonymized_telemetry=False))
    raw.create_collection(collection, embedding_function=None)
    s = ChromaVectorStore(path=str(tmp_path), collection=collection)
    try:
        with pytest.raises(ConfigurationError, match="not created by engram"):
            await s.count()
        with pytest.raises(ConfigurationError, match="not created by engram"):
            await s.write(WriteBatch(upserts=[item("a")]))
        assert raw.get_collection(collection, embedding_function=None).count() == 0
    finally:
        await s.aclose()
        raw.close()


@pytest.mark.filterwarnings("ignore:legacy embedding function config:DeprecationWarning")
async def test_collection_records_cosine_dims_and_no_embedding_function(store: ChromaVectorStore) -> None:
    await store.write(WriteBatch(upserts=[item("a")]))
    col = await store._collection()
    assert col.metadata == {"engram:format": 1, "engram:dims": DIMS}
    assert col.configuration["hnsw"]["space"] == "cosine"
    assert col.configuration.get("embedding_function") is None
    settings = store._backend.client.get_settings()  # type: ignore[union-attr]
    assert settings.anonymized_telemetry is False


# -- filters Chroma cannot evaluate exactly --------------------------------------------------------


@pytest.mark.parametrize(
    ("mapping", "op", "field", "capability"),
    [
        ({"memory": {"contains": "Paris"}}, "contains", "memory", "substring_filters"),
        ({"tags": {"icontains": "WORK"}}, "icontains", "tags", "substring_filters"),
        ({"NOT": {"OR": [{"a": 1}, {"city": {"contains": "ar"}}]}}, "contains", "city", "substring_filters"),
        ({"category": {"gte": "m"}}, "gte", "category", "string_range_filters"),
        ({"user_id": {"lt": "u2"}}, "lt", "user_id", "string_range_filters"),
    ],
)
async def test_refused_filters_name_operator_field_and_why(
    store: ChromaVectorStore, mapping: dict[str, Any], op: str, field: str, capability: str
) -> None:
    await store.write(WriteBatch(upserts=[item("a", metadata={"tags": ["work"], "city": "Paris", "category": "z"})]))
    f = parse_filters(mapping)
    calls = [
        lambda: store.list(None, filters=f),
        lambda: store.count(None, filters=f),
        lambda: store.search(VectorQuery(Scope(user_id="u1"), unit(0), None, f)),
        lambda: store.search(VectorQuery(Scope(user_id="u1"), None, "Paris", f, mode="lexical")),
    ]
    for call in calls:
        with pytest.raises(InvalidFilterError) as info:
            await call()
        text = str(info.value)
        assert repr(op) in text and repr(field) in text and capability in text
        assert "Chroma" in text
    assert await store.count() == 1
    assert [i.id for i in await store.list(None)] == ["id-a"]
    assert "substring_filters" not in store.capabilities and "string_range_filters" not in store.capabilities


async def test_refused_filter_before_connecting(collection: str) -> None:
    s = ChromaVectorStore(host="127.0.0.1", port=free_port(), collection=collection)
    with pytest.raises(InvalidFilterError):
        await s.count(filters=parse_filters({"k": {"contains": "x"}}))
    assert s._backend is None
    await s.aclose()


async def test_exact_numbers_and_elements(store: ChromaVectorStore) -> None:
    """64-bit integers are never rounded through floats, ranges with float bounds over integers
    and with integer bounds over floats are exact, list elements compare by JSON type."""
    big = 2**63 - 1
    items = [
        item("big", 1, metadata={"n": big, "xs": [big, 0.5, True, "s", None, [1], {"a": 1}]}),
        item("near", 2, metadata={"n": big - 1, "xs": [-0.0, 2**70]}),
        item("float", 3, metadata={"n": 9.223372036854776e18, "xs": [1.0]}),  # 2**63 as a float
        item("small", 4, metadata={"n": 2, "xs": [2**53 + 1]}),
    ]
    await store.write(WriteBatch(upserts=items))
    cases = {
        "n = 2**63-1": ({"n": big}, {"big"}),
        "n > 2**63-2": ({"n": {"gt": big - 1}}, {"big", "float"}),
        "n >= 2**63 (float)": ({"n": {"gte": 9.223372036854776e18}}, {"float"}),
        "n > 1.5": ({"n": {"gt": 1.5}}, {"big", "near", "float", "small"}),
        "n < 2.5": ({"n": {"lt": 2.5}}, {"small"}),
        "n <= 2**53+1 (no float holds it)": ({"n": {"lte": 2**53 + 1}}, {"small"}),
        "NOT n <= 2**63-2": ({"NOT": {"n": {"lte": big - 1}}}, {"big", "float"}),
        "xs contains 0": ({"xs": {"contains": 0}}, {"near"}),
        "xs contains 1": ({"xs": {"contains": 1}}, {"float"}),
        "xs contains True": ({"xs": {"contains": True}}, {"big"}),
        "NOT xs contains True": ({"NOT": {"xs": {"contains": True}}}, {"near", "float", "small"}),
        "xs contains 2**70 (a float)": ({"xs": {"contains": float(2**70)}}, {"near"}),
        "xs contains 2**63-1": ({"xs": {"contains": big}}, {"big"}),
        "xs contains 2**53+1": ({"xs": {"contains": 2**53 + 1}}, {"small"}),
        "xs contains 2**53 (float)": ({"xs": {"contains": float(2**53)}}, set()),
    }
    for name, (mapping, want) in cases.items():
        f = parse_filters(mapping)
        assert {i.id[3:] for i in items if matches(f, i)} == want, f"the test's own truth for {name}"
        got = {i.id[3:] for i in await store.list(None, filters=f, limit=None)}
        assert got == want, f"{name}: got {sorted(got)}, want {sorted(want)}"


async def test_floats_one_ulp_apart_are_told_apart(store: ChromaVectorStore) -> None:
    """Chroma's float comparisons can be one ulp off; filters on float keys are exact."""
    values = {}
    for k, b in enumerate([123456789.125, 2.0**40, 1e300, -1e300, 1714565100.000001, 5e-324, 0.0]):
        values[f"eq{k}"], values[f"up{k}"], values[f"dn{k}"] = b, math.nextafter(b, math.inf), math.nextafter(b, -math.inf)
    items = [item(name, j, metadata={"x": v}) for j, (name, v) in enumerate(values.items())]
    await store.write(WriteBatch(upserts=items))
    for k in range(7):
        b = values[f"eq{k}"]
        for mapping in ({"x": b}, {"x": {"gt": b}}, {"x": {"lte": b}}, {"x": {"ne": b}}, {"x": {"in": [b, 7.5]}}):
            f = parse_filters(mapping)
            want = {i.id for i in items if matches(f, i)}
            assert {i.id for i in await store.list(None, filters=f, limit=None)} == want, mapping


@given(st.floats(allow_nan=False, allow_infinity=False), st.floats(allow_nan=False, allow_infinity=False))
def test_float_keys_order_like_floats(a: float, b: float) -> None:
    ka, kb = float_key(a), float_key(b)
    assert -(2**63) <= ka < 2**63
    assert (ka < kb) == (a < b) and (ka == kb) == (a == b)


async def test_bad_items_are_refused_and_nothing_written(store: ChromaVectorStore) -> None:
    await store.write(WriteBatch(upserts=[item("a")]))
    bad = {
        "64-bit": item("b", metadata={"n": 2**70 + 1}),  # an integer no float holds
        "JSON": item("c", metadata={"x": float("nan")}),
        "non-empty string, got ''": dataclasses.replace(item("d"), id=""),
        "user_id must be None or a non-empty string": item("e", user=""),
        "created_at must be a datetime": dataclasses.replace(item("f"), created_at="2024-05-01"),  # type: ignore[arg-type]
        "string keys": item("g", metadata={1: "x"}),
    }
    for message, it in bad.items():
        with pytest.raises(InvalidInputError, match=message):
            await store.write(WriteBatch(upserts=[item("ok"), it], deletes=["id-a"]))
    assert [i.id for i in await store.list(None)] == ["id-a"]


async def test_naive_times_are_taken_as_utc(store: ChromaVectorStore) -> None:
    naive = datetime(2024, 5, 1, 12, 30)
    await store.write(WriteBatch(upserts=[item("n", created_at=naive, updated_at=naive)]))
    (got,) = await store.get(["id-n"])
    assert got.created_at == got.updated_at == naive.replace(tzinfo=UTC)
    f = parse_filters({"created_at": {"gte": "2024-05-01T12:30:00Z"}, "updated_at": "2024-05-01T12:30:00+00:00"})
    assert [i.id for i in await store.list(None, filters=f)] == ["id-n"]


# -- the record layout ---------------------------------------------------------------------------


async def test_replaced_version_leaves_no_stale_projection(store: ChromaVectorStore) -> None:
    await store.write(WriteBatch(upserts=[item("a", metadata={"a": 1, "tags": [5, True], "odd key": "x"})]))
    await store.write(WriteBatch(upserts=[item("a", seed=9, metadata={"b": 2})]))
    for mapping in ({"a": 1}, {"tags": {"contains": 5}}, {"odd key": "x"}, {"a": {"ne": None}}):
        assert await store.count(None, filters=parse_filters(mapping)) == 0, mapping
    assert await store.count(None, filters=parse_filters({"b": 2})) == 1
    raw = await store._read("raw", "get", ids=["id-a"], include=["metadatas"])
    keys = set(raw["metadatas"][0])
    assert not any(k.startswith(("k:a:", "k:tags:", "x:")) for k in keys), keys


async def test_unchanged_embedding_is_a_metadata_only_update(
    store: ChromaVectorStore, calls: list[tuple[str, dict[str, Any]]]
) -> None:
    await store.write(WriteBatch(upserts=[item("a", 1), item("b", 2)]))
    calls.clear()
    await store.write(WriteBatch(upserts=[item("a", 1, text="new text", metadata={"k": 1}), item("b", 3)]))
    methods = [(m, kw.get("ids")) for m, kw in calls]
    assert ("update", ["id-a"]) in methods and ("upsert", ["id-b"]) in methods
    assert all("embeddings" not in kw and "documents" not in kw for m, kw in calls if m == "update")
    (a,) = await store.get(["id-a"])
    assert a.memory == "new text" and a.metadata == {"k": 1}
    hits = await store.search(VectorQuery(Scope(user_id="u1"), unit(3), limit=1))
    assert [h.item.id for h in hits] == ["id-b"] and hits[0].score == pytest.approx(1.0, abs=1e-5)


async def test_batches_are_split_by_the_clients_max_batch_size(
    store: ChromaVectorStore, calls: list[tuple[str, dict[str, Any]]]
) -> None:
    await store.write(WriteBatch(upserts=[item("first")]))
    store._batch = 3
    calls.clear()
    items = [item(f"n{k}", k) for k in range(8)]
    await store.write(WriteBatch(upserts=items, deletes=[f"gone{k}" for k in range(4)]))
    sizes = {m: [len(kw["ids"]) for mm, kw in calls if mm == m] for m in ("delete", "get", "upsert")}
    assert sizes == {"delete": [3, 1], "get": [3, 3, 2], "upsert": [3, 3, 2]}
    assert await store.count() == 9


async def test_leaked_array_metadata_from_a_deleted_collection_is_harmless(tmp_path: Path, collection: str) -> None:
    """Chroma 1.5.9 leaves a deleted collection's array metadata behind, and new records reuse its
    row ids (chroma-core/chroma#7594); the store neither reads nor writes Chroma arrays."""
    raw = chromadb.PersistentClient(str(tmp_path), Settings(anonymized_telemetry=False))
    ghost = raw.create_collection("ghost-collection", embedding_function=None)
    ghost.add(ids=["g1", "g2"], embeddings=[[1.0] * DIMS, [0.5] * DIMS],
              metadatas=[{"k:tags:li": [1], "k:tags:e:i1": [True]}, {"k:tags:ls": ["a"]}])
    raw.delete_collection("ghost-collection")
    raw.close()
    s = ChromaVectorStore(path=str(tmp_path), collection=collection)
    try:
        await s.write(WriteBatch(upserts=[item("a", 1, metadata={"tags": ["x"]}), item("b", 2)]))
        assert await s.count(None, filters=parse_filters({"tags": {"contains": 1}})) == 0
        assert await s.count(None, filters=parse_filters({"NOT": {"tags": {"contains": 1}}})) == 2
        assert [i.metadata for i in await s.get(["id-a", "id-b"])] == [{"tags": ["x"]}, {}]
    finally:
        await s.aclose()


async def test_lexical_is_empty_and_hybrid_is_dense(store: ChromaVectorStore) -> None:
    await store.write(WriteBatch(upserts=[item(f"x{k}", k) for k in range(5)]))
    scope = Scope(user_id="u1")
    assert await store.search(VectorQuery(scope, None, "memory", mode="lexical")) == []
    dense = await store.search(VectorQuery(scope, unit(2), "memory", mode="dense", limit=3))
    hybrid = await store.search(VectorQuery(scope, unit(2), "memory", mode="hybrid", limit=3))
    assert [(h.item.id, h.score, h.scores) for h in hybrid] == [(h.item.id, h.score, h.scores) for h in dense]
    assert dense[0].item.id == "id-x2" and set(dense[0].scores) == {"dense"}
    with pytest.raises(InvalidInputError, match="unknown search mode"):
        await store.search(VectorQuery(scope, unit(2), mode="fuzzy"))  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="embedding"):
        await store.search(VectorQuery(scope, None, "memory", mode="hybrid"))


async def test_list_rejects_negative_paging(store: ChromaVectorStore) -> None:
    with pytest.raises(InvalidInputError):
        await store.list(None, limit=-1)
    with pytest.raises(InvalidInputError):
        await store.list(None, offset=-2)


# -- registry ------------------------------------------------------------------------------------


def test_registry_finds_chroma_by_name_and_url(collection: str) -> None:
    reg = Registry()
    assert "chroma" in reg.names("vector_store")
    assert reg.load("vector_store", "chroma") is ChromaVectorStore
    s = reg.create("vector_store", f"chroma:///:memory:?collection={collection}")
    assert isinstance(s, ChromaVectorStore) and s.config.mode == "ephemeral"
    s = reg.create("vector_store", "chroma+https://db.example/mem")
    assert isinstance(s, ChromaVectorStore) and s.config.ssl and s.config.collection == "mem"
    s = reg.create("vector_store", {"provider": "chroma", "config": {"path": ":memory:", "collection": collection}})
    assert isinstance(s, ChromaVectorStore) and s.config.collection == collection
    s = reg.create("vector_store", "chroma")
    assert isinstance(s, ChromaVectorStore) and s.config.where == "http://localhost:8000"
    with pytest.raises(ConfigurationError):
        reg.create("vector_store", {"provider": "chroma", "config": {"path": ":memory:", "nope": 1}})
    with pytest.raises(ConfigurationError):
        reg.create("vector_store", "chroma://h/x")


# -- Chroma never embeds -------------------------------------------------------------------------


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Network beyond loopback refused, the ONNX model cache pointed at an empty folder, and
    Chroma's embedding functions replaced by recorders that fail."""
    from chromadb.utils.embedding_functions import DefaultEmbeddingFunction
    from chromadb.utils.embedding_functions.onnx_mini_lm_l6_v2 import ONNXMiniLM_L6_V2

    record: dict[str, Any] = {"calls": [], "connects": [], "cache": tmp_path / "onnx-cache"}
    monkeypatch.setattr(ONNXMiniLM_L6_V2, "DOWNLOAD_PATH", record["cache"])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def refuse(name: str) -> Any:
        def embed(self: Any, *args: Any, **kwargs: Any) -> Any:
            record["calls"].append(name)
            raise AssertionError(f"Chroma tried to embed with {name}")

        return embed

    monkeypatch.setattr(DefaultEmbeddingFunction, "__call__", refuse("DefaultEmbeddingFunction"))
    monkeypatch.setattr(ONNXMiniLM_L6_V2, "__call__", refuse("ONNXMiniLM_L6_V2"))
    monkeypatch.setattr(ONNXMiniLM_L6_V2, "_download_model_if_not_exists", refuse("download"))
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else address
        if self.family in (socket.AF_INET, socket.AF_INET6) and host not in ("127.0.0.1", "::1", "localhost"):
            record["connects"].append(address)
            raise OSError(f"network access to {address!r} is not allowed in this test")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    yield record


@pytest.mark.parametrize("mode", ["ephemeral", "persistent", pytest.param("server", marks=pytest.mark.integration)])
async def test_chroma_never_loads_or_downloads_an_embedding_model(
    mode: str, no_model: dict[str, Any], tmp_path: Path, collection: str, request: pytest.FixtureRequest
) -> None:
    if mode == "server":
        host, port = request.getfixturevalue("server")
        config = ChromaConfig(host=host, port=port, collection=collection)
    else:
        config = ChromaConfig(path=":memory:" if mode == "ephemeral" else str(tmp_path / "db"), collection=collection)
    s = ChromaVectorStore(config)
    scope = Scope(user_id="u1")
    try:
        await s.write(WriteBatch(upserts=[item("a", 1), item("b", 2, metadata={"k": [1]})]))
        await s.write(WriteBatch(upserts=[item("a", 1, text="same vector, new text")], deletes=["id-b"]))
        assert [i.memory for i in await s.get(["id-a"])] == ["same vector, new text"]
        assert await s.count(scope, filters=parse_filters({"k": {"contains": 1}})) == 0
        for mode_ in ("dense", "hybrid"):
            assert [h.item.id for h in await s.search(VectorQuery(scope, unit(1), "a question", mode=mode_))] == ["id-a"]
        assert await s.search(VectorQuery(scope, None, "a question", mode="lexical")) == []
        with pytest.raises(InvalidInputError, match="embeds nothing"):
            await s.search(VectorQuery(scope, None, "a question without an embedding", mode="dense"))
        if mode == "persistent":
            await s.aclose()
            s = ChromaVectorStore(config)
            assert await s.count() == 1
        await s.reset()
    finally:
        await s.aclose()
    assert no_model["calls"] == [] and no_model["connects"] == []
    assert not no_model["cache"].exists(), "Chroma created its ONNX model cache"


# -- the server script ---------------------------------------------------------------------------


def test_server_script_starts_and_stops_a_real_chroma(tmp_path: Path) -> None:
    script = REPO / "scripts" / "chroma_server.py"
    state = tmp_path / "state"
    run = [sys.executable, str(script)]
    out = subprocess.run([*run, "start", "--state", str(state)], capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr
    pid = int((state / "chroma.pid").read_text())
    try:
        line = out.stdout.strip()
        assert line.startswith("ENGRAM_TEST_CHROMA_URL=http://127.0.0.1:")
        assert (state / "chroma.env").read_text().strip() == line
        environ = Path(f"/proc/{pid}/environ")
        if environ.exists():
            assert b"ANONYMIZED_TELEMETRY=False" in environ.read_bytes().split(b"\0")
        url = line.split("=", 1)[1]
        again = subprocess.run([*run, "start", "--state", str(state)], capture_output=True, text=True, timeout=30)
        assert again.stdout.strip() == line and int((state / "chroma.pid").read_text()) == pid

        async def use() -> int:
            port = int(url.rsplit(":", 1)[1])
            async with ChromaVectorStore(host="127.0.0.1", port=port, collection="script-check") as s:
                await s.write(WriteBatch(upserts=[item("a")]))
                n = await s.count()
                await s.reset()
                return n

        assert anyio.run(use) == 1
        assert (state / "data").is_dir() and (state / "chroma.log").stat().st_size > 0
    finally:
        stop = subprocess.run([*run, "stop", "--state", str(state)], capture_output=True, text=True, timeout=60)
    assert stop.returncode == 0, stop.stderr
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.1)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not (state / "chroma.pid").exists() and not (state / "chroma.env").exists()
    again = subprocess.run([*run, "stop", "--state", str(state)], capture_output=True, text=True, timeout=30)
    assert again.returncode == 0, "stop is harmless when nothing runs"


# -- server mode specifics -----------------------------------------------------------------------


@pytest.mark.integration
async def test_server_clients_keep_their_own_http_pool(server: tuple[str, int], collection: str) -> None:
    one = ChromaVectorStore(host=server[0], port=server[1], collection=collection, headers={"X-Who": "one"})
    two = ChromaVectorStore(host=server[0], port=server[1], collection=collection, headers={"X-Who": "two"})
    try:
        await one.write(WriteBatch(upserts=[item("a")]))
        assert await two.count() == 1
        pools = [s._backend._own for s in (one, two)]  # type: ignore[union-attr]
        assert all(pools) and pools[0] is not pools[1]
        (p1,), (p2,) = (list(p.values()) for p in pools)
        assert p1 is not p2 and p1.headers["X-Who"] == "one" and p2.headers["X-Who"] == "two"
        await one.aclose()
        assert p1.is_closed and not p2.is_closed
        assert await two.count() == 1
    finally:
        await one.aclose()
        await two.reset()
        await two.aclose()


# -- AsyncMemory end to end ----------------------------------------------------------------------


async def test_async_memory_add_and_search(collection: str) -> None:
    async with AsyncMemory(
        {"vector_store": f"chroma:///:memory:?collection={collection}", "embedder": "hash"}
    ) as memory:
        for text in ("Alice lives in Paris", "Alice works as a pilot", "Bob likes green tea"):
            await memory.add(text, user_id="alice" if text.startswith("Alice") else "bob", infer=False,
                             metadata={"source": "test"})
        found = await memory.search("where does Alice live", user_id="alice", limit=5)
        texts = [r["memory"] for r in found["results"]]
        assert texts[0] == "Alice lives in Paris" and set(texts) == {"Alice lives in Paris", "Alice works as a pilot"}
        assert "lexical" not in found.get("missing", [])
        listed = await memory.get_all(user_id="alice", filters={"source": "test"})
        assert len(listed["results"]) == 2
        assert (await memory.get_all(user_id="bob"))["results"][0]["memory"] == "Bob likes green tea"
        with pytest.raises(InvalidFilterError):
            await memory.get_all(user_id="alice", filters={"source": {"contains": "te"}})
