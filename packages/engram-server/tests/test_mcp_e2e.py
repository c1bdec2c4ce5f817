"""``engram mcp`` end to end: the SDK's own client (ClientSession) against real ``engram mcp``
subprocesses, over stdio and over streamable HTTP on 127.0.0.1.

One stdio server (default scope from ``--user-id``) serves most tests of this module; a second
one (scope from ``ENGRAM_USER_ID``) serves the streamable-HTTP tests. The hash embedder and a
temporary SQLite file keep it offline and fast.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from engram.core import AsyncMemory, Entity, GraphBatch, Relation
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, InitializeResult

pytestmark = pytest.mark.asyncio(loop_scope="module")

TOOLS = {
    "add_memory",
    "search_memory",
    "list_memories",
    "get_memory",
    "update_memory",
    "delete_memory",
    "memory_history",
    "get_graph",
    "reset_memories",
}
TIMEOUT = 30.0


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENGRAM_", "OTEL_"))}
    return {**env, **extra}


class Live:
    """A ClientSession kept open by one background task for the whole module.

    The SDK's transports and session use anyio task groups, which must be entered and left by the
    same task; a module-scoped fixture's setup and teardown may run in different tasks, so one
    owner task holds them and the tests send requests through :attr:`session`.
    """

    def __init__(self, connect: Callable[[], AbstractAsyncContextManager[Any]]) -> None:
        self._connect = connect
        self._stop = asyncio.Event()
        self._ready = asyncio.Event()
        self.session: ClientSession
        self.init: InitializeResult
        self._task: asyncio.Task[None] | None = None

    async def _own(self) -> None:
        async with (
            self._connect() as streams,
            ClientSession(streams[0], streams[1], read_timeout_seconds=TIMEOUT) as session,
        ):
            self.init = await session.initialize()
            self.session = session
            self._ready.set()
            await self._stop.wait()

    async def start(self) -> Live:
        self._task = asyncio.create_task(self._own())
        ready = asyncio.create_task(self._ready.wait())
        await asyncio.wait({self._task, ready}, timeout=TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        if not self._ready.is_set():
            ready.cancel()
            if self._task.done():
                self._task.result()  # raises what went wrong
            raise TimeoutError("the MCP server did not answer initialize in time")
        return self

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.wait_for(self._task, TIMEOUT)

    async def call(self, tool: str, **arguments: Any) -> CallToolResult:
        result = await self.session.call_tool(tool, arguments)
        assert isinstance(result, CallToolResult)
        return result

    async def ok(self, tool: str, **arguments: Any) -> dict[str, Any]:
        """Call a tool that must succeed; its structured content (checked against its output schema
        by the SDK's client) beside a text block."""
        result = await self.call(tool, **arguments)
        assert not result.is_error, result.content
        assert result.content and result.content[0].type == "text" and result.content[0].text
        assert isinstance(result.structured_content, dict)
        return result.structured_content

    async def error(self, tool: str, **arguments: Any) -> str:
        """Call a tool that must fail as a tool error; its message."""
        result = await self.call(tool, **arguments)
        assert result.is_error, result
        text = result.content[0].text  # type: ignore[union-attr]
        assert "Traceback" not in text
        return text


def text_of(result: CallToolResult) -> str:
    return result.content[0].text  # type: ignore[union-attr]


async def _seed_graph(db: Path) -> None:
    """A small graph in the database file, written through the engine's own SQLite graph store
    (filling it through add_memory needs an LLM)."""
    async with AsyncMemory(
        {"vector_store": f"sqlite:///{db}", "embedder": "hash", "graph_store": "sqlite"}
    ) as mem:
        graph = mem.graph_store
        assert graph is not None
        maya = Entity("Maya", "person", user_id="maya")
        portland = Entity("Portland", "place", user_id="maya")
        boston = Entity("Boston", "place", user_id="maya")
        old = Relation(
            "Maya",
            "lives_in",
            "Boston",
            user_id="maya",
            source_id=maya.id,
            destination_id=boston.id,
            valid_at=datetime(2019, 1, 1, tzinfo=UTC),
            invalid_at=datetime(2024, 4, 1, tzinfo=UTC),
            expired_at=datetime(2024, 4, 2, tzinfo=UTC),
        )
        new = Relation(
            "Maya",
            "lives_in",
            "Portland",
            user_id="maya",
            source_id=maya.id,
            destination_id=portland.id,
            valid_at=datetime(2024, 4, 1, tzinfo=UTC),
        )
        await graph.apply(GraphBatch(entities=[maya, portland, boston], relations=[old, new]))


@pytest.fixture(scope="module")
def server_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mcp")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stdio(server_dir: Path) -> AsyncIterator[Live]:
    """``engram mcp --user-id maya`` over stdio, with a SQLite graph store in the same file."""
    db = server_dir / "stdio.db"
    await _seed_graph(db)
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "engram.cli", "mcp", "--db", str(db), "--embedder", "hash", "--user-id", "maya"],
        env=_clean_env(ENGRAM_GRAPH_STORE="sqlite"),
    )
    with open(server_dir / "stdio.stderr", "w") as errlog:
        live = await Live(lambda: stdio_client(params, errlog=errlog)).start()
        yield live
        await live.stop()


