"""Types: Scope validation, message normalisation, times, hashes, dict shapes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
from engram.core import (
    Event,
    HistoryEvent,
    MemoryItem,
    Message,
    Scope,
    content_hash,
    normalize_messages,
    parse_time,
    utcnow,
)
from engram.core.errors import InvalidMessageError, InvalidScopeError

# -- Scope ---------------------------------------------------------------------------------------


def test_scope_needs_one_id() -> None:
    with pytest.raises(InvalidScopeError, match="at least one"):
        Scope()
    with pytest.raises(InvalidScopeError):
        Scope(None, None, None)


@pytest.mark.parametrize(
    "kw",
    [
        {"user_id": ""}, {"agent_id": "x" * 257}, {"run_id": "a\x00b"}, {"user_id": "tab\there"},
        {"user_id": "trailing\n"}, {"user_id": "\n"}, {"user_id": "del\x7f"}, {"user_id": 5}, {"agent_id": b"x"},
        {"user_id": "ok", "run_id": ""},
    ],
)
def test_scope_rejects_bad_ids(kw: dict) -> None:
    with pytest.raises(InvalidScopeError) as info:
        Scope(**kw)
    name = next(k for k, v in kw.items() if v != "ok")
    assert name in str(info.value)


@pytest.mark.parametrize("value", ["a", "x" * 256, "o'brien", 'q"', "%", "_", "Ünïcode", "🙂", "a b", "u-1:2/3"])
def test_scope_accepts_odd_but_valid_ids(value: str) -> None:
    assert Scope(user_id=value).user_id == value


def test_scope_matching_and_kind() -> None:
    s = Scope.of(user_id="alice")
    assert s.matches("alice", "bot", "r1") and s.matches("alice", None, None)
    assert not s.matches("bob", None, None) and not s.matches(None, "bot", None)
    both = Scope(user_id="alice", run_id="r1")
    assert both.matches("alice", "x", "r1") and not both.matches("alice", "x", "r2")
    assert both.kind == "user+run" and Scope(agent_id="a").kind == "agent"
    assert both.items() == [("user_id", "alice"), ("run_id", "r1")]
    assert Scope("a") == Scope(user_id="a") and hash(Scope("a")) == hash(Scope(user_id="a"))


# -- times ---------------------------------------------------------------------------------------


def test_parse_time_forms() -> None:
    want = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert parse_time(want) == want
    assert parse_time(datetime(2024, 5, 1, 12, 0)) == want  # naive is UTC
    assert parse_time("2024-05-01T12:00:00Z") == want
    assert parse_time(" 2024-05-01T14:00:00+02:00 ") == want
    assert parse_time("2024-05-01T12:00:00") == want
    assert parse_time(want.timestamp()) == want
    assert parse_time(int(want.timestamp())) == want
    plus2 = datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    got = parse_time(plus2)
    assert got == want and got.utcoffset() == timedelta(0)


@pytest.mark.parametrize("bad", [True, None, "yesterday", "", b"2024", [], 1e30, float("nan"), float("inf"), 10**20])
def test_parse_time_rejects_with_value_error(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_time(bad)


def test_utcnow_is_aware() -> None:
    assert utcnow().utcoffset() == timedelta(0)


def test_content_hash() -> None:
    assert content_hash("hello") == "5d41402abc4b2a76b9719d911017c592"
    assert content_hash("straße") != content_hash("strasse")


# -- messages ------------------------------------------------------------------------------------


def test_normalize_string_and_list_of_strings() -> None:
    assert normalize_messages("hi") == [Message("user", "hi")]
    assert normalize_messages(["a", "b"]) == [Message("user", "a"), Message("user", "b")]
    assert normalize_messages(("a",)) == [Message("user", "a")]


def test_normalize_mappings() -> None:
    out = normalize_messages(
        [
            {"role": "user", "content": "I moved to Oslo", "name": "Caroline", "time": "2023-05-08T13:56:00Z"},
            {"role": "assistant", "content": "Nice!"},
            {"content": "default role", "timestamp": 1_700_000_000},
            {"role": "system", "content": "be brief", "created_at": datetime(2024, 1, 1)},
            {"role": "tool", "content": "{}"},
        ]
    )
    assert [m.role for m in out] == ["user", "assistant", "user", "system", "tool"]
    assert out[0].name == "Caroline" and out[0].time == datetime(2023, 5, 8, 13, 56, tzinfo=UTC)
    assert out[1].name is None and out[1].time is None
    assert out[2].time == datetime.fromtimestamp(1_700_000_000, UTC)
    assert out[3].time == datetime(2024, 1, 1, tzinfo=UTC)


def test_normalize_single_mapping_and_message() -> None:
    assert normalize_messages({"role": "assistant", "content": "ok"}) == [Message("assistant", "ok")]
    m = Message("user", "x", "Bob", datetime(2024, 1, 1, tzinfo=UTC))
    assert normalize_messages(m) == [m]
    assert normalize_messages([m, "y"]) == [m, Message("user", "y")]


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ([], "empty"),
        (None, "NoneType"),
        (42, "int"),
        (b"bytes", "bytes"),
        ({"role": "user"}, "'content' must be a string"),
        ({"role": "user", "content": 5}, "'content' must be a string"),
        ({"role": "user", "content": None}, "'content' must be a string"),
        ({"role": "robot", "content": "x"}, "unknown role 'robot'"),
        ({"role": None, "content": "x"}, "unknown role"),
        ({"role": ["user"], "content": "x"}, "unknown role"),
        ({"role": "user", "content": "x", "name": 7}, "'name' must be a string"),
        ({"role": "user", "content": "x", "time": "not a time"}, "bad time"),
        ({"role": "user", "content": "x", "time": True}, "bad time"),
        ({"role": "user", "content": "x", "time": 1e30}, "bad time"),
        ({"role": "user", "content": "x", "timestamp": float("nan")}, "bad time"),
        (["ok", 3], "message 1"),
        (["ok", None], "message 1"),
        (Message("robot", "x"), "unknown role"),
        (Message("user", 5), "'content' must be a string"),  # type: ignore[arg-type]
        (Message("user", "x", name=3), "'name' must be a string"),  # type: ignore[arg-type]
        (Message("user", "x", time="2024"), "'time' must be a datetime"),  # type: ignore[arg-type]
    ],
)
def test_normalize_rejects(bad: object, words: str) -> None:
    with pytest.raises(InvalidMessageError) as info:
        normalize_messages(bad)
    assert words in str(info.value)


# -- dict shapes ---------------------------------------------------------------------------------


def test_memory_item_to_dict() -> None:
    t = datetime(2024, 5, 1, tzinfo=UTC)
    item = MemoryItem(id="1", memory="m", hash=content_hash("m"), user_id="u", run_id="r", metadata={"k": 1},
                      created_at=t, embedding=np.zeros(3, dtype=np.float32))
    d = item.to_dict()
    assert d == {"id": "1", "memory": "m", "hash": content_hash("m"), "metadata": {"k": 1},
                 "created_at": t.isoformat(), "updated_at": None, "user_id": "u", "run_id": "r"}
    assert item.scope == Scope(user_id="u", run_id="r")


def test_history_event_to_dict() -> None:
    t = datetime(2024, 5, 1, tzinfo=UTC)
    e = HistoryEvent(id="e", memory_id="m", event=Event.UPDATE, old_memory="a", new_memory="b", user_id="u",
                     actor_id="Caroline", role="user", created_at=t, metadata={"why": "x"})
    d = e.to_dict()
    assert d["event"] == "UPDATE" and d["created_at"] == t.isoformat() and d["actor_id"] == "Caroline"
    assert set(d) == {"id", "memory_id", "event", "old_memory", "new_memory", "user_id", "agent_id", "run_id",
                      "actor_id", "role", "created_at", "metadata"}
    assert Event("ADD") is Event.ADD and str(Event.DELETE) == "DELETE"
