"""What can be checked without a Neo4j server: config, URLs, secrets, laziness, connection errors,
validation before any I/O, value conversions and the registry."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from engram.core import Entity, GraphBatch, GraphStore, Registry, Relation, Scope
from engram.core.errors import ConfigurationError, InvalidInputError, ProviderError
from engram.graph.neo4j import Neo4jGraphStore
from engram.graph.neo4j import _store as impl
from pydantic import ValidationError

SECRET = "s3cret-Pa55"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Listener:
    """A TCP server on 127.0.0.1 that counts connections and closes each at once."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


# -- config and URLs -------------------------------------------------------------------------


def test_config_defaults() -> None:
    c = Neo4jGraphStore.Config()
    assert c.uri == "bolt://localhost:7687" and c.username == "neo4j" and c.password is None
    assert c.database is None and c.connection_timeout > 0 and c.max_connection_pool_size >= 1
    assert Neo4jGraphStore.capabilities == frozenset({"persistent", "entity_vectors"})


def test_config_rejects_unknown_fields_and_bad_values() -> None:
    with pytest.raises(ValidationError):
        Neo4jGraphStore.Config(url="bolt://h")  # type: ignore[call-arg]
    for uri in ("http://h:7687", "h:7687", "neo4j://", "bolt://h:7687/db", "bolt://h?x=1"):
        with pytest.raises(ValidationError):
            Neo4jGraphStore.Config(uri=uri)
    with pytest.raises(ValidationError):
        Neo4jGraphStore.Config(connection_timeout=0)
    with pytest.raises(ValidationError):
        Neo4jGraphStore.Config(max_connection_pool_size=0)
    with pytest.raises(ConfigurationError, match="not both"):
        Neo4jGraphStore(Neo4jGraphStore.Config(), uri="bolt://h")


def test_keyword_fields() -> None:
    store = Neo4jGraphStore(uri="neo4j+s://x.databases.neo4j.io", password=SECRET, database="engram")
    assert store.config.uri == "neo4j+s://x.databases.neo4j.io"
    assert store.config.password is not None and store.config.password.get_secret_value() == SECRET


@pytest.mark.parametrize(
    ("url", "uri", "user", "password", "database"),
    [
        ("neo4j://alice:pw@db.example:7688/memories", "neo4j://db.example:7688", "alice", "pw", "memories"),
        ("neo4j://db.example", "neo4j://db.example", "neo4j", None, None),
        ("neo4j://", "neo4j://localhost", "neo4j", None, None),
        ("bolt://localhost:7687", "bolt://localhost:7687", "neo4j", None, None),
        ("bolt+s://u:p@h:7687/", "bolt+s://h:7687", "u", "p", None),
        ("bolt+ssc://h", "bolt+ssc://h", "neo4j", None, None),
        (
            "neo4j+s://neo4j:a%40b%3Ac%2Fd@abc.databases.neo4j.io/neo4j",
            "neo4j+s://abc.databases.neo4j.io",
            "neo4j",
            "a@b:c/d",
            "neo4j",
        ),
        ("neo4j+ssc://h:1/x", "neo4j+ssc://h:1", "neo4j", None, "x"),
        ("neo4j://[::1]:7687", "neo4j://[::1]:7687", "neo4j", None, None),
    ],
)
def test_from_url(url: str, uri: str, user: str, password: str | None, database: str | None) -> None:
    c = Neo4jGraphStore.from_url(url).config
    assert c.uri == uri and c.username == user and c.database == database
    assert (c.password.get_secret_value() if c.password else None) == password


def test_from_url_query_fields() -> None:
    c = Neo4jGraphStore.from_url(
        "neo4j://h/db?connection_timeout=2.5&max_connection_pool_size=7&max_connection_pool_size=9"
    ).config
    assert c.connection_timeout == 2.5 and c.max_connection_pool_size == 9, "the last value wins"