# -- tools and schemas -------------------------------------------------------------------------


async def test_lists_the_nine_tools_with_typed_schemas(stdio: Live) -> None:
    tools = {t.name: t for t in (await stdio.session.list_tools()).tools}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool.description and len(tool.description) > 60, tool.name
        assert tool.output_schema is not None and tool.output_schema["type"] == "object", tool.name
        assert tool.input_schema["type"] == "object"
    add = tools["add_memory"].input_schema
    assert add["required"] == ["messages"]
    assert {"user_id", "agent_id", "run_id", "metadata", "infer"} <= set(add["properties"])
    assert add["$defs"]["ChatMessage"]["properties"]["role"]["enum"] == [
        "user",
        "assistant",
        "system",
        "tool",
    ]
    search = tools["search_memory"].input_schema["properties"]
    assert (search["limit"]["minimum"], search["limit"]["maximum"]) == (1, 100)
    assert search["user_id"]["anyOf"][0]["maxLength"] == 256
    reset = tools["reset_memories"]
    assert reset.input_schema["properties"]["confirm"] == {
        "default": False,
        "description": reset.input_schema["properties"]["confirm"]["description"],
        "title": "Confirm",
        "type": "boolean",
    }
    assert reset.annotations is not None and reset.annotations.destructive_hint is True
    assert tools["search_memory"].annotations.read_only_hint is True  # type: ignore[union-attr]
    assert (
        "search_memory" in tools["search_memory"].description
        or "before answering" in tools["search_memory"].description
    )
    assert "user 'maya'" in (stdio.init.instructions or "")


# -- happy paths -------------------------------------------------------------------------------


async def test_add_search_list_get(stdio: Live) -> None:
    added = await stdio.ok("add_memory", messages="Maya is allergic to peanuts", metadata={"topic": "health"})
    (change,) = added["results"]
    assert change["event"] == "ADD" and change["memory"] == "Maya is allergic to peanuts"
    await stdio.ok("add_memory", messages="Maya plays the cello on weekends")

    found = await stdio.ok("search_memory", query="peanuts allergy", limit=5)
    top = found["results"][0]
    assert top["id"] == change["id"] and top["user_id"] == "maya"
    assert top["score"] >= found["results"][-1]["score"]

    result = await stdio.call("search_memory", query="peanuts allergy", limit=1)
    assert len(result.structured_content["results"]) == 1  # type: ignore[index]
    assert "Maya is allergic to peanuts" in text_of(result) and change["id"] in text_of(result)

    listed = await stdio.ok("list_memories", filters={"topic": "health"})
    assert [m["id"] for m in listed["results"]] == [change["id"]]

    got = await stdio.ok("get_memory", memory_id=change["id"])
    assert got["memory"] == "Maya is allergic to peanuts" and got["metadata"]["topic"] == "health"


async def test_add_conversation_turns(stdio: Live) -> None:
    turns = [
        {"role": "system", "content": "You are helpful."},
        {
            "role": "user",
            "content": "I switched to a standing desk",
            "name": "Maya",
            "time": "2024-05-01T09:00:00Z",
        },
        {"role": "assistant", "content": "Nice, how is it going?"},
    ]
    added = await stdio.ok("add_memory", messages=turns, infer=False, run_id="chat-1")
    assert [c["memory"] for c in added["results"]] == [
        "I switched to a standing desk",
        "Nice, how is it going?",
    ]
    got = await stdio.ok("get_memory", memory_id=added["results"][0]["id"])
    assert got["metadata"]["speaker"] == "Maya"
    assert got["metadata"]["message_time"].startswith("2024-05-01T09:00:00")
    assert (got["user_id"], got.get("run_id")) == (
        "maya",
        "chat-1",
    )  # the call's run_id joins the default user_id


