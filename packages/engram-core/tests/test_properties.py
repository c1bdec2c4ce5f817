"""Property tests for the caller-facing validators: bad input gets the documented error, nothing else."""

from __future__ import annotations

from typing import Any

import pytest
from engram.core import AsyncMemory, MemoryConfig, Message, Scope, normalize_messages, parse_time
from engram.core.errors import ConfigurationError, InvalidInputError, InvalidMessageError, InvalidScopeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8), st.binary(max_size=4)),
    lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(st.text(max_size=8), c, max_size=3)),
    max_leaves=8,
)
MESSAGE_LIKE = st.one_of(
    JSONISH,
    st.text(),
    st.fixed_dictionaries(
        {"content": st.one_of(st.text(max_size=20), JSONISH)},
        optional={
            "role": st.one_of(st.sampled_from(["user", "assistant", "system", "tool", "robot", ""]), JSONISH),
            "name": st.one_of(st.text(max_size=5), JSONISH),
            "time": st.one_of(st.sampled_from(["2024-05-01T12:00:00Z", "yesterday", "", "2024-13-01"]),
                              st.floats(), st.integers(), JSONISH),
        },
    ),
    st.builds(Message, st.one_of(st.sampled_from(["user", "robot"]), JSONISH), st.one_of(st.text(), JSONISH)),
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(MESSAGE_LIKE, st.lists(MESSAGE_LIKE, max_size=4)))
def test_normalize_messages_raises_only_invalid_message(value: Any) -> None:
    try:
        out = normalize_messages(value)
    except InvalidMessageError as exc:
        assert str(exc)
        return
    assert out and all(isinstance(m, Message) and isinstance(m.content, str) for m in out)


@settings(max_examples=300, deadline=None)
@given(st.one_of(JSONISH, st.floats(), st.integers(), st.text(), st.datetimes()))
def test_parse_time_raises_only_value_error(value: Any) -> None:
    try:
        t = parse_time(value)
    except ValueError:
        return
    assert t.utcoffset() is not None and t.utcoffset().total_seconds() == 0


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.none(), st.text(max_size=300), JSONISH), st.one_of(st.none(), st.text(max_size=5)),
       st.one_of(st.none(), st.text(max_size=5), st.integers()))
def test_scope_raises_only_invalid_scope(user: Any, agent: Any, run: Any) -> None:
    try:
        s = Scope(user, agent, run)
    except InvalidScopeError:
        return
    assert any(v is not None for v in (s.user_id, s.agent_id, s.run_id))
    for v in (s.user_id, s.agent_id, s.run_id):
        assert v is None or (isinstance(v, str) and 1 <= len(v) <= 256
                             and not any(ord(c) < 0x20 or ord(c) == 0x7F for c in v))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["vector_store", "embedder", "llm", "search", "bogus", "reranker"]),
                       JSONISH, max_size=3))
def test_config_parse_raises_only_configuration_error(data: dict[str, Any]) -> None:
    try:
        MemoryConfig.parse(data)
    except ConfigurationError:
        pass


@pytest.fixture
async def memory() -> AsyncMemory:
    async with AsyncMemory({"vector_store": "memory", "embedder": {"provider": "hash", "config": {"dims": 32}}}) as m:
        yield m


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=st.one_of(MESSAGE_LIKE, st.lists(MESSAGE_LIKE, max_size=3)),
       metadata=st.one_of(st.none(), JSONISH, st.dictionaries(st.text(max_size=4), JSONISH, max_size=3)),
       user_id=st.one_of(st.none(), st.sampled_from(["alice", "", "a\n"]), JSONISH))
async def test_add_bad_input_raises_invalid_input_and_changes_nothing(
    memory: AsyncMemory, messages: Any, metadata: Any, user_id: Any
) -> None:
    before = await memory.count()
    try:
        out = await memory.add(messages, user_id=user_id, metadata=metadata, infer=False)
    except InvalidInputError:
        assert await memory.count() == before
        return
    assert await memory.count() == before + len(out["results"])
