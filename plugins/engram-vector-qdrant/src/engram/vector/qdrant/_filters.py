"""engram filters (:mod:`engram.core._filters`) as Qdrant ``Filter`` objects, exactly.

Every filter is evaluated by Qdrant on the typed projections of :mod:`._layout`; nothing is
filtered again in Python. The translation keeps engram's semantics:

- equality by JSON type: a string only equals a string (``MatchValue`` on ``s``), a boolean a
  boolean (``b``), a number a number, exactly: integers (and integral floats) through the
  integer projection ``i`` (``1`` equals ``1.0``), other floats through their order key
  ``kh kl`` on values without an ``i``;
- ``null`` matches a missing or null field: the key's name is not in ``keys``;
- ``gt gte lt lte`` with a number: the order key of ``float(value)`` compared with the operand's,
  as a pair of 32-bit integers (no float crosses the wire, see :mod:`._layout`); where ``float``
  rounds (operands at or beyond ``2**53``), values that tie with the operand as floats are decided
  exactly by the two 32-bit halves ``hi lo`` of their integer;
- ``in`` is an OR of equalities, ``contains`` with a number or boolean an element of a list (``li
  lk lb``); ``ne``, ``nin`` and ``NOT`` are ``must_not`` of the same condition, so they are exact
  negations (a missing field matches them);
- built-in fields: ``id memory hash user_id agent_id run_id`` are strings (``user_id``... may be
  missing), ``created_at updated_at`` times compared with ``DatetimeRange`` to the microsecond.

Two kinds of filter are refused with :class:`~engram.core.errors.InvalidFilterError`, because
Qdrant has no exact equivalent: ``contains``/``icontains`` with a string operand (a substring test;
Qdrant's text match is token-based on the server and a plain substring test in local mode, so the
two would disagree) and ``gt gte lt lte`` with a string operand (Qdrant orders numbers and times,
not strings).

A condition that can never hold (``{"id": None}``, a number range on a string built-in) folds to
:data:`NOTHING`, one that always holds to :data:`EVERYTHING`; callers answer ``NOTHING`` without
asking Qdrant (an empty ``should`` would mean different things in local and server mode).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from engram.core import And, Cmp, Filter, Not, Or
from engram.core.errors import InvalidFilterError
from qdrant_client import models as m

from ._layout import BIG, exact_int, field_name, float_key

__all__ = ["EVERYTHING", "NOTHING", "Node", "all_of", "any_of", "negate", "translate"]


class _Const:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


EVERYTHING = _Const("EVERYTHING")
NOTHING = _Const("NOTHING")
Node = Any  # a qdrant Condition (FieldCondition, IsEmptyCondition, Filter) or one of the constants

_TEXT_BUILTINS = ("id", "memory", "hash", "user_id", "agent_id", "run_id")
_OPTIONAL = ("user_id", "agent_id", "run_id")
_RANGE_OPS = ("gt", "gte", "lt", "lte")
_MASK = 0xFFFFFFFF
_COMPARE = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}


def _combine(parts: Iterable[Node], absorbing: _Const, neutral: _Const, clause: str) -> Node:
    """AND (``clause="must"``) or OR (``"should"``) of the parts, folding the constants: the
    absorbing one decides alone, the neutral one drops out."""
    kept = []
    for p in parts:
        if p is absorbing:
            return absorbing
        if p is not neutral:
            kept.append(p)
    if not kept:
        return neutral
    if len(kept) == 1:
        return kept[0]
    return m.Filter(must=kept) if clause == "must" else m.Filter(should=kept)


def all_of(parts: Iterable[Node]) -> Node:
    """AND, folding the constants."""
    return _combine(parts, NOTHING, EVERYTHING, "must")


def any_of(parts: Iterable[Node]) -> Node:
    """OR, folding the constants."""
    return _combine(parts, EVERYTHING, NOTHING, "should")


def negate(node: Node) -> Node:
    """NOT, folding the constants."""
    if node is EVERYTHING:
        return NOTHING
    if node is NOTHING:
        return EVERYTHING
    return m.Filter(must_not=[node])


def _match(key: str, value: Any) -> m.FieldCondition:
    return m.FieldCondition(key=key, match=m.MatchValue(value=value))


def _range(key: str, **bounds: int) -> m.FieldCondition:
    """A range on integer halves below 2**32 in size: exact as floats, on the wire and in Qdrant."""
    return m.FieldCondition(key=key, range=m.Range(**{k: float(v) for k, v in bounds.items()}))


def _empty(key: str) -> m.IsEmptyCondition:
    return m.IsEmptyCondition(is_empty=m.PayloadField(key=key))


def _refuse(c: Cmp) -> None:
    if c.op in ("contains", "icontains") and isinstance(c.value, str):
        raise InvalidFilterError(
            f"filter on {c.field!r} ({c.op} {c.value!r}): the qdrant vector store cannot test substrings "
            f"exactly (Qdrant's text match is token-based on a server and a substring test in local mode), "
            f"so {c.op} with a string is refused. Use eq or in on the whole value, or contains with a "
            f"number or boolean for list elements; for substring filters use the sqlite vector store"
        )
    if c.op in _RANGE_OPS and isinstance(c.value, str):
        raise InvalidFilterError(
            f"filter on {c.field!r} ({c.op} {c.value!r}): the qdrant vector store cannot order strings "
            f"(Qdrant's range filters compare numbers and times only), so {c.op} with a string is refused. "
            f"Store the value as a number, or use eq / in; for string ranges use the sqlite vector store"
        )


# -- numbers on a metadata field ---------------------------------------------------------------


def _lex(high: str, low: str, op: str, value: int) -> Node:
    """``(high, low) op (value >> 32, value & 0xFFFFFFFF)`` in lexicographic order: an exact
    comparison of a 64-bit integer stored as two halves that are exact as floats."""
    h, lo = value >> 32, value & _MASK
    same = _range(high, gte=h, lte=h)
    if op == "eq":
        return all_of([same, _range(low, gte=lo, lte=lo)])
    above = "gt" if op in ("gt", "gte") else "lt"
    return any_of([_range(high, **{above: h}), all_of([same, _range(low, **{op: lo})])])


def _num_eq(p: str, b: int | float) -> Node:
    i = exact_int(b)
    if i is not None:
        return _match(f"{p}.i", i)
    # a float with a fraction or beyond 64 bits: only a value without an integer form can equal it
    return all_of([_lex(f"{p}.kh", f"{p}.kl", "eq", float_key(b)), _empty(f"{p}.i")])


def _num_range(p: str, op: str, b: int | float) -> Node:
    fb = float(b)
    key = float_key(fb)
    if abs(fb) < BIG:  # every number keeps its side of fb as a float
        return _lex(f"{p}.kh", f"{p}.kl", op, key)
    # float() is monotonic, so float(v) > fb implies v > b; only values whose float is fb need care
    strict = _lex(f"{p}.kh", f"{p}.kl", "gt" if op in ("gt", "gte") else "lt", key)
    tie = _lex(f"{p}.kh", f"{p}.kl", "eq", key)
    # tied values without an integer form are floats equal to fb: the comparison is a constant
    floats = all_of([tie, _empty(f"{p}.i")]) if _COMPARE[op](fb, b) else NOTHING
    if abs(fb) > 2**63:  # no 64-bit integer ties with it
        return any_of([strict, floats])
    n = int(b)  # b is integral here (a float of this size, or an int)
    if op == "gt":
        ints = _lex(f"{p}.hi", f"{p}.lo", "gte", n + 1)
    elif op == "gte":
        ints = _lex(f"{p}.hi", f"{p}.lo", "gte", n)
    elif op == "lt":
        ints = _lex(f"{p}.hi", f"{p}.lo", "lte", n - 1)
    else:
        ints = _lex(f"{p}.hi", f"{p}.lo", "lte", n)
    return any_of([strict, floats, all_of([tie, ints])])


# -- one comparison --------------------------------------------------------------------------


def _eq_meta(p: str, name: str, v: Any) -> Node:
    if v is None:
        return negate(_match("keys", name))
    if isinstance(v, bool):
        return _match(f"{p}.b", v)
    if isinstance(v, str):
        return _match(f"{p}.s", v)
    return _num_eq(p, v)


def _in_meta(p: str, name: str, values: tuple[Any, ...]) -> Node:
    strs = list(dict.fromkeys(v for v in values if isinstance(v, str)))
    ints = list(dict.fromkeys(i for v in values if (i := exact_int(v)) is not None))
    parts: list[Node] = []
    if strs:
        parts.append(m.FieldCondition(key=f"{p}.s", match=m.MatchAny(any=strs)))
    if ints:
        parts.append(m.FieldCondition(key=f"{p}.i", match=m.MatchAny(any=ints)))
    for v in dict.fromkeys(v for v in values if not isinstance(v, str) and exact_int(v) is None):
        parts.append(_eq_meta(p, name, v))  # booleans, null, other floats
    return any_of(parts)


def _contains_meta(p: str, v: Any) -> Node:
    if isinstance(v, bool):
        return _match(f"{p}.lb", v)
    i = exact_int(v)
    if i is not None:
        return _match(f"{p}.li", i)
    return _match(f"{p}.lk", float_key(float(v)) - 2**63)


def _equality(op: str, v: Any, eq: Callable[[Any], Node], members: Callable[[Any], Node]) -> Node | None:
    """``eq``, ``ne``, ``in`` and ``nin`` from a field's equality and membership tests, the
    negative ones as exact negations; ``None`` for the other operators."""
    if op in ("eq", "ne"):
        found = eq(v)
    elif op in ("in", "nin"):
        found = members(v)
    else:
        return None
    return found if op in ("eq", "in") else negate(found)


def _metadata(c: Cmp) -> Node:
    name = field_name(c.field)
    p = f"f.{name}"
    op, v = c.op, c.value
    found = _equality(op, v, lambda x: _eq_meta(p, name, x), lambda xs: _in_meta(p, name, xs))
    if found is not None:
        return found
    if op in _RANGE_OPS:
        return _num_range(p, op, v)
    return _contains_meta(p, v)  # contains with a number or boolean


def _when(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)  # back on the microsecond grid it came from


def _time_range(field: str, **bounds: float) -> m.FieldCondition:
    return m.FieldCondition(key=field, range=m.DatetimeRange(**{k: _when(v) for k, v in bounds.items()}))


def _time_eq(field: str, v: float | None) -> Node:
    if v is None:
        return _empty(field) if field == "updated_at" else NOTHING
    return _time_range(field, gte=v, lte=v)


def _time(c: Cmp) -> Node:
    op, v = c.op, c.value
    found = _equality(
        op, v, lambda t: _time_eq(c.field, t), lambda ts: any_of(_time_eq(c.field, t) for t in ts)
    )
    if found is not None:
        return found
    if op in _RANGE_OPS:
        return _time_range(c.field, **{op: v})
    return NOTHING  # contains with a number: a time is not a list


def _text_eq(field: str, v: Any) -> Node:
    if v is None:
        return _empty(field) if field in _OPTIONAL else NOTHING
    return _match(field, v) if isinstance(v, str) else NOTHING


def _text_in(field: str, values: tuple[Any, ...]) -> Node:
    strs = list(dict.fromkeys(x for x in values if isinstance(x, str)))
    parts: list[Node] = [m.FieldCondition(key=field, match=m.MatchAny(any=strs))] if strs else []
    if any(x is None for x in values):
        parts.append(_text_eq(field, None))
    return any_of(parts)


def _text(c: Cmp) -> Node:
    found = _equality(c.op, c.value, lambda x: _text_eq(c.field, x), lambda xs: _text_in(c.field, xs))
    return (
        NOTHING if found is None else found
    )  # a number range, or contains with a number: never true of a string


def _cmp(c: Cmp) -> Node:
    _refuse(c)
    if c.field in ("created_at", "updated_at"):
        return _time(c)
    if c.field in _TEXT_BUILTINS:
        return _text(c)
    return _metadata(c)


def translate(f: Filter | None) -> Node:
    """The Qdrant condition for a parsed engram filter (``None``: :data:`EVERYTHING`).

    Raises:
        InvalidFilterError: the filter holds a comparison Qdrant cannot evaluate exactly
            (see the module docstring); the message names the operator, the field and why.
    """
    if f is None:
        return EVERYTHING
    if isinstance(f, Cmp):
        return _cmp(f)
    if isinstance(f, And):
        return all_of([translate(x) for x in f.items])  # every part is translated (and checked)
    if isinstance(f, Or):
        return any_of([translate(x) for x in f.items])
    if isinstance(f, Not):
        return negate(translate(f.item))
    raise InvalidFilterError(f"not a parsed filter: {f!r}")