@pytest.mark.parametrize(
    "url",
    [
        f"http://u:{SECRET}@h",
        f"neo4j://u:{SECRET}@h?bogus=1",
        f"neo4j://u:{SECRET}@h?connection_timeout=-1",
        f"neo4j://u:{SECRET}@h:notaport",
    ],
)
def test_from_url_errors_hide_the_password(url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Neo4jGraphStore.from_url(url)
    assert SECRET not in str(info.value) and "bad neo4j URL" in str(info.value)
    assert info.value.__cause__ is None or SECRET not in str(info.value.__cause__)


def test_credentials_in_uri_move_to_their_fields() -> None:
    c = Neo4jGraphStore.Config(uri=f"bolt://bob:{SECRET}@h:7687")
    assert c.uri == "bolt://h:7687" and c.username == "bob"
    assert c.password is not None and c.password.get_secret_value() == SECRET
    with pytest.raises(ValidationError) as info:
        Neo4jGraphStore.Config(uri=f"http://bob:{SECRET}@h:7687")
    assert SECRET not in str(info.value)


def test_secrets_not_shown() -> None:
    store = Neo4jGraphStore.from_url(f"neo4j://bob:{SECRET}@h:7687/db")
    for text in (
        repr(store),
        str(store),
        repr(store.config),
        str(store.config),
        store.config.model_dump_json(),
    ):
        assert SECRET not in text
    assert "neo4j://h:7687" in repr(store) and "'db'" in repr(store)


# -- registry --------------------------------------------------------------------------------


def test_registry_finds_neo4j_through_entry_points() -> None:
    registry = Registry()
    assert "neo4j" in registry.names("graph_store")
    assert registry.load("graph_store", "neo4j") is Neo4jGraphStore
    store = registry.create("graph_store", f"neo4j://bob:{SECRET}@h:7687/db")
    assert isinstance(store, Neo4jGraphStore) and isinstance(store, GraphStore)
    assert store.config.database == "db" and store._driver is None
    store = registry.create(
        "graph_store", {"provider": "neo4j", "config": {"uri": "bolt://h", "database": "x"}}
    )
    assert isinstance(store, Neo4jGraphStore) and store.config.uri == "bolt://h"
    with pytest.raises(ConfigurationError):
        registry.create("graph_store", {"provider": "neo4j", "config": {"nope": 1}})


# -- laziness and connection errors ----------------------------------------------------------


async def test_constructing_opens_no_connection(listener: Listener) -> None:
    store = Neo4jGraphStore(uri=f"bolt://127.0.0.1:{listener.port}", password=SECRET, connection_timeout=2)
    Neo4jGraphStore.from_url(f"neo4j://u:{SECRET}@127.0.0.1:{listener.port}")
    Registry().create("graph_store", f"neo4j://127.0.0.1:{listener.port}")
    time.sleep(0.3)
    assert listener.accepted == 0 and store._driver is None, "a store must not connect before its first use"
    with pytest.raises(ProviderError) as info:
        await store.entities(Scope(user_id="u1"))
    assert listener.accepted >= 1, "the first call connects"
    assert SECRET not in str(info.value)
    assert store._driver is None, "a failed connect leaves nothing half-open"
    await store.aclose()


@pytest.mark.parametrize("scheme", ["bolt", "neo4j"])
async def test_closed_port_fails_promptly_with_the_uri(scheme: str) -> None:
    port = free_port()
    store = Neo4jGraphStore(
        uri=f"{scheme}://127.0.0.1:{port}", username="bob", password=SECRET, connection_timeout=5
    )
    start = time.monotonic()
    with pytest.raises(ProviderError) as info:
        await store.apply(GraphBatch(entities=[Entity("Alice", user_id="u1")]))
    elapsed = time.monotonic() - start
    message = str(info.value)
    assert elapsed < 5, f"took {elapsed:.1f}s to report a refused connection"
    assert f"{scheme}://127.0.0.1:{port}" in message and "cannot reach" in message, message
    assert SECRET not in message and info.value.provider == "neo4j"
    assert info.value.__cause__ is not None, "the driver's exception is kept as the cause"
    with pytest.raises(ProviderError):  # still failing, still no half-open driver
        await store.relations(Scope(user_id="u1"))
    await store.aclose()
    await store.aclose()


async def test_async_with_closes() -> None:
    async with Neo4jGraphStore(uri=f"bolt://127.0.0.1:{free_port()}") as store:
        assert store._driver is None
    assert store._driver is None


# -- validation before any I/O (the port is closed: reaching the server would be a ProviderError) --


@pytest.fixture
def offline() -> Neo4jGraphStore:
    return Neo4jGraphStore(uri=f"bolt://127.0.0.1:{free_port()}", connection_timeout=2)


def _ent(name: str, dims: int | None = 3, **kw: object) -> Entity:
    return Entity(name, user_id="u1", embedding=[0.5] * dims if dims else None, **kw)  # type: ignore[arg-type]


async def test_apply_validates_before_connecting(offline: Neo4jGraphStore) -> None:
    await offline.apply(GraphBatch())  # empty: nothing to do, no connection
    with pytest.raises(InvalidInputError, match="differ in length"):
        await offline.apply(GraphBatch(entities=[_ent("a", 3), _ent("b", 4)]))
    with pytest.raises(InvalidInputError, match="finite"):
        await offline.apply(GraphBatch(entities=[Entity("a", user_id="u1", embedding=[float("nan")])]))
    with pytest.raises(InvalidInputError, match="share the key"):
        await offline.apply(GraphBatch(entities=[_ent("Alice"), _ent("alice.")]))
    with pytest.raises(InvalidInputError):  # an entity without a scope
        await offline.apply(GraphBatch(entities=[Entity("a")]))
    a = _ent("a")
    with pytest.raises(InvalidInputError, match="source_id and destination_id"):
        await offline.apply(GraphBatch(entities=[a], relations=[Relation("a", "r", "b", user_id="u1")]))
    with pytest.raises(InvalidInputError):
        await offline.apply("not a batch")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="single string"):
        await offline.apply(GraphBatch(delete_entities="abc"))  # type: ignore[arg-type]
    assert offline._driver is None


