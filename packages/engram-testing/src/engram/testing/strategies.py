"""Hypothesis strategies for engram property tests: filters, query strings, scopes, metadata.

Example::

    from hypothesis import given
    from engram.testing import strategies as est

    @given(est.any_filters())
    def test_parse_never_crashes(mapping):
        try:
            parse_filters(mapping)
        except InvalidFilterError:
            pass
"""

from __future__ import annotations

import math
from typing import Any

from engram.core import Scope
from engram.core._filters import BUILTIN_FIELDS, OPERATORS
from hypothesis import strategies as st

from ._data import BASE_TIME, FILTER_KEYS, NASTY_QUERIES

__all__ = [
    "any_filters",
    "filter_keys",
    "json_scalars",
    "metadata",
    "query_strings",
    "scope_ids",
    "scopes",
    "valid_filters",
]

_ODD_KEYS = ["", "a\nb", 'q"uote', "back\\slash", "x" * 129, "a.b", "$", "AND", "OR", "NOT", "💡", "\x00", "abc\n"]


def json_scalars(*, finite: bool = False) -> st.SearchStrategy[Any]:
    """JSON scalars with the awkward ones: huge ints, -0.0, 1e308, NaN and infinities (unless ``finite``)."""
    floats = st.floats(allow_nan=not finite, allow_infinity=not finite)
    return st.one_of(
        st.none(), st.booleans(), st.integers(), st.integers(min_value=-(2**70), max_value=2**70),
        st.sampled_from([0, 1, -1, 2**63 - 1, 2**63, -(2**63), 10**30]), floats,
        st.sampled_from([0.0, -0.0, 1.0, 0.5, 1e308, -1e-308]), st.text(max_size=20),
        st.sampled_from(["", "1", "true", "null", "work", "Work", "straße", "%", "_", "'", '"', "🙂"]),
    )


def filter_keys(*, valid_only: bool = False) -> st.SearchStrategy[Any]:
    """Field names: metadata keys, built-in fields and (unless ``valid_only``) malformed keys and
    non-string keys."""
    good = st.one_of(st.sampled_from(sorted(FILTER_KEYS) + sorted(BUILTIN_FIELDS)),
                     st.text(st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters='"\\'),
                             min_size=1, max_size=12).filter(lambda k: k not in ("AND", "OR", "NOT")))
    if valid_only:
        return good
    return st.one_of(good, st.sampled_from(_ODD_KEYS), st.text(max_size=8), st.integers(), st.none(),
                     st.tuples(st.integers()))


def _operands() -> st.SearchStrategy[Any]:
    return st.one_of(
        json_scalars(), st.lists(json_scalars(), max_size=4), st.dictionaries(st.text(max_size=3), json_scalars(),
                                                                              max_size=2),
        st.sampled_from([b"bytes", {1, 2}, object(), (1, 2), [], [[1]], [{"a": 1}], BASE_TIME, "2024-05-01T12:00:00Z",
                         "not a time", 1e20, float("nan")]),
    )