async def test_update_history_delete(stdio: Live) -> None:
    (change,) = (await stdio.ok("add_memory", messages="Maya's standup is at 9:30"))["results"]
    memory_id = change["id"]
    updated = await stdio.ok("update_memory", memory_id=memory_id, text="Maya's standup is at 10:00")
    assert updated == {
        "id": memory_id,
        "memory": "Maya's standup is at 10:00",
        "event": "UPDATE",
        "previous_memory": "Maya's standup is at 9:30",
    }
    deleted = await stdio.ok("delete_memory", memory_id=memory_id)
    assert (deleted["id"], deleted["event"]) == (memory_id, "DELETE")
    assert "MemoryNotFoundError" in await stdio.error("get_memory", memory_id=memory_id)

    history = await stdio.ok("memory_history", memory_id=memory_id)
    assert [e["event"] for e in history["events"]] == ["ADD", "UPDATE", "DELETE"]
    assert history["events"][1]["old_memory"] == "Maya's standup is at 9:30"
    assert "9:30 -> Maya's standup is at 10:00" in text_of(
        await stdio.call("memory_history", memory_id=memory_id)
    )


async def test_get_graph(stdio: Live) -> None:
    current = await stdio.ok("get_graph")
    assert {e["name"] for e in current["entities"]} == {"Maya", "Portland", "Boston"}
    assert [(r["source"], r["relationship"], r["destination"]) for r in current["relations"]] == [
        ("Maya", "lives_in", "Portland")
    ]
    then = await stdio.ok("get_graph", at="2023-06-01")
    assert [r["destination"] for r in then["relations"]] == ["Boston"]
    everything = await stdio.ok("get_graph", include_expired=True)
    assert len(everything["relations"]) == 2
    assert (await stdio.ok("get_graph", user_id="nobody")) == {"entities": [], "relations": []}
    assert "InvalidInputError" in await stdio.error("get_graph", at="not a time")


# -- scope -------------------------------------------------------------------------------------


async def test_a_call_scope_overrides_the_default(stdio: Live) -> None:
    (sam,) = (await stdio.ok("add_memory", messages="Sam drinks oat milk", user_id="sam"))["results"]
    mine = await stdio.ok("list_memories")
    assert sam["id"] not in {m["id"] for m in mine["results"]}
    assert all(m["user_id"] == "maya" for m in mine["results"])
    theirs = await stdio.ok("list_memories", user_id="sam")
    assert [m["id"] for m in theirs["results"]] == [sam["id"]]
    assert (await stdio.ok("search_memory", query="oat milk", user_id="sam"))["results"][0]["id"] == sam["id"]

    # The default scope (user maya) is in force for ids too: sam's memory is not found there.
    message = await stdio.error("get_memory", memory_id=sam["id"])
    assert "MemoryNotFoundError" in message and "user 'maya'" in message
    assert "MemoryNotFoundError" in await stdio.error("update_memory", memory_id=sam["id"], text="changed")
    assert "MemoryNotFoundError" in await stdio.error("delete_memory", memory_id=sam["id"])
    assert (await stdio.ok("memory_history", memory_id=sam["id"]))["events"] == []
    assert (await stdio.ok("get_memory", memory_id=sam["id"], user_id="sam"))[
        "memory"
    ] == "Sam drinks oat milk"


# -- errors ------------------------------------------------------------------------------------


async def test_errors_are_tool_errors_and_the_server_keeps_running(stdio: Live) -> None:
    assert "no memory with id 'no-such-id'" in await stdio.error("get_memory", memory_id="no-such-id")
    assert "MemoryNotFoundError" in await stdio.error("delete_memory", memory_id="no-such-id")
    assert "InvalidFilterError" in await stdio.error(
        "search_memory", query="x", filters={"topic": {"near": 1}}
    )
    assert "InvalidScopeError" in await stdio.error("list_memories", user_id="bad\nid")
    assert "InvalidInputError" in await stdio.error("add_memory", messages="x", metadata={"n": 2**70})
    # Arguments the schema refuses are tool errors too (the SDK's validation).
    assert "limit" in await stdio.error("search_memory", query="x", limit=0)
    assert "role" in await stdio.error("add_memory", messages=[{"role": "narrator", "content": "x"}])
    # Still serving.
    assert (await stdio.ok("search_memory", query="peanuts"))["results"]


