"""The capability mechanism: checks skip with a reason naming what the provider lacks."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from engram.core import Scope, parse_filters
from engram.core.errors import InvalidFilterError
from engram.testing import (
    CAPABILITIES,
    HistoryStoreConformance,
    ProviderSuite,
    VectorStoreConformance,
    requires,
)
from engram.testing import strategies as est
from engram.testing._requires import capabilities_of, requirements_of, skip_unless_capable
from hypothesis import given, settings


class Provider:
    capabilities = frozenset({"lexical"})


def test_requires_marks_and_accumulates() -> None:
    @requires("lexical")
    @requires("persistent")
    def check() -> None: ...

    assert requirements_of(check) == {"lexical", "persistent"}
    assert requirements_of(lambda: None) == frozenset()


def test_unknown_capability_is_a_typo() -> None:
    with pytest.raises(ValueError, match="unknown capabilities"):
        requires("lexicall")
    assert {"lexical", "history", "persistent", "archive", "substring_filters", "string_range_filters"} <= set(CAPABILITIES)


def test_filter_requirements() -> None:
    from engram.core import parse_filters
    from engram.testing import filter_requirements

    def needs(mapping: object) -> set[str]:
        return set(filter_requirements(parse_filters(mapping)))

    assert needs({"a": 1, "b": {"in": ["x"]}, "c": None, "NOT": {"d": {"ne": "y"}}}) == set()
    assert needs({"tags": {"contains": 1}}) == set()  # a list element, never a substring
    assert needs({"OR": [{"a": 1}, {"NOT": {"t": {"contains": "wo"}}}]}) == {"substring_filters"}
    assert needs({"t": {"icontains": "wo"}}) == {"substring_filters"}
    assert needs({"a": {"gt": "m"}, "b": {"lt": 3}}) == {"string_range_filters"}
    assert needs({"created_at": {"gte": "2024-05-01T00:00:00Z"}}) == set()  # a time, not a string


def test_capabilities_from_provider_or_override() -> None:
    assert capabilities_of(SimpleNamespace(capabilities=None), Provider()) == {"lexical"}
    assert capabilities_of(SimpleNamespace(capabilities=frozenset()), Provider()) == frozenset()
    assert capabilities_of(SimpleNamespace(), object()) == frozenset()


def _request(fn: Any, instance: Any = None) -> Any:
    return SimpleNamespace(function=fn, instance=instance or SimpleNamespace(capabilities=None))


def test_skip_names_the_missing_capability() -> None:
    @requires("lexical", "persistent")
    def check() -> None: ...

    with pytest.raises(pytest.skip.Exception) as info:
        skip_unless_capable(_request(check), Provider())
    assert "Provider lacks capability 'persistent'" in str(info.value)
    assert "'lexical'" not in str(info.value)
    skip_unless_capable(_request(lambda: None), Provider())  # no requirement: runs


def test_override_can_only_narrow_what_is_tested() -> None:
    @requires("lexical")
    def check() -> None: ...

    with pytest.raises(pytest.skip.Exception, match="lacks capability 'lexical'"):
        skip_unless_capable(_request(check, SimpleNamespace(capabilities=frozenset())), Provider())


async def test_persistent_without_reopen_hook_fails_clearly() -> None:
    class NoHook(ProviderSuite):
        pass

    with pytest.raises(pytest.fail.Exception, match="has no `async def reopen"):
        await NoHook().reopened(Provider())


def test_suites_mark_their_checks() -> None:
    assert requirements_of(VectorStoreConformance.test_lexical_stems) == {"lexical"}
    assert requirements_of(VectorStoreConformance.test_persists_across_reopen) == {"persistent"}
    assert requirements_of(VectorStoreConformance.test_batch_events_go_to_history) == {"history"}
    assert requirements_of(HistoryStoreConformance.test_history_persists_across_reopen) == {"persistent"}
    assert requirements_of(VectorStoreConformance.test_write_get_roundtrip) == frozenset()
    vector = {n for n in dir(VectorStoreConformance) if n.startswith("test_")}
    history = {n for n in dir(HistoryStoreConformance) if n.startswith("test_")}
    assert not vector & history, "a store inheriting both suites would lose checks"


@settings(max_examples=50, deadline=None)
@given(est.valid_filters())
def test_valid_filters_mostly_parse(mapping: Any) -> None:
    try:
        parse_filters(mapping)
    except InvalidFilterError as exc:  # only the documented type restrictions may reject one
        assert "expected" in str(exc)


@settings(max_examples=50, deadline=None)
@given(est.scopes(), est.query_strings(), est.metadata())
def test_strategies_generate_valid_values(scope: Scope, query: str, meta: dict[str, Any]) -> None:
    assert isinstance(scope, Scope) and isinstance(query, str) and isinstance(meta, dict)
    json.dumps(meta, allow_nan=False)
