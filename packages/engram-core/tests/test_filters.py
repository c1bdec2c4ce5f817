"""Filter parsing (clear errors for every malformed shape) and the Python truth's semantics."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from engram.core import And, Cmp, MemoryItem, Not, Or, matches, parse_filters
from engram.core.errors import InvalidFilterError, InvalidInputError


def item(**meta: object) -> MemoryItem:
    return MemoryItem(id="i1", memory="Booked a flight to Paris", hash="h", user_id="u1", metadata=dict(meta),
                      created_at=datetime(2024, 5, 1, 12, tzinfo=UTC))


def test_parse_shapes() -> None:
    assert parse_filters(None) is None
    assert parse_filters({}) is None
    assert parse_filters({"a": 1}) == Cmp("a", "eq", 1)
    assert parse_filters({"a": 1, "b": "x"}) == And((Cmp("a", "eq", 1), Cmp("b", "eq", "x")))
    assert parse_filters({"p": {"gte": 2, "lt": 5}}) == And((Cmp("p", "gte", 2), Cmp("p", "lt", 5)))
    assert parse_filters({"OR": [{"a": 1}, {"b": 2}]}) == Or((Cmp("a", "eq", 1), Cmp("b", "eq", 2)))
    assert parse_filters({"NOT": {"a": 1}}) == Not(Cmp("a", "eq", 1))
    assert parse_filters({"NOT": [{"a": 1}, {"b": 2}]}) == Not(And((Cmp("a", "eq", 1), Cmp("b", "eq", 2))))
    assert parse_filters({"a": {"in": ["x", "y"]}}) == Cmp("a", "in", ("x", "y"))
    tree = parse_filters({"a": 1})
    assert parse_filters(tree) is tree
    t = datetime(2024, 5, 1, tzinfo=UTC)
    assert parse_filters({"created_at": {"gte": "2024-05-01T00:00:00Z"}}) == Cmp("created_at", "gte", t.timestamp())
    assert parse_filters({"updated_at": None}) == Cmp("updated_at", "eq", None)


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ({"a": {"like": "x"}}, "unknown operator 'like'"),
        ({"a": {"$eq": 1}}, "unknown operator"),
        ({"a": {}}, "empty operator mapping"),
        ({"a": {"in": []}}, "non-empty list"),
        ({"a": {"in": "abc"}}, "non-empty list"),
        ({"a": {"nin": 5}}, "non-empty list"),
        ({"a": {"in": list(range(10_001))}}, "at most 10000"),
        ({"a": {"gt": None}}, "number or a string"),
        ({"a": {"lte": True}}, "number or a string"),
        ({"a": {"icontains": 5}}, "expected a string"),
        ({"a": {"contains": None}}, "string, number or boolean"),
        ({"a": float("nan")}, "not a finite number"),
        ({"a": {"gt": float("inf")}}, "not a finite number"),
        ({"a": [1, 2]}, "got list"),
        ({"a": {"eq": {"nested": 1}}}, "got dict"),
        ({"a": {"in": [[1]]}}, "got list"),
        ({"a": b"x"}, "got bytes"),
        ({"created_at": {"gt": "yesterday"}}, "ISO 8601"),
        ({"created_at": {"gt": True}}, "ISO 8601"),
        ({"created_at": {"gt": 1e30}}, "ISO 8601"),
        ({"updated_at": {"in": ["nope"]}}, "ISO 8601"),
        ({"AND": {"a": 1}}, "AND takes a non-empty list"),
        ({"OR": []}, "OR takes a non-empty list"),
        ({"NOT": []}, "NOT takes"),
        ({"AND": [1]}, "must be a mapping"),
        ({"NOT": "x"}, "must be a mapping"),
        ({"AND": [{}]}, "empty filter mapping"),
        ({"": 1}, "bad filter key"),
        ({'a"b': 1}, "bad filter key"),
        ({"a\\b": 1}, "bad filter key"),
        ({"a\nb": 1}, "bad filter key"),
        ({"trailing\n": 1}, "bad filter key"),
        ({"x" * 129: 1}, "bad filter key"),
        ({1: 1}, "bad filter key"),
        ([{"a": 1}], "must be a mapping"),
        ("a = 1", "must be a mapping"),
    ],
)
def test_parse_errors_are_clear(bad: object, words: str) -> None:
    with pytest.raises(InvalidFilterError) as info:
        parse_filters(bad)  # type: ignore[arg-type]
    assert words in str(info.value)
    assert isinstance(info.value, InvalidInputError) and isinstance(info.value, ValueError)


def test_depth_limit() -> None:
    deep: dict = {"a": 1}
    for _ in range(40):
        deep = {"NOT": deep}
    with pytest.raises(InvalidFilterError, match="deeper than"):
        parse_filters(deep)
    ok: dict = {"a": 1}
    for _ in range(30):
        ok = {"AND": [ok]}
    assert parse_filters(ok) is not None


def test_eq_is_type_strict() -> None:
    assert matches(parse_filters({"k": 1}), item(k=1.0))
    assert not matches(parse_filters({"k": 1}), item(k=True))
    assert not matches(parse_filters({"k": True}), item(k=1))
    assert not matches(parse_filters({"k": "1"}), item(k=1))
    assert matches(parse_filters({"k": None}), item())
    assert matches(parse_filters({"k": None}), item(k=None))
    assert not matches(parse_filters({"k": None}), item(k=0))
    assert not matches(parse_filters({"k": 1}), item())


def test_negations_are_exact() -> None:
    assert matches(parse_filters({"k": {"ne": 1}}), item())  # missing field matches ne
    assert matches(parse_filters({"k": {"nin": [1]}}), item())
    assert not matches(parse_filters({"k": {"ne": None}}), item())
    assert matches(parse_filters({"k": {"ne": None}}), item(k=0))
    assert matches(parse_filters({"NOT": {"k": {"gt": 1}}}), item(k="text"))
    assert matches(parse_filters({"k": {"in": [None, 2]}}), item())


def test_order_needs_same_kind() -> None:
    assert matches(parse_filters({"k": {"gt": 1}}), item(k=1.5))
    assert not matches(parse_filters({"k": {"gt": 1}}), item(k="2"))
    assert not matches(parse_filters({"k": {"gt": 0}}), item(k=True))
    assert matches(parse_filters({"k": {"lt": "b"}}), item(k="a"))
    assert matches(parse_filters({"k": {"lt": "a"}}), item(k="Z"))  # code-point order
    assert not matches(parse_filters({"k": {"gte": 0}}), item(k=[1]))
    assert matches(parse_filters({"k": {"gt": 2**63 - 1}}), item(k=1e30))


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 10**30])
def test_integers_beyond_64_bits_are_refused(value: int) -> None:
    with pytest.raises(InvalidFilterError, match="64-bit"):
        parse_filters({"k": value})
    with pytest.raises(InvalidFilterError, match="64-bit"):
        parse_filters({"k": {"in": [1, value]}})


def test_contains() -> None:
    assert matches(parse_filters({"k": {"contains": "ork"}}), item(k="work"))
    assert not matches(parse_filters({"k": {"contains": "ORK"}}), item(k="work"))
    assert matches(parse_filters({"k": {"icontains": "ORK"}}), item(k="work"))
    assert matches(parse_filters({"k": {"icontains": "STRASSE"}}), item(k="Hauptstraße"))
    assert matches(parse_filters({"k": {"contains": "work"}}), item(k=["work", "home"]))
    assert not matches(parse_filters({"k": {"contains": "wor"}}), item(k=["work"]))
    assert matches(parse_filters({"k": {"icontains": "WORK"}}), item(k=["Work"]))
    assert matches(parse_filters({"k": {"contains": 1}}), item(k=[1.0]))
    assert not matches(parse_filters({"k": {"contains": 1}}), item(k=[True]))
    assert not matches(parse_filters({"k": {"contains": 1}}), item(k=1))


def test_builtin_fields() -> None:
    it = item(k=1)
    assert matches(parse_filters({"user_id": "u1"}), it)
    assert matches(parse_filters({"agent_id": None}), it)
    assert matches(parse_filters({"memory": {"icontains": "paris"}}), it)
    assert matches(parse_filters({"created_at": {"gte": "2024-05-01T12:00:00Z"}}), it)
    assert not matches(parse_filters({"created_at": {"gt": datetime(2024, 5, 1, 12, tzinfo=UTC)}}), it)
    assert matches(parse_filters({"updated_at": None}), it)
    assert not matches(parse_filters({"updated_at": {"gt": 0}}), it)
    assert matches(parse_filters({"OR": [{"user_id": "x"}, {"NOT": {"memory": {"contains": "Rome"}}}]}), it)