async def test_reset_needs_confirmation_and_keeps_other_scopes(stdio: Live) -> None:
    await stdio.ok("add_memory", messages="Temp fact one", user_id="tmp")
    await stdio.ok("add_memory", messages="Temp fact two", user_id="tmp")
    message = await stdio.error("reset_memories", user_id="tmp")
    assert "would delete all 2 memories of user 'tmp'" in message and "nothing was deleted" in message
    assert len((await stdio.ok("list_memories", user_id="tmp"))["results"]) == 2

    refused = await stdio.error("reset_memories", everything=True, confirm=True)
    assert "--allow-full-reset" in refused

    before = len((await stdio.ok("list_memories"))["results"])
    done = await stdio.ok("reset_memories", user_id="tmp", confirm=True)
    assert (done["deleted"], done["scope"]) == (2, {"user_id": "tmp"})
    assert (await stdio.ok("list_memories", user_id="tmp"))["results"] == []
    assert len((await stdio.ok("list_memories"))["results"]) == before


# -- streamable HTTP, default scope from ENGRAM_USER_ID --------------------------------------------


def _start_http(db: Path, host: str, errlog: Path, **env: str) -> subprocess.Popen[bytes]:
    """``engram mcp --transport streamable-http --port 0`` on ``host``, its stderr in ``errlog``."""
    with open(errlog, "w") as err:
        return subprocess.Popen(
            [
                *(sys.executable, "-m", "engram.cli", "mcp", "--transport", "streamable-http"),
                *("--host", host, "--port", "0", "--db", str(db), "--embedder", "hash"),
            ],
            stdout=subprocess.PIPE,
            stderr=err,
            env=_clean_env(**env),
        )


def _wait_stderr(proc: subprocess.Popen[bytes], errlog: Path, pattern: str) -> re.Match[str]:
    """The first match of ``pattern`` in the server's stderr (its lines joined by spaces), once it
    is there."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        found = re.search(pattern, " ".join(errlog.read_text().split()))
        if found:
            return found
        if proc.poll() is not None:
            raise RuntimeError(f"engram mcp exited with {proc.returncode}: {errlog.read_text()}")
        time.sleep(0.1)
    raise TimeoutError(f"engram mcp printed no {pattern!r}: {errlog.read_text()}")


def _wait_port(proc: subprocess.Popen[bytes], host: str, errlog: Path) -> int:
    """The port ``engram mcp --port 0`` bound, read from its start-up line on stderr (no race
    with another process for a port picked in advance)."""
    return int(
        _wait_stderr(proc, errlog, rf"engram MCP server on http://{re.escape(host)}:(\d+)/mcp").group(1)
    )


def _stop(proc: subprocess.Popen[bytes]) -> bytes:
    """Stop the server; what it wrote to stdout."""
    proc.terminate()
    try:
        out, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http(server_dir: Path) -> AsyncIterator[Live]:
    errlog = server_dir / "http.stderr"
    proc = _start_http(server_dir / "http.db", "127.0.0.1", errlog, ENGRAM_USER_ID="lee")
    try:
        port = _wait_port(proc, "127.0.0.1", errlog)  # the socket listens before the line is printed
        live = await Live(lambda: streamable_http_client(f"http://127.0.0.1:{port}/mcp")).start()
        yield live
        await live.stop()
    finally:
        out = _stop(proc)
    assert out == b""
    assert "WARNING" not in errlog.read_text()  # 127.0.0.1: no warning about the bind


async def test_streamable_http_serves_the_tools(http: Live) -> None:
    tools = {t.name for t in (await http.session.list_tools()).tools}
    assert tools == TOOLS
    assert "user 'lee'" in (http.init.instructions or "")
    (change,) = (await http.ok("add_memory", messages="Lee keeps bees"))["results"]
    got = await http.ok("get_memory", memory_id=change["id"])
    assert got["user_id"] == "lee"  # the default scope came from ENGRAM_USER_ID
    assert (await http.ok("search_memory", query="bees"))["results"][0]["id"] == change["id"]
    assert "MemoryNotFoundError" in await http.error("get_memory", memory_id="nope")


async def test_a_public_bind_warns_on_stderr(server_dir: Path) -> None:
    """--host 0.0.0.0: the server has no auth, so a red warning goes to stderr (never stdout)."""
    errlog = server_dir / "public.stderr"
    proc = _start_http(server_dir / "public.db", "0.0.0.0", errlog)
    try:
        assert _wait_port(proc, "0.0.0.0", errlog) > 0
        _wait_stderr(proc, errlog, "WARNING: binding 0.0.0.0: the MCP server has no authentication")
    finally:
        out = _stop(proc)
    assert out == b""
