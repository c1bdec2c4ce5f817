"""AsyncMemory on the in-process memory store and the hash embedder: the mem0-shaped API end to end."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from engram.core import AsyncMemory, Scope
from engram.core.errors import (
    ConfigurationError,
    InvalidFilterError,
    InvalidInputError,
    InvalidMessageError,
    InvalidScopeError,
    MemoryNotFoundError,
)

CONFIG = {"vector_store": "memory", "embedder": {"provider": "hash", "config": {"dims": 64}}}


@pytest.fixture
async def memory() -> AsyncMemory:
    async with AsyncMemory(CONFIG) as m:
        yield m


async def test_add_string(memory: AsyncMemory) -> None:
    out = await memory.add("I love green tea", user_id="alice")
    (r,) = out["results"]
    assert r["event"] == "ADD" and r["memory"] == "I love green tea"
    got = await memory.get(r["id"])
    assert got is not None
    assert got["memory"] == "I love green tea" and got["user_id"] == "alice"
    assert got["metadata"] == {"role": "user"} and got["updated_at"] is None
    assert "agent_id" not in got and "run_id" not in got
    assert datetime.fromisoformat(got["created_at"]).utcoffset().total_seconds() == 0


async def test_add_message_with_speaker_and_time(memory: AsyncMemory) -> None:
    out = await memory.add(
        {"role": "assistant", "content": "Noted, Oslo it is", "name": "Bot", "time": "2023-05-08T13:56:00+02:00"},
        agent_id="helper", run_id="s1", metadata={"source": "chat", "n": 1},
    )
    got = await memory.get(out["results"][0]["id"])
    assert got["metadata"] == {"source": "chat", "n": 1, "role": "assistant", "speaker": "Bot",
                               "message_time": "2023-05-08T11:56:00+00:00"}
    assert got["agent_id"] == "helper" and got["run_id"] == "s1" and "user_id" not in got


async def test_add_list_skips_system_and_empty(memory: AsyncMemory) -> None:
    out = await memory.add(
        [{"role": "system", "content": "be nice"}, {"role": "user", "content": "I moved to Oslo", "name": "Caroline"},
         {"role": "assistant", "content": "   "}, {"role": "assistant", "content": "How is Oslo?"}, "plain string"],
        user_id="alice",
    )
    assert [r["memory"] for r in out["results"]] == ["I moved to Oslo", "How is Oslo?", "plain string"]
    assert await memory.count(user_id="alice") == 3
    only_system = await memory.add({"role": "system", "content": "x"}, user_id="alice")
    assert only_system == {"results": []}


async def test_infer_true_without_llm_stores_verbatim(memory: AsyncMemory) -> None:
    a = await memory.add("fact one", user_id="u", infer=True)
    b = await memory.add("fact two", user_id="u", infer=False)
    assert a["results"][0]["memory"] == "fact one" and b["results"][0]["memory"] == "fact two"


async def test_get_all_newest_first_with_filters_and_limit(memory: AsyncMemory) -> None:
    for i in range(5):
        await memory.add(f"note {i}", user_id="alice", metadata={"i": i, "even": i % 2 == 0})
        await anyio.sleep(0.002)  # distinct created_at, so newest-first is the order written
    await memory.add("bob's note", user_id="bob")
    allm = (await memory.get_all(user_id="alice"))["results"]
    assert [r["memory"] for r in allm] == [f"note {i}" for i in range(4, -1, -1)]
    assert len((await memory.get_all(user_id="alice", limit=2))["results"]) == 2
    evens = (await memory.get_all(user_id="alice", filters={"even": True}))["results"]
    assert {r["metadata"]["i"] for r in evens} == {0, 2, 4}
    mid = (await memory.get_all(user_id="alice", filters={"i": {"gte": 1, "lt": 3}}))["results"]
    assert {r["metadata"]["i"] for r in mid} == {1, 2}
    assert (await memory.get_all(user_id="carol"))["results"] == []
    assert await memory.count() == 6 and await memory.count(user_id="bob") == 1


async def test_search(memory: AsyncMemory) -> None:
    await memory.add(["I love green tea", "My dog is named Rex", "I work as a nurse"], user_id="alice")
    await memory.add("I love green tea too", user_id="bob")
    out = await memory.search("green tea", user_id="alice", limit=2)
    assert out["relations"] == []
    res = out["results"]
    assert len(res) == 2 and res[0]["memory"] == "I love green tea"
    assert all(r["user_id"] == "alice" for r in res)
    assert res[0]["score"] >= res[1]["score"] and "dense" in res[0]["scores"]
    strict = await memory.search("green tea", user_id="alice", threshold=0.5)
    assert [r["memory"] for r in strict["results"]] == ["I love green tea"]
    filtered = await memory.search("tea", user_id="alice", filters={"memory": {"contains": "dog"}})
    assert [r["memory"] for r in filtered["results"]] == ["My dog is named Rex"]
    assert (await memory.search("", user_id="alice"))["results"] is not None


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"limit": 0}, InvalidInputError), ({"limit": 10_001}, InvalidInputError), ({"limit": True}, InvalidInputError),
        ({"limit": "5"}, InvalidInputError), ({"threshold": float("nan")}, InvalidInputError),
        ({"threshold": "high"}, InvalidInputError), ({"filters": {"a": {"like": 1}}}, InvalidFilterError),
        ({"user_id": None}, InvalidScopeError), ({"user_id": ""}, InvalidScopeError),
    ],
)
async def test_search_bad_arguments(memory: AsyncMemory, kwargs: dict[str, Any], error: type) -> None:
    kw = {"user_id": "alice", **kwargs}
    with pytest.raises(error):
        await memory.search("q", **kw)


async def test_search_query_must_be_string(memory: AsyncMemory) -> None:
    with pytest.raises(InvalidInputError, match="query must be a string"):
        await memory.search(None, user_id="a")  # type: ignore[arg-type]


async def test_update_and_history(memory: AsyncMemory) -> None:
    (r,) = (await memory.add("Likes tea", user_id="alice", metadata={"k": 1}))["results"]
    out = await memory.update(r["id"], "Likes green tea", metadata={"k2": 2})
    assert out == {"id": r["id"], "memory": "Likes green tea", "event": "UPDATE", "previous_memory": "Likes tea"}
    got = await memory.get(r["id"])
    assert got["memory"] == "Likes green tea" and got["metadata"] == {"k": 1, "role": "user", "k2": 2}
    assert got["updated_at"] is not None and got["created_at"] <= got["updated_at"]
    found = await memory.search("green tea", user_id="alice")
    assert found["results"][0]["id"] == r["id"]
    hist = await memory.history(r["id"])
    assert [h["event"] for h in hist] == ["ADD", "UPDATE"]
    assert hist[0]["new_memory"] == "Likes tea" and hist[0]["old_memory"] is None and hist[0]["role"] == "user"
    assert hist[1]["old_memory"] == "Likes tea" and hist[1]["new_memory"] == "Likes green tea"
    assert hist[0]["user_id"] == "alice"


async def test_history_records_actor(memory: AsyncMemory) -> None:
    (r,) = (await memory.add({"role": "user", "content": "x", "name": "Caroline"}, user_id="a"))["results"]
    (h,) = await memory.history(r["id"])
    assert h["actor_id"] == "Caroline" and h["role"] == "user"


async def test_update_errors_change_nothing(memory: AsyncMemory) -> None:
    (r,) = (await memory.add("Likes tea", user_id="alice"))["results"]
    with pytest.raises(MemoryNotFoundError) as info:
        await memory.update("no-such-id", "x")
    assert isinstance(info.value, KeyError)
    for bad in ("", "   ", None, 5):
        with pytest.raises(InvalidInputError):
            await memory.update(r["id"], bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        await memory.update(r["id"], "new", metadata={"x": float("nan")})
    with pytest.raises(InvalidInputError):
        await memory.update("", "new")
    assert (await memory.get(r["id"]))["memory"] == "Likes tea"
    assert len(await memory.history(r["id"])) == 1


async def test_delete(memory: AsyncMemory) -> None:
    (r,) = (await memory.add("temp", user_id="alice"))["results"]
    out = await memory.delete(r["id"])
    assert out["id"] == r["id"] and out["event"] == "DELETE"
    assert await memory.get(r["id"]) is None
    assert [h["event"] for h in await memory.history(r["id"])] == ["ADD", "DELETE"]  # history outlives the memory
    with pytest.raises(MemoryNotFoundError):
        await memory.delete(r["id"])


async def test_delete_all_only_that_scope(memory: AsyncMemory) -> None:
    await memory.add(["a", "b"], user_id="alice", agent_id="x")
    await memory.add("c", user_id="alice", agent_id="y")
    await memory.add("d", user_id="bob")
    out = await memory.delete_all(user_id="alice", agent_id="x")
    assert out["deleted"] == 2
    assert await memory.count(user_id="alice") == 1 and await memory.count(user_id="bob") == 1
    assert (await memory.delete_all(user_id="nobody"))["deleted"] == 0
    with pytest.raises(InvalidScopeError):
        await memory.delete_all()


async def test_reset(memory: AsyncMemory) -> None:
    (r,) = (await memory.add("x", user_id="a"))["results"]
    await memory.reset()
    assert await memory.count() == 0 and await memory.get(r["id"]) is None
    assert await memory.history(r["id"]) == []
    await memory.add("after", user_id="a")
    assert await memory.count() == 1


async def test_get_and_history_unknown(memory: AsyncMemory) -> None:
    assert await memory.get("nope") is None
    assert await memory.history("nope") == []
    for bad in ("", None, 5, "x" * 300):
        with pytest.raises(InvalidInputError):
            await memory.get(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("messages", "kwargs", "error"),
    [
        ("x", {}, InvalidScopeError),
        ("x", {"user_id": ""}, InvalidScopeError),
        ("x", {"user_id": "a\nb"}, InvalidScopeError),
        ("x", {"user_id": "a", "metadata": {"n": float("nan")}}, InvalidInputError),
        ("x", {"user_id": "a", "metadata": {"o": object()}}, InvalidInputError),
        ("x", {"user_id": "a", "metadata": {1: "int key"}}, InvalidInputError),
        ("x", {"user_id": "a", "metadata": ["not", "a", "mapping"]}, InvalidInputError),
        ("x", {"user_id": "a", "metadata": {"big": [1, {"n": 2**64}]}}, InvalidInputError),
        ([], {"user_id": "a"}, InvalidMessageError),
        ([{"role": "robot", "content": "x"}], {"user_id": "a"}, InvalidMessageError),
        (["ok", {"role": "user", "content": 5}], {"user_id": "a"}, InvalidMessageError),
        (None, {"user_id": "a"}, InvalidMessageError),
    ],
)
async def test_bad_input_changes_nothing(memory: AsyncMemory, messages: Any, kwargs: dict, error: type) -> None:
    await memory.add("existing", user_id="a")
    with pytest.raises(error):
        await memory.add(messages, **kwargs)
    assert await memory.count() == 1


async def test_closed_memory_refuses(tmp_path: Path) -> None:
    m = AsyncMemory(CONFIG)
    await m.add("x", user_id="a")
    await m.aclose()
    await m.aclose()  # twice is fine
    with pytest.raises(ConfigurationError, match="closed"):
        await m.add("y", user_id="a")


async def test_providers_built_lazily() -> None:
    m = AsyncMemory({"vector_store": "no-such-store", "embedder": "hash"})  # nothing resolved yet
    with pytest.raises(ConfigurationError, match="unknown vector store 'no-such-store'"):
        await m.add("x", user_id="a")


async def test_import_export_roundtrip(memory: AsyncMemory) -> None:
    await memory.add("one", user_id="a", metadata={"k": [1, 2]})
    await anyio.sleep(0.002)  # distinct created_at (one add's messages share one)
    await memory.add("two", user_id="a", metadata={"k": [1, 2]})
    items = await memory.export_items()
    assert [i.memory for i in items] == ["one", "two"]  # oldest first
    async with AsyncMemory(CONFIG) as other:
        assert await other.import_items(items) == 2
        again = await other.export_items()
        assert [(i.id, i.memory, i.metadata) for i in again] == [(i.id, i.memory, i.metadata) for i in items]
        assert (await other.history(items[0].id))[0]["metadata"] == {"source": "import"}


async def test_with_sqlite_store_history_in_same_file(tmp_path: Path) -> None:
    pytest.importorskip("engram.vector.sqlite", reason="sqlite store not built")
    cfg = {"vector_store": f"sqlite:///{tmp_path}/e.db", "embedder": {"provider": "hash", "config": {"dims": 64}}}
    async with AsyncMemory(cfg) as m:
        (r,) = (await m.add("I run every morning", user_id="alice"))["results"]
        await m.update(r["id"], "I run every evening")
        assert m.history_store is m.vector_store
        res = (await m.search("running", user_id="alice"))["results"]
        assert res[0]["id"] == r["id"] and "lexical" in res[0]["scores"]
        await m.delete(r["id"])
    async with AsyncMemory(cfg) as m:
        assert [h["event"] for h in await m.history(r["id"])] == ["ADD", "UPDATE", "DELETE"]
        assert await m.count() == 0


async def test_one_add_keeps_the_conversation_order(memory: AsyncMemory) -> None:
    turns = [f"turn {i}" for i in range(20)]
    await memory.add(turns, user_id="order")
    listed = (await memory.get_all(user_id="order"))["results"]
    assert [r["memory"] for r in listed] == list(reversed(turns))  # newest first
    exported = await memory.export_items(Scope("order"))
    assert [i.memory for i in exported] == turns


async def test_delete_all_purges_archived_versions_too() -> None:
    async with AsyncMemory({"vector_store": "sqlite:///:memory:", "embedder": "hash"}) as m:
        res = await m.add("Alice lives in Paris", user_id="al")
        mid = res["results"][0]["id"]
        await m.update(mid, "Alice lives in Rome")
        assert len((await m.get_all(user_id="al", include_archived=True))["results"]) == 2
        assert (await m.delete_all(user_id="al"))["deleted"] == 1
        assert (await m.get_all(user_id="al", include_archived=True))["results"] == []
        assert [e["event"] for e in await m.history(mid)] == ["ADD", "UPDATE", "DELETE"]
