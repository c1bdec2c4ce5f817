"""The LLM memory pipeline (``add(..., infer=True)``): the reply parsers, and whole adds through the
scripted LLM on an in-memory SQLite store with the hash embedder."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from engram.core import AsyncMemory, LLMResponse
from engram.core._pipeline import Action, parse_actions, parse_facts, parse_json_object
from engram.core._prompts import DECIDE_V1, EXTRACT_AGENT_V1, EXTRACT_USER_V1, PROCEDURAL_V1
from engram.core._types import Event
from engram.core.errors import ConfigurationError, InvalidInputError
from engram.embedding.hash import HashEmbedder
from engram.llm.scripted import ScriptedLLM

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


# -- parse_json_object ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ('{"facts": []}', {"facts": []}),
        ('```json\n{"facts": ["a"]}\n```', {"facts": ["a"]}),
        ('```\n{"facts": ["a"]}\n```', {"facts": ["a"]}),
        ('  ```JSON\n{"a": 1}```  ', {"a": 1}),
        ('Sure! Here is the JSON: {"facts": ["x"]} Hope it helps.', {"facts": ["x"]}),
        ('Note {not json} then {"a": {"b": [1, 2]}} end', {"a": {"b": [1, 2]}}),
        ("Prose first.\n```json\n{\"a\": 1}\n```\nprose after", {"a": 1}),
        ("", None),
        ("   \n ", None),
        ("no json here", None),
        ('{"facts": [', None),
        ("{'single': 'quotes'}", None),
        ("[1, 2, 3]", None),
        ('[{"facts": []}]', None),  # a valid array is the wrong shape, not searched
        ("null", None),
        ("42", None),
        ('"a string"', None),
    ],
)
def test_parse_json_object_text(reply: str, expected: Any) -> None:
    assert parse_json_object(reply) == expected
    assert parse_json_object(LLMResponse(text=reply)) == expected


def test_parse_json_object_tool_call_arguments() -> None:
    as_dict = LLMResponse(text="", tool_calls=[{"name": "f", "arguments": {"facts": ["a"]}}])
    assert parse_json_object(as_dict) == {"facts": ["a"]}
    as_str = LLMResponse(text="", tool_calls=[{"name": "f", "arguments": '{"actions": []}'}])
    assert parse_json_object(as_str) == {"actions": []}
    fenced = LLMResponse(text="", tool_calls=[{"name": "f", "arguments": '```json\n{"a": 1}\n```'}])
    assert parse_json_object(fenced) == {"a": 1}
    # unusable arguments fall through to the text
    broken = LLMResponse(text='{"b": 2}', tool_calls=[{"name": "f", "arguments": "{oops"}, "not a mapping"])
    assert parse_json_object(broken) == {"b": 2}
    nothing = LLMResponse(text="", tool_calls=[{"name": "f", "arguments": None}])
    assert parse_json_object(nothing) is None


def test_parse_json_object_gives_up_on_many_braces() -> None:
    assert parse_json_object("{" * 5000) is None
    assert parse_json_object("{x" * 100 + '{"a": 1}') is None  # bounded search: too far in


# -- parse_facts ---------------------------------------------------------------------------------


def test_parse_facts_shapes() -> None:
    assert parse_facts(None) is None
    assert parse_facts({}) is None
    assert parse_facts({"facts": "one fact"}) is None
    assert parse_facts({"facts": None}) is None
    assert parse_facts({"facts": []}) == []
    facts = parse_facts(
        {
            "facts": [
                {"text": "  Maya likes tea  ", "type": "preference", "category": "preference"},
                "Maya lives in Oslo",
                {"fact": "Maya has a dog", "type": "bogus", "category": 7},
                {"text": ""},
                {"text": "   "},
                {"type": "factual"},
                {"text": 42},
                42,
                None,
                ["nested", "list"],
            ]
        }
    )
    assert facts is not None
    assert [(f.text, f.type, f.category) for f in facts] == [
        ("Maya likes tea", "preference", "preference"),
        ("Maya lives in Oslo", "factual", "misc"),
        ("Maya has a dog", "factual", "misc"),
    ]


def test_parse_facts_caps_the_number() -> None:
    facts = parse_facts({"facts": [f"fact {i}" for i in range(500)]})
    assert facts is not None and len(facts) == 50


# -- parse_actions -------------------------------------------------------------------------------


def _actions(data: Any, n_facts: int = 2, n_stored: int = 2) -> tuple[list[Action] | None, list[str]]:
    problems: list[str] = []
    return parse_actions(data, n_facts, n_stored, problems), problems


def test_parse_actions_shapes() -> None:
    assert _actions(None)[0] is None
    assert _actions({"facts": []})[0] is None
    assert _actions({"actions": {"fact": 0}})[0] is None
    assert _actions({"actions": []}) == ([], [])


def test_parse_actions_valid_and_string_digits() -> None:
    out, problems = _actions(
        {
            "actions": [
                {"fact": 0, "event": "add", "text": " new "},
                {"fact": "1", "event": " update ", "id": "1", "text": "merged"},
                {"fact": 1, "event": "DELETE", "id": 0},
                {"fact": 0, "event": "NONE", "id": 1},
            ]
        }
    )
    assert problems == []
    assert out == [
        Action(0, Event.ADD, None, "new"),
        Action(1, Event.UPDATE, 1, "merged"),
        Action(1, Event.DELETE, 0, None),
        Action(0, Event.NONE, 1, None),
    ]


@pytest.mark.parametrize(
    "action",
    [
        {"fact": 5, "event": "ADD"},  # unknown fact
        {"fact": -1, "event": "ADD"},
        {"fact": True, "event": "ADD"},  # a bool is not an index
        {"fact": 0.0, "event": "ADD"},
        {"fact": None, "event": "ADD"},
        {"event": "ADD"},
        {"fact": 0, "event": "MERGE"},  # unknown event
        {"fact": 0, "event": None},
        {"fact": 0, "event": 3},
        {"fact": 0, "event": "DELETE"},  # DELETE without an id: dropped
        {"fact": 0, "event": "DELETE", "id": 99},  # hallucinated id: dropped
        {"fact": 0, "event": "DELETE", "id": "3f2c9a6e-1b2c-4d5e-8f90-123456789abc"},
        "ADD",
        7,
        None,
    ],
)
def test_parse_actions_drops_bad_actions(action: Any) -> None:
    out, problems = _actions({"actions": [action]})
    assert out == [] and problems


@pytest.mark.parametrize("mid", [None, 99, -1, True, 1.5, "x", "2"])
def test_update_without_a_known_id_becomes_add(mid: Any) -> None:
    out, problems = _actions({"actions": [{"fact": 0, "event": "UPDATE", "id": mid, "text": "t"}]})
    assert out == [Action(0, Event.ADD, None, "t")]
    assert any("added instead" in p for p in problems)


def test_unknown_id_on_add_or_none_is_reported_and_cleared() -> None:
    out, problems = _actions({"actions": [{"fact": 0, "event": "ADD", "id": 7}, {"fact": 1, "event": "NONE", "id": -3}]})
    assert out == [Action(0, Event.ADD, None, None), Action(1, Event.NONE, None, None)]
    assert len(problems) == 2


def test_missing_or_blank_text_is_none() -> None:
    out, _ = _actions({"actions": [{"fact": 0, "event": "ADD", "text": "  "}, {"fact": 1, "event": "ADD", "text": 5}]})
    assert out == [Action(0, Event.ADD, None, None), Action(1, Event.ADD, None, None)]


# -- whole adds ----------------------------------------------------------------------------------


class CountingEmbedder:
    """The hash embedder, recording every text it embeds (and each batch)."""

    def __init__(self, dims: int = 64) -> None:
        self.inner = HashEmbedder(dims=dims)
        self.batches: list[list[str]] = []

    @property
    def dims(self) -> int:
        return self.inner.dims

    async def embed(self, texts: Sequence[str], *, kind: str = "document") -> np.ndarray:
        self.batches.append(list(texts))
        return await self.inner.embed(texts, kind=kind)  # type: ignore[arg-type]

    @property
    def texts(self) -> list[str]:
        return [t for b in self.batches for t in b]

    async def aclose(self) -> None:
        return None


def facts(*texts: str, type: str = "factual", category: str = "personal") -> str:
    return json.dumps({"facts": [{"text": t, "type": type, "category": category} for t in texts]})


def actions(*acts: dict[str, Any]) -> str:
    return json.dumps({"actions": list(acts)})


def system_of(call: dict[str, Any]) -> str:
    return call["messages"][0]["content"]


def user_of(call: dict[str, Any]) -> str:
    return call["messages"][1]["content"]


def make(llm: Any, embedder: Any = None, **config: Any) -> AsyncMemory:
    return AsyncMemory(
        {
            "vector_store": "sqlite:///:memory:",
            "embedder": embedder or CountingEmbedder(),
            "llm": llm,
            **config,
        }
    )


async def _consistent(mem: AsyncMemory) -> None:
    assert await mem.vector_store.check() == []  # type: ignore[attr-defined]


async def test_fact_added_without_a_decision_when_nothing_is_stored() -> None:
    llm = ScriptedLLM(replies=[facts("Maya likes coffee", type="preference", category="preference")])
    async with make(llm) as mem:
        out = await mem.add("I really like coffee", user_id="maya")
        assert out["infer"] == {"facts": 1}
        (r,) = out["results"]
        assert r["event"] == "ADD" and r["memory"] == "Maya likes coffee"
        got = await mem.get(r["id"])
        assert got is not None and got["user_id"] == "maya"
        assert got["metadata"]["memory_type"] == "preference" and got["metadata"]["category"] == "preference"
        (ev,) = await mem.history(r["id"])
        assert ev["event"] == "ADD" and ev["new_memory"] == "Maya likes coffee" and ev["role"] == "user"
        assert ev["metadata"] == {"source": "infer"}
        # only the extraction was asked: with nothing stored every fact is new
        assert len(llm.calls) == 1 and system_of(llm.calls[0]) == EXTRACT_USER_V1
        assert "I really like coffee" in user_of(llm.calls[0])
        assert llm.calls[0]["response_format"] == {"type": "json_object"}
        await _consistent(mem)


async def test_added_refined_contradicted_repeated() -> None:
    llm = ScriptedLLM(
        replies=[
            facts("Maya likes coffee", "Maya lives in Paris"),
            # refine: UPDATE memory 0 or 1 (whichever is coffee; the test checks the prompt below)
            facts("Maya likes black coffee, no sugar"),
            "PLACEHOLDER",
        ]
    )
    async with make(llm) as mem:
        first = await mem.add("I like coffee and I live in Paris", user_id="maya")
        ids = {r["memory"]: r["id"] for r in first["results"]}
        assert set(ids) == {"Maya likes coffee", "Maya lives in Paris"}

        # -- refined (UPDATE) --
        def decide_update(messages: list[dict[str, Any]], options: dict[str, Any]) -> str:
            if messages[0]["content"] != DECIDE_V1:
                return facts("Maya likes black coffee, no sugar")
            payload = json.loads(messages[1]["content"])
            coffee = next(s["id"] for s in payload["stored"] if "coffee" in s["text"])
            return actions({"fact": 0, "event": "UPDATE", "id": coffee, "text": "Maya likes black coffee, no sugar"})

        llm._respond = decide_update
        out = await mem.add("Black, no sugar, please", user_id="maya")
        (r,) = out["results"]
        assert r == {
            "id": ids["Maya likes coffee"], "memory": "Maya likes black coffee, no sugar", "event": "UPDATE",
            "previous_memory": "Maya likes coffee",
        }
        assert out["infer"] == {"facts": 1}
        assert (await mem.get(r["id"]))["memory"] == "Maya likes black coffee, no sugar"
        hist = await mem.history(r["id"])
        assert [e["event"] for e in hist] == ["ADD", "UPDATE"]
        assert (hist[1]["old_memory"], hist[1]["new_memory"]) == ("Maya likes coffee", "Maya likes black coffee, no sugar")
        everything = (await mem.get_all(user_id="maya", include_archived=True))["results"]
        old = [m for m in everything if m.get("archived")]
        assert [(m["id"], m["memory"], m["archive_reason"]) for m in old] == [
            (r["id"], "Maya likes coffee", "superseded")
        ]
        active = (await mem.get_all(user_id="maya"))["results"]
        assert sorted(m["memory"] for m in active) == ["Maya likes black coffee, no sugar", "Maya lives in Paris"]
        assert await mem.count(user_id="maya") == 2

        # -- contradicted (DELETE + ADD) --
        def decide_move(messages: list[dict[str, Any]], options: dict[str, Any]) -> str:
            if messages[0]["content"] != DECIDE_V1:
                return facts("Maya lives in Rome")
            payload = json.loads(messages[1]["content"])
            paris = next(s["id"] for s in payload["stored"] if "Paris" in s["text"])
            return actions({"fact": 0, "event": "DELETE", "id": paris}, {"fact": 0, "event": "ADD"})

        llm._respond = decide_move
        out = await mem.add("I moved to Rome last month", user_id="maya")
        events = {r["event"]: r for r in out["results"]}
        assert set(events) == {"DELETE", "ADD"}
        assert events["DELETE"]["id"] == ids["Maya lives in Paris"]
        assert events["DELETE"]["memory"] == "Maya lives in Paris"
        assert events["ADD"]["memory"] == "Maya lives in Rome"
        assert await mem.get(ids["Maya lives in Paris"]) is None
        hist = await mem.history(ids["Maya lives in Paris"])
        assert [e["event"] for e in hist] == ["ADD", "DELETE"]
        assert hist[1]["old_memory"] == "Maya lives in Paris" and hist[1]["new_memory"] is None
        archived = [m for m in (await mem.get_all(user_id="maya", include_archived=True))["results"] if m.get("archived")]
        assert {(m["memory"], m["archive_reason"]) for m in archived} == {
            ("Maya likes coffee", "superseded"), ("Maya lives in Paris", "deleted"),
        }
        active = sorted(m["memory"] for m in (await mem.get_all(user_id="maya"))["results"])
        assert active == ["Maya likes black coffee, no sugar", "Maya lives in Rome"]

        # -- repeated (NONE): nothing changes --
        before = (await mem.get_all(user_id="maya", include_archived=True))["results"]
        n_events = {m["id"]: len(await mem.history(m["id"])) for m in before}

        def decide_none(messages: list[dict[str, Any]], options: dict[str, Any]) -> str:
            if messages[0]["content"] != DECIDE_V1:
                return facts("Maya is living in Rome")
            payload = json.loads(messages[1]["content"])
            rome = next(s["id"] for s in payload["stored"] if "Rome" in s["text"])
            return actions({"fact": 0, "event": "NONE", "id": rome})

        llm._respond = decide_none
        out = await mem.add("Rome is where I live now", user_id="maya")
        assert out == {"results": [], "infer": {"facts": 1}}
        after = (await mem.get_all(user_id="maya", include_archived=True))["results"]
        assert after == before
        assert {m["id"]: len(await mem.history(m["id"])) for m in after} == n_events

        # -- repeated word for word: the LLM says ADD, the content hash drops it --
        def decide_add_again(messages: list[dict[str, Any]], options: dict[str, Any]) -> str:
            if messages[0]["content"] != DECIDE_V1:
                return facts("Maya lives in Rome")
            return actions({"fact": 0, "event": "ADD"})

        llm._respond = decide_add_again
        out = await mem.add("I live in Rome", user_id="maya")
        assert out == {"results": [], "infer": {"facts": 1}}
        assert (await mem.get_all(user_id="maya", include_archived=True))["results"] == before
        await _consistent(mem)


async def test_decision_prompt_shows_small_ids_never_uuids() -> None:
    llm = ScriptedLLM(
        replies=[
            facts("Maya likes tea", "Maya has a cat", "Maya plays chess"),
            facts("Maya likes green tea"),
            actions({"fact": 0, "event": "ADD"}),
        ]
    )
    async with make(llm) as mem:
        stored = await mem.add("tea, cat, chess", user_id="maya")
        uuids = {r["id"] for r in stored["results"]}
        await mem.add("green tea actually", user_id="maya")
        decision = llm.calls[2]
        assert system_of(decision) == DECIDE_V1
        text = user_of(decision)
        for u in uuids:
            assert u not in text
        assert not UUID_RE.search(text)
        payload = json.loads(text)
        assert sorted(s["id"] for s in payload["stored"]) == list(range(3))
        assert {s["text"] for s in payload["stored"]} == {"Maya likes tea", "Maya has a cat", "Maya plays chess"}
        assert payload["new_facts"] == [{"fact": 0, "text": "Maya likes green tea"}]


async def test_other_scopes_are_never_shown_or_touched() -> None:
    llm = ScriptedLLM(replies=[facts("Ben likes tea"), facts("Maya likes tea")])
    async with make(llm) as mem:
        await mem.add("I like tea", user_id="ben")
        out = await mem.add("I like tea", user_id="maya")
        # Maya's scope holds nothing: no decision asked, Ben's memory not shown
        assert len(llm.calls) == 2 and out["results"][0]["event"] == "ADD"
        assert await mem.count(user_id="ben") == 1 and await mem.count(user_id="maya") == 1


@pytest.mark.parametrize(
    ("scope", "prompt", "role"),
    [
        ({"user_id": "maya"}, EXTRACT_USER_V1, "user"),
        ({"agent_id": "helper"}, EXTRACT_AGENT_V1, "assistant"),
        ({"user_id": "maya", "agent_id": "helper"}, EXTRACT_USER_V1, "user"),
        ({"agent_id": "helper", "run_id": "r1"}, EXTRACT_AGENT_V1, "assistant"),
    ],
)
async def test_user_and_agent_scope(scope: dict[str, str], prompt: str, role: str) -> None:
    llm = ScriptedLLM(
        replies=[
            facts("I answer in French"),
            facts("I answer in French and English"),
            actions({"fact": 0, "event": "UPDATE", "id": 0, "text": "I answer in French and English"}),
        ]
    )
    async with make(llm) as mem:
        conv = [
            {"role": "user", "content": "Can you answer in French?", "name": "Maya"},
            {"role": "assistant", "content": "Oui, I will answer in French.", "name": "Helper"},
        ]
        first = await mem.add(conv, **scope)
        (r,) = first["results"]
        got = await mem.get(r["id"])
        for k in ("user_id", "agent_id", "run_id"):
            assert got.get(k) == scope.get(k)
        (ev,) = await mem.history(r["id"])
        assert ev["role"] == role and ev["actor_id"] == ("Maya" if role == "user" else "Helper")
        second = await mem.add("And English too.", **scope)
        assert second["results"][0]["event"] == "UPDATE"
        assert [system_of(c) for c in llm.calls] == [prompt, prompt, DECIDE_V1]
        archived = (await mem.get_all(**scope, include_archived=True))["results"]
        assert [m["archive_reason"] for m in archived if m.get("archived")] == ["superseded"]
        await _consistent(mem)


async def test_nothing_is_embedded_twice() -> None:
    emb = CountingEmbedder()
    llm = ScriptedLLM(
        replies=[
            facts("Maya likes tea", "Maya has a cat"),
            facts("Maya likes green tea", "Maya has a cat named Tom", "Maya runs"),
            actions(
                {"fact": 0, "event": "UPDATE", "id": 0, "text": "Maya likes green tea"},  # the fact's own text
                {"fact": 1, "event": "UPDATE", "id": 1, "text": "Maya has a black cat named Tom"},  # a new text
                {"fact": 2, "event": "ADD"},
            ),
        ]
    )
    async with make(llm, embedder=emb) as mem:
        await mem.add("tea and a cat", user_id="maya")
        assert emb.batches == [["Maya likes tea", "Maya has a cat"]]  # one batch for all facts
        emb.batches.clear()
        out = await mem.add("green tea, Tom, running", user_id="maya")
        assert sorted(r["event"] for r in out["results"]) == ["ADD", "UPDATE", "UPDATE"]
        texts = emb.texts
        assert len(texts) == len(set(texts)), texts
        assert emb.batches[0] == ["Maya likes green tea", "Maya has a cat named Tom", "Maya runs"]
        assert emb.batches[1:] == [["Maya has a black cat named Tom"]]


async def test_duplicates_inside_one_reply_are_embedded_and_added_once() -> None:
    emb = CountingEmbedder()
    llm = ScriptedLLM(replies=[facts("Maya likes tea", "Maya likes tea", "Maya likes tea")])
    async with make(llm, embedder=emb) as mem:
        out = await mem.add("tea tea tea", user_id="maya")
        assert [r["memory"] for r in out["results"]] == ["Maya likes tea"]
        assert out["infer"]["facts"] == 1
        assert emb.texts == ["Maya likes tea"]


async def test_two_changes_to_one_memory_keep_the_first() -> None:
    llm = ScriptedLLM(
        replies=[
            facts("Maya lives in Paris"),
            facts("Maya lives in Rome", "Maya lives in Milan"),
            actions(
                {"fact": 0, "event": "UPDATE", "id": 0, "text": "Maya lives in Rome"},
                {"fact": 1, "event": "DELETE", "id": 0},
                {"fact": 1, "event": "UPDATE", "id": 0},
            ),
        ]
    )
    async with make(llm) as mem:
        first = (await mem.add("Paris", user_id="maya"))["results"][0]["id"]
        out = await mem.add("Rome or Milan", user_id="maya")
        assert [r["event"] for r in out["results"]] == ["UPDATE"]
        assert sum("changed twice" in p for p in out["infer"]["problems"]) == 2
        assert (await mem.get(first))["memory"] == "Maya lives in Rome"
        assert [e["event"] for e in await mem.history(first)] == ["ADD", "UPDATE"]
        await _consistent(mem)


async def test_bad_decisions_are_reported_and_facts_kept() -> None:
    llm = ScriptedLLM(
        replies=[
            facts("Maya likes tea"),
            facts("Maya likes jazz", "Maya has a dog"),
            actions({"fact": 0, "event": "DELETE", "id": 42}, {"fact": 9, "event": "ADD"}),
        ]
    )
    async with make(llm) as mem:
        await mem.add("tea", user_id="maya")
        out = await mem.add("jazz and a dog", user_id="maya")
        # fact 0's only action was a DELETE of an unknown id: dropped, so fact 0 had no action → added
        assert sorted(r["memory"] for r in out["results"]) == ["Maya has a dog", "Maya likes jazz"]
        problems = out["infer"]["problems"]
        assert any("DELETE without a known id" in p for p in problems)
        assert any("unknown fact 9" in p for p in problems)
        assert any("no action for fact 1" in p for p in problems)
        assert await mem.count(user_id="maya") == 3


@pytest.mark.parametrize("reply", ["not json at all", '{"actions": "nope"}', "", '{"facts": []}'])
async def test_unusable_decision_adds_every_fact(reply: str) -> None:
    llm = ScriptedLLM(replies=[facts("Maya likes tea"), facts("Maya likes jazz", "Maya has a dog"), reply])
    async with make(llm) as mem:
        await mem.add("tea", user_id="maya")
        out = await mem.add("jazz and a dog", user_id="maya")
        assert sorted(r["memory"] for r in out["results"]) == ["Maya has a dog", "Maya likes jazz"]
        assert any("every fact added" in p for p in out["infer"]["problems"])


async def test_decision_llm_error_adds_every_fact() -> None:
    llm = ScriptedLLM(replies=[facts("Maya likes tea"), facts("Maya likes jazz")])  # no third reply: raises
    async with make(llm) as mem:
        await mem.add("tea", user_id="maya")
        out = await mem.add("jazz", user_id="maya")
        assert [r["memory"] for r in out["results"]] == ["Maya likes jazz"]
        assert any("ProviderError" in p and "every fact added" in p for p in out["infer"]["problems"])


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        ("I could not find anything.", "was not"),
        ('{"facts": "Maya likes tea"}', "was not"),
        ('["Maya likes tea"]', "was not"),
        ("", "was not"),
        ('{"facts": [', "was not"),
    ],
)
async def test_unusable_extraction_stores_the_messages_verbatim(reply: str, why: str) -> None:
    llm = ScriptedLLM(replies=[reply])
    async with make(llm) as mem:
        msgs = [{"role": "user", "content": "I like tea", "name": "Maya"}, {"role": "assistant", "content": "Noted!"}]
        out = await mem.add(msgs, user_id="maya")
        assert [r["memory"] for r in out["results"]] == ["I like tea", "Noted!"]
        assert why in out["infer"]["fallback"] and "verbatim" in out["infer"]["fallback"]
        assert out["infer"]["facts"] == 0
        got = await mem.get(out["results"][0]["id"])
        assert got["metadata"]["speaker"] == "Maya" and got["metadata"]["role"] == "user"
        await _consistent(mem)


async def test_empty_extraction_stores_nothing_and_says_so() -> None:
    llm = ScriptedLLM(replies=['{"facts": []}'])
    async with make(llm) as mem:
        out = await mem.add("hi there", user_id="maya")
        assert out == {"results": [], "infer": {"facts": 0}}
        assert await mem.count() == 0


async def test_provider_error_during_extraction_falls_back(caplog: pytest.LogCaptureFixture) -> None:
    llm = ScriptedLLM(replies=[])  # raises ProviderError
    async with make(llm) as mem:
        with caplog.at_level("WARNING", logger="engram"):
            out = await mem.add("I like tea", user_id="maya")
        assert [r["memory"] for r in out["results"]] == ["I like tea"]
        assert "ProviderError" in out["infer"]["fallback"] and "verbatim" in out["infer"]["fallback"]
        assert any("verbatim" in r.getMessage() for r in caplog.records)


async def test_llm_raising_other_engram_errors_falls_back() -> None:
    def boom(messages: list[dict[str, Any]], options: dict[str, Any]) -> str:
        raise ConfigurationError("bad key")

    async with make(ScriptedLLM(respond=boom)) as mem:
        out = await mem.add("I like tea", user_id="maya")
        assert "ConfigurationError" in out["infer"]["fallback"]
        assert await mem.count(user_id="maya") == 1


async def test_timeout_during_extraction_falls_back() -> None:
    llm = ScriptedLLM(replies=[facts("never seen")], delay=5.0)
    async with make(llm, infer={"timeout": 0.05}) as mem:
        out = await mem.add("I like tea", user_id="maya")
        assert [r["memory"] for r in out["results"]] == ["I like tea"]
        assert "TimeoutError" in out["infer"]["fallback"]


async def test_non_engram_exception_from_the_llm_propagates() -> None:
    """Only documented errors are absorbed: a bug in a provider is not hidden."""

    def bug(messages: list[dict[str, Any]], options: dict[str, Any]) -> str:
        raise ZeroDivisionError("provider bug")

    async with make(ScriptedLLM(respond=bug)) as mem:
        with pytest.raises(ZeroDivisionError):
            await mem.add("I like tea", user_id="maya")
        assert await mem.count() == 0


async def test_tool_call_replies_are_understood() -> None:
    reply = LLMResponse(text="", tool_calls=[{"name": "facts", "arguments": {"facts": ["Maya likes tea"]}}])
    async with make(ScriptedLLM(replies=[reply])) as mem:
        out = await mem.add("tea", user_id="maya")
        assert [r["memory"] for r in out["results"]] == ["Maya likes tea"]


async def test_infer_false_skips_the_llm() -> None:
    llm = ScriptedLLM(replies=[])
    async with make(llm) as mem:
        out = await mem.add("I like tea", user_id="maya", infer=False)
        assert out == {"results": [{"id": out["results"][0]["id"], "memory": "I like tea", "event": "ADD"}]}
        assert llm.calls == []


async def test_dates_and_speakers_reach_the_extraction_prompt() -> None:
    llm = ScriptedLLM(replies=[facts("Maya flew to Oslo on 2024-05-06")])
    async with make(llm) as mem:
        await mem.add(
            {"role": "user", "content": "I flew to Oslo yesterday", "name": "Maya", "time": "2024-05-07T10:00:00Z"},
            user_id="maya",
        )
        text = user_of(llm.calls[0])
        assert text.startswith("Current date: ")
        assert "[2024-05-07 10:00] user (Maya): I flew to Oslo yesterday" in text


# -- procedural memory ---------------------------------------------------------------------------

RUN = [
    {"role": "user", "content": "Find the cheapest flight to Oslo"},
    {"role": "assistant", "content": "Searched three sites; picked SAS at 120 EUR."},
]


async def test_procedural_memory() -> None:
    summary = "Task: book a flight.\nSteps: 1. searched.\nOutcome: done.\nLessons: none."
    llm = ScriptedLLM(replies=[summary])
    async with make(llm) as mem:
        out = await mem.add(RUN, agent_id="travel", memory_type="procedural")
        (r,) = out["results"]
        assert r["event"] == "ADD" and r["memory"] == summary
        got = await mem.get(r["id"])
        assert got["metadata"]["memory_type"] == "procedural" and got["agent_id"] == "travel"
        assert await mem.count(agent_id="travel") == 1
        (call,) = llm.calls
        assert system_of(call) == PROCEDURAL_V1 and "cheapest flight to Oslo" in user_of(call)
        (ev,) = await mem.history(r["id"])
        assert ev["metadata"] == {"source": "procedural"} and ev["role"] == "assistant"


async def test_procedural_needs_an_agent_id() -> None:
    llm = ScriptedLLM(replies=["summary"])
    async with make(llm) as mem:
        with pytest.raises(InvalidInputError):
            await mem.add(RUN, user_id="maya", memory_type="procedural")
        with pytest.raises(InvalidInputError):
            await mem.add(RUN, agent_id="a", memory_type="semantic")
        assert llm.calls == [] and await mem.count() == 0


async def test_procedural_needs_an_llm() -> None:
    async with AsyncMemory({"vector_store": "sqlite:///:memory:", "embedder": "hash"}) as mem:
        with pytest.raises(ConfigurationError):
            await mem.add(RUN, agent_id="a", memory_type="procedural")


@pytest.mark.parametrize("llm", [ScriptedLLM(replies=[]), ScriptedLLM(replies=["   "])])
async def test_procedural_llm_failure_stores_verbatim(llm: ScriptedLLM) -> None:
    async with make(llm) as mem:
        out = await mem.add(RUN, agent_id="travel", memory_type="procedural")
        assert [r["memory"] for r in out["results"]] == [m["content"] for m in RUN]
        assert "procedural summary" in out["infer"]["fallback"]


async def test_procedural_timeout_stores_verbatim() -> None:
    async with make(ScriptedLLM(replies=["x"], delay=5.0), infer={"timeout": 0.05}) as mem:
        out = await mem.add(RUN, agent_id="travel", memory_type="procedural")
        assert len(out["results"]) == 2 and "TimeoutError" in out["infer"]["fallback"]


# -- archive in search ---------------------------------------------------------------------------


async def _paris_then_rome(**config: Any) -> tuple[AsyncMemory, str]:
    def respond(messages: list[dict[str, Any]], options: dict[str, Any]) -> str:
        if messages[0]["content"] == DECIDE_V1:
            return actions({"fact": 0, "event": "DELETE", "id": 0}, {"fact": 0, "event": "ADD"})
        if "Rome" in messages[1]["content"]:
            return facts("Maya moved to Rome")
        return facts("Maya lives in Paris near the Louvre museum")

    mem = make(ScriptedLLM(respond=respond), **config)
    paris = (await mem.add("I live in Paris", user_id="maya"))["results"][0]["id"]
    await mem.add("I moved to Rome", user_id="maya")
    return mem, paris


async def test_search_without_archive_by_default_when_active_results_are_strong() -> None:
    mem, paris = await _paris_then_rome(search={"archive_floor": None})
    async with mem:
        hits = (await mem.search("Paris Louvre museum", user_id="maya"))["results"]
        assert paris not in {h["id"] for h in hits}
        assert all(not h.get("archived") for h in hits)


async def test_search_falls_back_to_the_archive_below_the_floor() -> None:
    mem, paris = await _paris_then_rome(search={"archive_floor": 0.99})
    async with mem:
        hits = (await mem.search("Paris Louvre museum", user_id="maya"))["results"]
        old = [h for h in hits if h["id"] == paris]
        assert old and old[0]["archived"] is True and old[0]["archive_reason"] == "deleted"
        assert old[0]["memory"] == "Maya lives in Paris near the Louvre museum"
        assert hits[0]["id"] == paris  # the archived version is the best answer here


async def test_search_include_archived() -> None:
    mem, paris = await _paris_then_rome(search={"archive_floor": None})
    async with mem:
        hits = (await mem.search("Paris Louvre museum", user_id="maya", include_archived=True))["results"]
        assert hits[0]["id"] == paris and hits[0]["archived"] is True
        assert any(not h.get("archived") for h in hits)
        # other scopes never see it
        assert (await mem.search("Paris", user_id="ben", include_archived=True))["results"] == []


async def test_get_all_include_archived_and_limit() -> None:
    mem, _ = await _paris_then_rome()
    async with mem:
        active = (await mem.get_all(user_id="maya"))["results"]
        assert [m["memory"] for m in active] == ["Maya moved to Rome"]
        both = (await mem.get_all(user_id="maya", include_archived=True))["results"]
        assert [m.get("archived", False) for m in both] == [False, True]
        assert (await mem.get_all(user_id="maya", include_archived=True, limit=1))["results"] == active


async def test_update_and_delete_through_the_api_with_archive() -> None:
    mem, _ = await _paris_then_rome()
    async with mem:
        (rome,) = (await mem.get_all(user_id="maya"))["results"]
        await mem.update(rome["id"], "Maya lives in Rome, Trastevere")
        reasons = [m.get("archive_reason") for m in (await mem.get_all(user_id="maya", include_archived=True))["results"]]
        assert sorted(r for r in reasons if r) == ["deleted", "superseded"]
        await mem.delete(rome["id"])  # purges the memory and its archived versions
        left = (await mem.get_all(user_id="maya", include_archived=True))["results"]
        assert [m["archive_reason"] for m in left] == ["deleted"]
        await _consistent(mem)


async def test_without_an_archive_capability_delete_purges() -> None:
    def respond(messages: list[dict[str, Any]], options: dict[str, Any]) -> str:
        if messages[0]["content"] == DECIDE_V1:
            return actions({"fact": 0, "event": "DELETE", "id": 0})
        return facts("Maya lives in " + ("Rome" if "Rome" in messages[1]["content"] else "Paris"))

    class NoArchive:
        """The memory store, without the archive capability."""

        def __init__(self) -> None:
            from engram.vector.memory import MemoryVectorStore

            self.inner = MemoryVectorStore()
            self.capabilities = frozenset(self.inner.capabilities) - {"archive"}

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    async with AsyncMemory({"vector_store": NoArchive(), "embedder": "hash", "llm": ScriptedLLM(respond=respond)}) as mem:
        paris = (await mem.add("Paris", user_id="maya"))["results"][0]["id"]
        out = await mem.add("Rome", user_id="maya")
        assert [r["event"] for r in out["results"]] == ["DELETE"]
        assert await mem.get(paris) is None
        assert [e["event"] for e in await mem.history(paris)] == ["ADD", "DELETE"]


async def test_search_include_archived_keeps_both_versions_of_an_updated_memory() -> None:
    """An UPDATE keeps the memory's id: the active version and the archived one are two hits
    (fusion once merged them by id and dropped one)."""
    llm = ScriptedLLM(
        replies=[
            facts("Maya lives in Paris"),
            facts("Maya lives in Rome"),
            actions({"fact": 0, "event": "UPDATE", "id": 0}),
            facts("Maya lives in Milan"),
            actions({"fact": 0, "event": "UPDATE", "id": 0}),
        ]
    )
    async with make(llm, search={"archive_floor": None}) as mem:
        mid = (await mem.add("Paris", user_id="maya"))["results"][0]["id"]
        await mem.add("Rome", user_id="maya")
        await mem.add("Milan", user_id="maya")
        hits = (await mem.search("Maya lives in", user_id="maya", include_archived=True))["results"]
        assert sorted((h["memory"], h.get("archive_reason")) for h in hits) == [
            ("Maya lives in Milan", None),
            ("Maya lives in Paris", "superseded"),
            ("Maya lives in Rome", "superseded"),
        ]
        assert {h["id"] for h in hits} == {mid}
        active = (await mem.search("Maya lives in", user_id="maya"))["results"]
        assert [h["memory"] for h in active] == ["Maya lives in Milan"]


async def test_first_add_on_a_fresh_database_file(tmp_path) -> None:
    """Several facts mean concurrent first reads of a new SQLite file (related memories, one search
    per fact); switching the file to WAL once raced and failed with "database is locked"."""
    for i in range(10):
        llm = ScriptedLLM(replies=[facts("Maya likes tea", "Maya has a cat", "Maya plays chess", "Maya runs")])
        async with make(llm, vector_store=f"sqlite:///{tmp_path}/fresh{i}.db") as mem:
            out = await mem.add("tea, cat, chess, running", user_id="maya")
            assert len(out["results"]) == 4 and "problems" not in out["infer"]


async def test_a_duplicate_in_another_scope_does_not_block_an_add() -> None:
    """The content-hash duplicate check looks hashes up across scopes (an indexed lookup) and keeps
    only the add's own scope: the same text stored for someone else is no duplicate."""
    llm = ScriptedLLM(replies=[facts("Likes green tea"), facts("Likes green tea"), facts("Likes green tea")])
    async with make(llm) as mem:
        await mem.add("green tea", user_id="ben")
        await mem.add("green tea", user_id="maya", run_id="r1")
        out = await mem.add("green tea", user_id="maya", run_id="r2")
        assert [r["event"] for r in out["results"]] == ["ADD"]
        assert await mem.count(user_id="ben") == 1 and await mem.count(user_id="maya") == 2
        # but within the scope it is one
        llm2 = ScriptedLLM(replies=[facts("Likes green tea")])
        mem._llm = llm2
        again = await mem.add("green tea", user_id="maya", run_id="r2")
        assert again["results"] == []
