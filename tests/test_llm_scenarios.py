"""Whole conversations through ``add(infer=True)`` over real HTTP.

:class:`engram.testing.llm_server.LLMServer` listens on 127.0.0.1 (a real socket) and plays the
LLM; ``engram.llm.openai`` and, in the second parametrisation, ``engram.llm.anthropic`` talk to it.
The server's replies are decided per request from what engram actually sent (which prompt, which
stored memories under which small ids), so these tests also check the requests. After each step of
the conversation (a fact added, refined, a new one, contradicted, repeated) the memories, their
history events and the archive are checked. Faults during extraction: a 500 is retried; a hang past
the pipeline's timeout stores the messages verbatim and says so.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from engram.core import AsyncMemory
from engram.core._prompts import DECIDE_V1, EXTRACT_AGENT_V1, EXTRACT_USER_V1
from engram.llm.anthropic import AnthropicLLM
from engram.llm.openai import OpenAILLM
from engram.testing.llm_server import Fault, LLMServer, RecordedRequest, Reply

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
FAST = {"backoff_initial": 0.01, "backoff_max": 0.05, "timeout": 5.0, "max_retries": 2}


@pytest.fixture
def server() -> Iterator[LLMServer]:
    with LLMServer() as s:
        yield s


def _openai(server: LLMServer) -> Any:
    return OpenAILLM(base_url=server.openai_url, model="test-model", **FAST)


def _anthropic(server: LLMServer) -> Any:
    return AnthropicLLM(base_url=server.anthropic_url, model="claude-test", **FAST)


PROVIDERS = {"openai": _openai, "anthropic": _anthropic}


@pytest.fixture(params=sorted(PROVIDERS))
def provider(request: pytest.FixtureRequest) -> str:
    return request.param


def _blocks_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(b.get("text", "") for b in content if isinstance(b, dict))
    return ""


def prompt_of(req: RecordedRequest) -> tuple[str, str]:
    """The system prompt and the last user message of a chat request, OpenAI or Anthropic."""
    body = req.body or {}
    msgs = req.messages
    if req.api == "anthropic":
        system = _blocks_text(body.get("system"))
    else:
        system = "\n".join(_blocks_text(m.get("content")) for m in msgs if m.get("role") == "system")
    user = next((_blocks_text(m.get("content")) for m in reversed(msgs) if m.get("role") == "user"), "")
    return system, user


def kind_of(req: RecordedRequest) -> str:
    system, _ = prompt_of(req)
    for name, prompt in (("decide", DECIDE_V1), ("agent", EXTRACT_AGENT_V1), ("user", EXTRACT_USER_V1)):
        if prompt in system:
            return name
    raise AssertionError(f"unexpected system prompt: {system[:200]!r}")


class Brain:
    """Plays the LLM: extraction replies from a table keyed by words in the conversation, decisions
    from a function of the decision payload (``{"stored": [{"id", "text"}], "new_facts": [...]}``)."""

    def __init__(self) -> None:
        self.extract: dict[str, list[str]] = {}
        self.decide: Callable[[dict[str, Any]], list[dict[str, Any]]] | None = None
        self.payloads: list[dict[str, Any]] = []
        self.kinds: list[str] = []

    def __call__(self, req: RecordedRequest) -> Any:
        kind = kind_of(req)
        self.kinds.append(kind)
        _, user = prompt_of(req)
        if kind == "decide":
            payload = json.loads(user)
            self.payloads.append(payload)
            assert self.decide is not None, "no decision expected"
            return Reply.json({"actions": self.decide(payload)})
        for key, facts in self.extract.items():
            if key in user:
                return Reply.json({"facts": [{"text": f, "type": "factual", "category": "personal"} for f in facts]})
        return Reply.json({"facts": []})


def stored_id(payload: dict[str, Any], word: str) -> int:
    (found,) = [s["id"] for s in payload["stored"] if word in s["text"]]
    return found


async def _state(mem: AsyncMemory, **scope: str) -> tuple[dict[str, str], list[tuple[str, str]]]:
    active = {m["memory"]: m["id"] for m in (await mem.get_all(**scope))["results"]}
    archived = sorted(
        (m["memory"], m["archive_reason"])
        for m in (await mem.get_all(**scope, include_archived=True))["results"]
        if m.get("archived")
    )
    return active, archived


async def _events(mem: AsyncMemory, memory_id: str) -> list[tuple[str, str | None, str | None]]:
    return [(e["event"], e["old_memory"], e["new_memory"]) for e in await mem.history(memory_id)]


def _memory(server: LLMServer, provider: str, **config: Any) -> AsyncMemory:
    return AsyncMemory(
        {
            "vector_store": "sqlite:///:memory:",
            "embedder": {"provider": "hash", "config": {"dims": 64}},
            "llm": PROVIDERS[provider](server),
            **config,
        }
    )


async def test_user_conversation(server: LLMServer, provider: str) -> None:
    brain = Brain()
    server.default = brain
    scope = {"user_id": "maya"}
    async with _memory(server, provider) as mem:
        # -- added --
        brain.extract = {"like coffee": ["Maya likes coffee"]}
        out = await mem.add("I like coffee", **scope)
        assert [(r["event"], r["memory"]) for r in out["results"]] == [("ADD", "Maya likes coffee")]
        assert out["infer"] == {"facts": 1}
        coffee = out["results"][0]["id"]
        assert await _state(mem, **scope) == ({"Maya likes coffee": coffee}, [])
        assert await _events(mem, coffee) == [("ADD", None, "Maya likes coffee")]
        assert brain.kinds == ["user"]  # nothing stored yet: no decision asked

        # -- refined (UPDATE) --
        brain.extract = {"no sugar": ["Maya likes black coffee, no sugar"]}
        brain.decide = lambda p: [
            {"fact": 0, "event": "UPDATE", "id": stored_id(p, "coffee"), "text": "Maya likes black coffee, no sugar"}
        ]
        out = await mem.add("Black, no sugar", **scope)
        assert out["results"] == [
            {"id": coffee, "memory": "Maya likes black coffee, no sugar", "event": "UPDATE",
             "previous_memory": "Maya likes coffee"}
        ]
        assert await _state(mem, **scope) == (
            {"Maya likes black coffee, no sugar": coffee}, [("Maya likes coffee", "superseded")]
        )
        assert await _events(mem, coffee) == [
            ("ADD", None, "Maya likes coffee"),
            ("UPDATE", "Maya likes coffee", "Maya likes black coffee, no sugar"),
        ]
        assert brain.payloads[-1]["stored"] == [{"id": 0, "text": "Maya likes coffee"}]

        # -- a second fact (ADD after a decision) --
        brain.extract = {"Paris": ["Maya lives in Paris"]}
        brain.decide = lambda p: [{"fact": 0, "event": "ADD"}]
        out = await mem.add("I live in Paris", **scope)
        paris = out["results"][0]["id"]
        assert [r["event"] for r in out["results"]] == ["ADD"]

        # -- contradicted (DELETE, and the new fact ADDed) --
        brain.extract = {"Rome": ["Maya lives in Rome"]}
        brain.decide = lambda p: [{"fact": 0, "event": "DELETE", "id": stored_id(p, "Paris")}, {"fact": 0, "event": "ADD"}]
        out = await mem.add("I moved to Rome", **scope)
        assert sorted((r["event"], r["memory"]) for r in out["results"]) == [
            ("ADD", "Maya lives in Rome"), ("DELETE", "Maya lives in Paris"),
        ]
        rome = next(r["id"] for r in out["results"] if r["event"] == "ADD")
        active, archived = await _state(mem, **scope)
        assert active == {"Maya likes black coffee, no sugar": coffee, "Maya lives in Rome": rome}
        assert archived == [("Maya likes coffee", "superseded"), ("Maya lives in Paris", "deleted")]
        assert await _events(mem, paris) == [("ADD", None, "Maya lives in Paris"), ("DELETE", "Maya lives in Paris", None)]
        assert await mem.get(paris) is None

        # -- repeated (NONE): nothing changes --
        before = await _state(mem, **scope)
        brain.extract = {"still in Rome": ["Maya lives in Rome"]}
        brain.decide = lambda p: [{"fact": 0, "event": "NONE", "id": stored_id(p, "Rome")}]
        out = await mem.add("I am still in Rome", **scope)
        assert out == {"results": [], "infer": {"facts": 1}}
        assert await _state(mem, **scope) == before
        assert await _events(mem, rome) == [("ADD", None, "Maya lives in Rome")]

        # the archive answers for what is no longer true
        hits = (await mem.search("Maya lives in Paris", **scope, include_archived=True))["results"]
        assert hits[0]["id"] == paris and hits[0]["archive_reason"] == "deleted"

    # what went over the wire: the right prompts, JSON asked for, ids never UUIDs
    chats = [r for r in server.requests if r.api == provider]
    assert [kind_of(r) for r in chats] == ["user", "user", "decide", "user", "decide", "user", "decide", "user", "decide"]
    for r in chats:
        if kind_of(r) == "decide":
            assert not UUID_RE.search(prompt_of(r)[1])
        if provider == "openai":
            assert r.body["response_format"] == {"type": "json_object"}
        else:
            assert r.body["tool_choice"]["type"] == "tool"


async def test_agent_conversation(server: LLMServer, provider: str) -> None:
    brain = Brain()
    server.default = brain
    scope = {"agent_id": "helper"}
    conv = [
        {"role": "user", "content": "Could you answer in French from now on?", "name": "Maya"},
        {"role": "assistant", "content": "Oui: I will answer in French.", "name": "Helper"},
    ]
    async with _memory(server, provider) as mem:
        brain.extract = {"answer in French": ["I answer in French"]}
        out = await mem.add(conv, **scope)
        (r,) = out["results"]
        assert r["event"] == "ADD" and r["memory"] == "I answer in French"
        got = await mem.get(r["id"])
        assert got["agent_id"] == "helper" and "user_id" not in got
        (ev,) = await mem.history(r["id"])
        assert ev["role"] == "assistant" and ev["actor_id"] == "Helper"

        brain.extract = {"English": ["I answer in French, and in English when asked"]}
        brain.decide = lambda p: [
            {"fact": 0, "event": "UPDATE", "id": stored_id(p, "French"),
             "text": "I answer in French, and in English when asked"}
        ]
        out = await mem.add(
            [{"role": "user", "content": "And English if I ask?"},
             {"role": "assistant", "content": "Yes, in English when you ask."}], **scope
        )
        assert out["results"][0]["event"] == "UPDATE"
        active, archived = await _state(mem, **scope)
        assert active == {"I answer in French, and in English when asked": r["id"]}
        assert archived == [("I answer in French", "superseded")]

        brain.decide = lambda p: [{"fact": 0, "event": "NONE", "id": 0}]
        brain.extract = {"again": ["I answer in French"]}
        out = await mem.add("Say it again?", **scope)
        assert out["results"] == [] and await _state(mem, **scope) == (active, archived)

        brain.decide = lambda p: [{"fact": 0, "event": "DELETE", "id": stored_id(p, "French")}]
        brain.extract = {"only English": ["I answer only in English"]}
        out = await mem.add("Please, only English now.", **scope)
        assert [x["event"] for x in out["results"]] == ["DELETE"]
        assert await mem.count(agent_id="helper") == 0
        _, archived = await _state(mem, **scope)
        assert archived == [
            ("I answer in French", "superseded"),
            ("I answer in French, and in English when asked", "deleted"),
        ]
        assert [e[0] for e in await _events(mem, r["id"])] == ["ADD", "UPDATE", "DELETE"]
    assert brain.kinds[0] == "agent" and set(brain.kinds) == {"agent", "decide"}


async def test_500_during_extraction_is_retried(server: LLMServer, provider: str) -> None:
    server.reply(
        Fault.status(500),
        Reply.json({"facts": [{"text": "Maya likes tea", "type": "preference", "category": "preference"}]}),
    )
    async with _memory(server, provider) as mem:
        out = await mem.add("I like tea", user_id="maya")
        assert [r["memory"] for r in out["results"]] == ["Maya likes tea"]
        assert out["infer"] == {"facts": 1}
    assert len(server.requests_for(provider)) == 2


async def test_429_with_retry_after_is_honoured(server: LLMServer, provider: str) -> None:
    server.reply(Fault.rate_limited(retry_after=0.2), Reply.json({"facts": ["Maya likes tea"]}))
    async with _memory(server, provider) as mem:
        t0 = time.monotonic()
        out = await mem.add("I like tea", user_id="maya")
        assert time.monotonic() - t0 >= 0.18
        assert [r["memory"] for r in out["results"]] == ["Maya likes tea"]


async def test_hang_past_the_timeout_stores_verbatim(server: LLMServer, provider: str) -> None:
    server.reply(Fault.hang(10.0))
    async with _memory(server, provider, infer={"timeout": 0.5}) as mem:
        t0 = time.monotonic()
        out = await mem.add([{"role": "user", "content": "I like tea", "name": "Maya"}], user_id="maya")
        assert time.monotonic() - t0 < 5
        assert [r["memory"] for r in out["results"]] == ["I like tea"]
        assert "verbatim" in out["infer"]["fallback"] and "Timeout" in out["infer"]["fallback"]
        got = await mem.get(out["results"][0]["id"])
        assert got["metadata"]["speaker"] == "Maya"


async def test_server_errors_throughout_store_verbatim(server: LLMServer, provider: str) -> None:
    server.default = Fault.status(503)
    async with _memory(server, provider) as mem:
        out = await mem.add("I like tea", user_id="maya")
        assert [r["memory"] for r in out["results"]] == ["I like tea"]
        assert "fact extraction failed" in out["infer"]["fallback"]
    assert len(server.requests_for(provider)) == 1 + FAST["max_retries"]


async def test_broken_json_in_a_200_is_a_reported_fallback(server: LLMServer, provider: str) -> None:
    server.reply("Sure! Here are the facts: Maya likes tea.")
    async with _memory(server, provider) as mem:
        out = await mem.add("I like tea", user_id="maya")
        assert [r["memory"] for r in out["results"]] == ["I like tea"]
        assert "verbatim" in out["infer"]["fallback"]
