"""Graph memory over real HTTP: ``engram.llm.openai`` and ``engram.llm.anthropic`` talk to
:class:`engram.testing.llm_server.LLMServer` on 127.0.0.1, which answers each request from what
engram sent (which prompt; for the graph prompts, as a tool call, since engram offers the
``record_graph`` / ``record_contradictions`` tools). The memories and the graph share one SQLite
file. A person moves house twice; the graph keeps every address with when it held, search returns
the current one beside the memories, and deleting the scope leaves nothing behind."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from engram.core import AsyncMemory, Scope
from engram.core._prompts import DECIDE_V1, EXTRACT_USER_V1, GRAPH_DECIDE_V1, GRAPH_EXTRACT_V1
from engram.llm.anthropic import AnthropicLLM
from engram.llm.openai import OpenAILLM
from engram.testing.llm_server import LLMServer, RecordedRequest, Reply

FAST = {"backoff_initial": 0.01, "backoff_max": 0.05, "timeout": 5.0, "max_retries": 2}
MOVES = {  # words in the conversation -> (fact, city, date)
    "Lyon": ("Maya lives in Lyon", "Lyon", "2019-09-01"),
    "Paris": ("Maya moved to Paris", "Paris", "2022-03-01"),
    "Rome": ("Maya moved to Rome", "Rome", "2024-06-01"),
}


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(b.get("text", "") for b in content if isinstance(b, dict))
    return ""


class Brain:
    def __init__(self) -> None:
        self.tools_seen: list[str] = []
        self.kinds: list[str] = []

    def __call__(self, req: RecordedRequest) -> Any:
        body = req.body or {}
        if req.api == "anthropic":
            system = _text(body.get("system"))
        else:
            system = "\n".join(_text(m.get("content")) for m in req.messages if m.get("role") == "system")
        user = next(_text(m.get("content")) for m in reversed(req.messages) if m.get("role") == "user")
        tools = [t.get("function", t).get("name") for t in body.get("tools") or []]
        if GRAPH_EXTRACT_V1 in system:
            self.kinds.append("graph")
            self.tools_seen += tools
            city = next(c for c in MOVES if c in user.split("Conversation:")[1])
            _, dest, when = MOVES[city]
            args = {
                "entities": [{"name": "Maya", "type": "person"}, {"name": dest, "type": "place"}],
                "relations": [
                    {"source": "Maya", "relation": "lives in", "destination": dest, "valid_at": when}
                ],
            }
            return Reply.tool_call("record_graph", args)
        if GRAPH_DECIDE_V1 in system:
            self.kinds.append("graph_decide")
            payload = json.loads(user)
            # every stored lives_in is contradicted by the new one (the model's call)
            pairs = [{"id": s["id"], "new": 0} for s in payload["stored"] if "-lives_in->" in s["relation"]]
            return Reply.tool_call("record_contradictions", {"contradicted": pairs})
        if DECIDE_V1 in system:
            self.kinds.append("decide")
            payload = json.loads(user)
            return Reply.json(
                {
                    "actions": [
                        {"fact": f["fact"], "event": "ADD", "text": f["text"]} for f in payload["new_facts"]
                    ]
                }
            )
        if EXTRACT_USER_V1 in system:
            self.kinds.append("facts")
            city = next(c for c in MOVES if c in user.split("Conversation:")[1])
            return Reply.json(
                {"facts": [{"text": MOVES[city][0], "type": "factual", "category": "personal"}]}
            )
        raise AssertionError(f"unexpected prompt {system[:80]!r}")


@pytest.fixture
def server() -> Iterator[LLMServer]:
    with LLMServer() as s:
        yield s


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_moves_are_kept_as_closed_intervals_over_http(
    server: LLMServer, provider: str, tmp_path: Path
) -> None:
    brain = Brain()
    server.reply(*[brain] * 20)
    if provider == "openai":
        llm: Any = OpenAILLM(base_url=server.openai_url, model="test-model", **FAST)
    else:
        llm = AnthropicLLM(base_url=server.anthropic_url, model="claude-test", **FAST)
    db = tmp_path / "engram.db"
    config = {
        "vector_store": f"sqlite:///{db}",
        "embedder": {"provider": "hash", "config": {"dims": 64}},
        "llm": llm,
        "graph_store": "sqlite",
    }
    async with AsyncMemory(config) as mem:
        for city in MOVES:
            out = await mem.add(f"I live in {city} now", user_id="maya")
            assert out["infer"]["graph"].get("failed") is None, out["infer"]
        assert "record_graph" in brain.tools_seen
        assert sorted(set(brain.kinds)) == ["decide", "facts", "graph", "graph_decide"]

        now = await mem.get_graph(user_id="maya")
        assert [(r["source"], r["relationship"], r["destination"]) for r in now["relations"]] == [
            ("Maya", "lives_in", "Rome")
        ]
        every = await mem.get_graph(user_id="maya", include_expired=True)
        held = sorted(
            (r["destination"], r["valid_at"][:10], (r["invalid_at"] or "")[:10]) for r in every["relations"]
        )
        assert held == [
            ("Lyon", "2019-09-01", "2022-03-01"),
            ("Paris", "2022-03-01", "2024-06-01"),
            ("Rome", "2024-06-01", ""),
        ]
        for when, city in (("2020-01-01", "Lyon"), ("2023-01-01", "Paris"), ("2025-01-01", "Rome")):
            assert [
                r["destination"] for r in (await mem.get_graph(user_id="maya", at=when))["relations"]
            ] == [city]

        found = await mem.search("Where does Maya live?", user_id="maya")
        assert [r["destination"] for r in found["relations"]] == ["Rome"]
        assert "missing" not in found and found["results"]
        assert all(r["scores"].get("entity") for r in found["results"])  # every memory names Maya

        await mem.delete_all(user_id="maya")
        graph = mem.graph_store
        assert graph is not None
        assert await graph.relations(Scope("maya"), include_expired=True) == []
        assert await graph.entities(Scope("maya")) == []