def any_filters(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Any filter-shaped (or not) value: valid and invalid mappings, nested AND/OR/NOT, odd keys,
    unknown operators, wrong types, NaN, huge ints, non-mappings. ``parse_filters`` must either
    accept it or raise :class:`~engram.core.errors.InvalidFilterError`."""
    ops = st.one_of(st.sampled_from(sorted(OPERATORS)), st.sampled_from(["EQ", "$eq", "like", "", "regex"]),
                    st.integers())
    leaf = st.one_of(
        st.dictionaries(filter_keys(), _operands(), min_size=1, max_size=2),
        st.dictionaries(filter_keys(), st.dictionaries(ops, _operands(), max_size=3), min_size=1, max_size=2),
    )

    def extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.one_of(
            st.builds(lambda xs: {"AND": xs}, st.lists(children, max_size=3)),
            st.builds(lambda xs: {"OR": xs}, st.lists(children, max_size=3)),
            st.builds(lambda x: {"NOT": x}, children),
            st.builds(lambda xs: {"NOT": xs}, st.lists(children, max_size=2)),
            st.builds(lambda a, b: {**a, **b}, children, children),
            st.builds(lambda x: {"AND": x}, children),  # AND with a mapping instead of a list
        )

    tree = st.recursive(leaf, extend, max_leaves=max_leaves)
    return st.one_of(tree, st.none(), st.just({}), json_scalars(), st.lists(tree, max_size=2), st.text(max_size=5))


def _valid_scalar() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(), st.booleans(), st.integers(min_value=-5, max_value=12), st.sampled_from([10**12, 0.5, 1.0, 2.25,
                                                                                             -1.5, 1e-9, 4.0, 2**63 - 1, -(2**63), 1e30]),
        st.sampled_from(["travel", "Work", "work", "", "1", "abc", "straße", "STRASSE", "Paris", "urgent", "x",
                         "wild", "%", "_", "'", "Rome", "a"]),
    )


def valid_filters(keys: tuple[str, ...] = (*FILTER_KEYS, "memory", "user_id", "agent_id", "run_id"),
                  max_leaves: int = 6) -> st.SearchStrategy[dict[str, Any]]:
    """Well-formed filters over the given keys with values that meet the filter dataset's: every
    operator, time comparisons on ``created_at``/``updated_at``, nested AND/OR/NOT. Some may still be
    rejected (``{"k": {"gt": None}}``): callers skip those that raise InvalidFilterError."""
    key = st.sampled_from(keys)
    times = st.sampled_from([BASE_TIME.isoformat(), "2024-05-01T12:03:00Z", BASE_TIME.timestamp() + 330, None])
    cmp = st.one_of(
        st.builds(lambda k, v: {k: v}, key, _valid_scalar()),
        st.builds(lambda k, op, v: {k: {op: v}}, key, st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"]),
                  _valid_scalar()),
        st.builds(lambda k, op, v: {k: {op: v}}, key, st.sampled_from(["in", "nin"]),
                  st.lists(_valid_scalar(), min_size=1, max_size=4)),
        st.builds(lambda k, op, v: {k: {op: v}}, key, st.sampled_from(["contains", "icontains"]),
                  st.one_of(st.sampled_from(["ork", "W", "ß", "strasse", "", "a", "%"]), _valid_scalar())),
        st.builds(lambda k, op, v: {k: {op: v}}, st.sampled_from(["created_at", "updated_at"]),
                  st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"]), times),
    )

    def extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.one_of(
            st.builds(lambda xs: {"AND": xs}, st.lists(children, min_size=1, max_size=3)),
            st.builds(lambda xs: {"OR": xs}, st.lists(children, min_size=1, max_size=3)),
            st.builds(lambda x: {"NOT": x}, children),
        )

    return st.recursive(cmp, extend, max_leaves=max_leaves)


def query_strings() -> st.SearchStrategy[str]:
    """Any text a user might type, weighted towards full-text-search syntax and odd characters."""
    syntax = st.sampled_from(['"', "'", "(", ")", "*", "^", "-", "+", ":", "AND", "OR", "NOT", "NEAR", "NEAR(",
                              "?", "%", "_", "{", "}", "[", "]", "\\", "/", ".", ",", ";", "🙂", "\x00", " ", "\t"])
    words = st.sampled_from(["paris", "cat", "runs", "running", "memory", "shared", "Caroline's", "don't", "ß",
                             "東京", "a", "x" * 300])
    mixed = st.lists(st.one_of(syntax, words, st.text(max_size=6)), max_size=12).map(
        lambda parts: "".join(p + (" " if i % 2 else "") for i, p in enumerate(parts))
    )
    return st.one_of(st.text(), mixed, st.sampled_from(NASTY_QUERIES))


def scope_ids() -> st.SearchStrategy[str]:
    """Valid scope ids from a small alphabet (so scopes collide) plus wildcard and quote characters."""
    return st.one_of(st.sampled_from(["a", "b", "c", "u1", "u%", "u_", "%", "_", "o'b", 'q"', "Ü", "a b"]),
                     st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=4))


def scopes(ids: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[Scope]:
    """Valid scopes: any non-empty combination of user, agent and run ids."""
    ids = ids or scope_ids()
    opt = st.one_of(st.none(), ids)
    return st.tuples(opt, opt, opt).filter(lambda t: any(v is not None for v in t)).map(lambda t: Scope(*t))


def metadata() -> st.SearchStrategy[dict[str, Any]]:
    """JSON-compatible metadata mappings (finite numbers) as callers store them."""
    value = st.recursive(
        json_scalars(finite=True).filter(lambda v: not (isinstance(v, float) and math.isinf(v))),
        lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(st.text(max_size=4), c, max_size=3)),
        max_leaves=6,
    )
    return st.dictionaries(filter_keys(valid_only=True), value, max_size=5)