async def test_reads_validate_before_connecting(offline: Neo4jGraphStore) -> None:
    u1 = Scope(user_id="u1")
    for bad in (0, -1, True, 2.5, "2"):
        with pytest.raises(InvalidInputError, match="depth"):
            await offline.neighbors(u1, ["x"], depth=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="limit"):
        await offline.entities(u1, limit=-1)
    with pytest.raises(InvalidInputError, match="scope"):
        await offline.entities("u1")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="single string"):
        await offline.relations(u1, entity_ids="abc")  # type: ignore[arg-type]
    # Answers that need no server: empty narrowings, no seeds, a zero query vector.
    assert await offline.entities(u1, keys=[]) == []
    assert await offline.entities(u1, ids=[]) == []
    assert await offline.relations(u1, memory_ids=[]) == []
    assert await offline.neighbors(u1, [], keys=[]) == []
    assert await offline.similar_entities(u1, [0.0, 0.0]) == []
    assert await offline.similar_entities(u1, [1.0, 0.0], limit=0) == []
    assert await offline.delete_memories([]) == 0
    assert offline._driver is None


# -- conversions -----------------------------------------------------------------------------


def test_times_round_trip_exactly_as_aware_utc() -> None:
    plus2 = timezone(timedelta(hours=2))
    for when in (
        datetime(2024, 6, 1, 14, 30, 15, 250_123, tzinfo=plus2),
        datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2099, 1, 1, tzinfo=UTC),
        datetime(1, 1, 1, tzinfo=UTC),
    ):
        us = impl._us(when)
        assert isinstance(us, int)
        back = impl._dt(us)
        assert back == when and back is not None and back.utcoffset() == timedelta(0)
    assert impl._us(datetime(2024, 1, 1)) == impl._us(datetime(2024, 1, 1, tzinfo=UTC)), "naive is UTC"
    assert impl._us(None) is None and impl._dt(None) is None
    assert (impl._us(datetime(2024, 1, 1, 0, 0, 0, 1, tzinfo=UTC)) or 0) - (
        impl._us(datetime(2024, 1, 1, tzinfo=UTC)) or 0
    ) == 1


def test_rows_round_trip() -> None:
    e = Entity(
        "Zoë Ünïcode",
        type="person",
        user_id="u1",
        agent_id="a1",
        embedding=[0.25, -1.0],
        mentions=3,
        updated_at=datetime(2024, 1, 2, tzinfo=UTC),
    )
    row = impl._entity_row(e)
    assert row["scope_key"] == '["u1", "a1", null, "zoë ünïcode"]'
    assert impl._entity(row) == e
    r = Relation(
        "Zoë",
        "lives_in",
        "東京",
        user_id="u1",
        source_id=e.id,
        destination_id="d",
        mentions=2,
        valid_at=datetime(2020, 1, 1, tzinfo=UTC),
        memory_ids=["m2", "m1"],
    )
    assert impl._relation(impl._relation_row(r)) == r
    other_scope = impl._entity_row(Entity("Zoë Ünïcode", user_id="u1"))["scope_key"]
    assert other_scope != row["scope_key"], "the same key in another scope is another scope_key"


def test_batch_rows_last_write_wins() -> None:
    a1 = _ent("a", id="x")
    a2 = _ent("a2", id="x")
    b = _ent("b", id="y")
    assert impl._last_by_id([a1, b, a2], "entity") == [a2, b]
