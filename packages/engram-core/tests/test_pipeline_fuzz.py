"""Malformed LLM replies never cost data and never corrupt the store.

Hypothesis feeds replies (random text, truncated JSON, code fences, prose around JSON, the wrong
schema, hallucinated / negative / huge / float / bool ids, duplicate actions, empty and huge
strings, unicode, tool calls) through the scripted LLM as extraction and decision replies, 600
examples in all, each on a fresh in-memory SQLite store with the hash embedder. After every add:

- it raised nothing (none of these is a documented error: bad output is absorbed and reported);
- the input was not lost: the add stored something, or its ``infer`` report says what happened
  (an extraction reply that cannot be used means the messages are stored verbatim);
- the store is consistent: ``check()`` finds nothing, every active memory has history whose last
  event holds its text, archived versions never show as active, ``count()`` equals the listing.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
from engram.core import AsyncMemory, LLMResponse
from engram.core._pipeline import parse_facts, parse_json_object
from engram.llm.scripted import ScriptedLLM
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

SEED = ["Maya likes tea", "Maya lives in Paris", "Maya has a beagle named Biscuit"]
MESSAGES = [
    {"role": "user", "content": "I moved to Rome and I prefer coffee now", "name": "Maya"},
    {"role": "assistant", "content": "Noted: Rome, and coffee."},
]
FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)

# -- building blocks -----------------------------------------------------------------------------

texts = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", " ", "\n", "Maya likes tea", "Maya lives in Rome", "Maya likes coffee", "\x00", "🐶"]),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=20),
    st.integers(2_000, 60_000).map(lambda n: "Maya " + "é" * n),  # huge
)
weird_ids = st.one_of(
    st.integers(-3, 6),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.sampled_from(["0", "1", " 2 ", "-1", "1e3", "3f2c9a6e-1b2c-4d5e-8f90-123456789abc", ""]),
)
events = st.one_of(
    st.sampled_from(["ADD", "UPDATE", "DELETE", "NONE", "add", " update ", "Delete", "MERGE", ""]),
    st.none(),
    st.integers(),
)
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), texts)
json_any = st.recursive(
    json_leaf,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)

fact_item = st.one_of(
    texts,
    st.fixed_dictionaries(
        {"text": texts},
        optional={
            "type": st.one_of(st.sampled_from(["factual", "preference", "procedural", "episodic", "bogus"]), json_any),
            "category": st.one_of(st.sampled_from(["personal", "plan", "misc", "nope"]), json_any),
        },
    ),
    st.fixed_dictionaries({}, optional={"fact": texts, "text": json_any}),
    json_any,
)
facts_value = st.one_of(
    st.fixed_dictionaries({"facts": st.lists(fact_item, max_size=8)}),
    st.fixed_dictionaries({"facts": json_any}),  # numbers, null, strings, nested lists
    st.fixed_dictionaries({"facts": st.lists(st.lists(texts, max_size=3), max_size=3)}),
    st.dictionaries(st.text(max_size=8), json_any, max_size=3),
    json_any,
)
plausible_action = st.fixed_dictionaries(
    {"fact": st.integers(0, 5), "event": st.sampled_from(["ADD", "UPDATE", "DELETE", "NONE"])},
    optional={"id": st.integers(-1, 4), "text": st.one_of(texts, st.sampled_from(["Maya lives in Rome"]))},
)
action_item = st.one_of(
    plausible_action,
    st.fixed_dictionaries(
        {"fact": weird_ids, "event": events},
        optional={"id": weird_ids, "text": st.one_of(texts, json_any)},
    ),
    json_any,
)


def _duplicated(actions: list[Any]) -> list[Any]:
    return actions + actions  # every action twice


actions_value = st.one_of(
    st.fixed_dictionaries({"actions": st.lists(action_item, max_size=8)}),
    st.fixed_dictionaries({"actions": st.lists(action_item, min_size=1, max_size=4).map(_duplicated)}),
    st.fixed_dictionaries({"actions": json_any}),
    st.dictionaries(st.text(max_size=8), json_any, max_size=3),
    json_any,
)


def _fence(text: str, lang: str) -> str:
    return f"```{lang}\n{text}\n```"


@st.composite
def render(draw: st.DrawFn, value_strategy: st.SearchStrategy[Any]) -> str | LLMResponse:
    """One way an LLM might phrase a JSON value: bare, fenced, with prose, truncated, as a tool call,
    or not JSON at all."""
    value = draw(value_strategy)
    try:
        text = json.dumps(value, ensure_ascii=draw(st.booleans()))
    except ValueError:  # floats too big to write, etc.
        text = repr(value)
    how = draw(st.sampled_from(["bare", "fence", "prose", "truncated", "tool", "tool_str", "random", "empty"]))
    if how == "fence":
        return _fence(text, draw(st.sampled_from(["json", "", "JSON", "python"])))
    if how == "prose":
        return draw(st.text(max_size=30)) + " " + text + " " + draw(st.text(max_size=30))
    if how == "truncated":
        return text[: draw(st.integers(0, max(0, len(text) - 1)))]
    if how == "tool":
        args = value if isinstance(value, dict) else {"value": value}
        return LLMResponse(text=draw(st.sampled_from(["", "ok"])), tool_calls=[{"name": "f", "arguments": args}])
    if how == "tool_str":
        return LLMResponse(text="", tool_calls=[{"name": "f", "arguments": text[: draw(st.integers(0, len(text)))]}])
    if how == "random":
        return draw(st.text(max_size=200))
    if how == "empty":
        return draw(st.sampled_from(["", "   ", "```\n```", "{}", "null", "[]"]))
    return text


# -- the checks ----------------------------------------------------------------------------------


async def _check_store(mem: AsyncMemory) -> None:
    assert await mem.vector_store.check() == []  # type: ignore[attr-defined]
    active = (await mem.get_all(user_id="maya", limit=10_000))["results"]
    assert await mem.count(user_id="maya") == len(active) == await mem.count()
    active_ids = {m["id"] for m in active}
    assert len(active_ids) == len(active)
    for m in active:
        assert not m.get("archived")
        hist = await mem.history(m["id"])
        assert hist, f"active memory {m['id']} has no history"
        assert hist[-1]["event"] in ("ADD", "UPDATE") and hist[-1]["new_memory"] == m["memory"]
    everything = (await mem.get_all(user_id="maya", limit=10_000, include_archived=True))["results"]
    archived = [m for m in everything if m.get("archived")]
    assert len(everything) == len(active) + len(archived)
    deleted = {m["id"] for m in archived if m["archive_reason"] == "deleted"}
    assert not deleted & active_ids, "a memory archived as deleted is still active"
    for m in archived:
        assert m["archive_reason"] in ("superseded", "deleted")
        assert m["id"] in active_ids or m["id"] in deleted
        events = [e["event"] for e in await mem.history(m["id"])]
        assert events[0] == "ADD" and ("UPDATE" in events or "DELETE" in events)
    hits = (await mem.search("Maya coffee Rome", user_id="maya", limit=50))["results"]
    assert all((not h.get("archived")) or h["id"] in deleted or h["id"] in active_ids for h in hits)


def _usable_extraction(reply: Any) -> bool:
    return parse_facts(parse_json_object(reply)) is not None


async def _one_add(mem: AsyncMemory, llm: ScriptedLLM) -> None:
    before = await mem.count(user_id="maya")
    extraction = llm._replies[llm._next] if llm._next < len(llm._replies) else None
    out = await mem.add(MESSAGES, user_id="maya")
    assert set(out) == {"results", "infer"}
    report = out["infer"]
    assert isinstance(report["facts"], int) and report["facts"] >= 0
    for r in out["results"]:
        assert r["event"] in ("ADD", "UPDATE", "DELETE")
        assert isinstance(r["memory"], str) and r["memory"].strip()
        assert (r["event"] == "UPDATE") == ("previous_memory" in r)
    if extraction is None or not _usable_extraction(extraction):
        # the messages are kept word for word, and the report says why
        assert "verbatim" in report["fallback"]
        assert [r["memory"] for r in out["results"]] == [m["content"] for m in MESSAGES]
        assert await mem.count(user_id="maya") == before + 2
    else:
        assert "fallback" not in report
        # nothing lost: facts were extracted (and each stored, or judged already stored), or the
        # reply said there was nothing worth remembering
        if report["facts"] == 0:
            assert out["results"] == []
    event("fallback" if "fallback" in report else f"facts={min(report['facts'], 3)}")
    event("problems reported" if report.get("problems") else "no problems")
    for r in out["results"]:
        event(f"event {r['event']}")
    for problem in report.get("problems", []):
        assert isinstance(problem, str) and problem


async def _scenario(replies: list[str | LLMResponse]) -> None:
    llm = ScriptedLLM(replies=replies)
    async with AsyncMemory(
        {"vector_store": "sqlite:///:memory:", "embedder": {"provider": "hash", "config": {"dims": 32}}, "llm": llm}
    ) as mem:
        await mem.add(SEED, user_id="maya", infer=False)
        await _one_add(mem, llm)
        await _check_store(mem)
        await _one_add(mem, llm)  # a second add on what the first left (and, often, an exhausted script)
        await _check_store(mem)


# -- the tests -----------------------------------------------------------------------------------


@FUZZ
@given(
    extraction=render(facts_value),
    decision=render(actions_value),
    extraction2=render(facts_value),
    decision2=render(actions_value),
)
def test_malformed_replies_everywhere(extraction: Any, decision: Any, extraction2: Any, decision2: Any) -> None:
    anyio.run(_scenario, [extraction, decision, extraction2, decision2])


@FUZZ
@given(
    facts_list=st.lists(st.one_of(st.sampled_from(SEED), texts), min_size=1, max_size=6),
    decision=st.one_of(
        render(actions_value),
        st.lists(plausible_action, min_size=1, max_size=8).map(lambda a: json.dumps({"actions": a})),
    ),
    decision2=st.lists(st.one_of(plausible_action, action_item), max_size=10),
)
def test_valid_facts_with_malformed_decisions(facts_list: list[str], decision: Any, decision2: list[Any]) -> None:
    """Extraction succeeds, so the decision step runs against the seeded memories every time."""
    extraction = json.dumps({"facts": facts_list})
    second = json.dumps({"facts": facts_list[::-1]})
    anyio.run(_scenario, [extraction, decision, second, json.dumps({"actions": decision2})])
