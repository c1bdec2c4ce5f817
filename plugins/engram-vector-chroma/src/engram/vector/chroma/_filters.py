"""engram filters (:mod:`engram.core._filters`) as Chroma ``where`` clauses, exactly.

The filter tree is rewritten with negations pushed down to the leaves (De Morgan), and each leaf
becomes conditions on the typed projections of :mod:`._layout`:

- ``eq`` / ``in`` compare the projection of the operand's JSON type: a string against ``:s``, a
  bool against ``:b``, a number against ``:i`` when it is an integer in 64 bits and against ``:f``
  when a float equals it exactly (so ``1`` finds ``1`` and ``1.0``, ``True`` finds no number);
  ``None`` means the key is missing or null (its kind marker is absent).
- ``ne`` / ``nin`` / a negated ``eq`` or ``in`` use Chroma's ``$ne`` / ``$nin``, which also match
  records without the key: exactly the negation.
- ``gt gte lt lte`` turn the bound into an exact integer bound for ``:i`` and an exact float
  bound for ``:f``, compared as float keys (``x > 2.5`` is ``i >= 3``; an integer no float holds
  is rounded the right way); a negated range is the opposite range or the kind marker saying the
  key holds no such number. Every operand Chroma sees is an integer, a string or a bool.
- ``contains`` with a number or bool tests the list's element flags with ``$eq True``
  (``$ne True`` when negated, which also matches a list without that element or no list).

Refused with :class:`~engram.core.errors.InvalidFilterError` (the store lacks the
``substring_filters`` and ``string_range_filters`` capabilities): ``contains`` / ``icontains``
with a string (Chroma's metadata filters have no substring test on a string field and no case
folding; its ``$contains`` tests array elements only) and ``gt gte lt lte`` with a string
(Chroma orders numbers only).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from engram.core import Scope
from engram.core._filters import BUILTIN_FIELDS, And, Cmp, Filter, Not, Or
from engram.core.errors import InvalidFilterError

from ._layout import (
    INT64_MAX,
    INT64_MIN,
    SCOPE_KEYS,
    as_exact_float,
    element_code,
    float_key,
    key_token,
    text_digest,
)

__all__ = ["FALSE", "TRUE", "where_clause"]


class _Const:
    def __init__(self, value: bool) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "TRUE" if self.value else "FALSE"


TRUE = _Const(True)
FALSE = _Const(False)
Expr = dict[str, Any] | _Const
_KINDS = ["s", "i", "f", "b", "l", "o"]
_COMPLEMENT = {"$gt": "$lte", "$gte": "$lt", "$lt": "$gte", "$lte": "$gt"}


def _combine(parts: Iterable[Expr], conj: bool) -> Expr:
    """AND (``conj``) or OR of the parts, simplified: constants folded, nested ``$and`` /
    ``$or`` flattened, a single part returned alone."""
    op, absorbing, neutral = ("$and", FALSE, TRUE) if conj else ("$or", TRUE, FALSE)
    out: list[dict[str, Any]] = []
    for p in parts:
        if p is absorbing:
            return absorbing
        if p is neutral:
            continue
        assert isinstance(p, dict)
        out.extend(p[op] if op in p else [p])
    if not out:
        return neutral
    return out[0] if len(out) == 1 else {op: out}


def all_of(parts: Iterable[Expr]) -> Expr:
    return _combine(parts, True)


def any_of(parts: Iterable[Expr]) -> Expr:
    return _combine(parts, False)


def _leaf(key: str, op: str, value: Any) -> dict[str, Any]:
    return {key: {op: value}}


# -- fields --------------------------------------------------------------------------------------


class _MetaField:
    """A metadata key (or ``updated_at``): any JSON type, told apart by the kind marker ``:t``."""

    def __init__(self, token: str, kinds: str = "sifbl") -> None:
        self.token = token
        self.kinds = kinds

    def key(self, kind: str) -> str:
        return f"{self.token}:{kind}"

    def has(self, kind: str) -> Expr:
        return _leaf(f"{self.token}:t", "$eq", kind)

    def lacks(self, kind: str) -> Expr:
        return _leaf(f"{self.token}:t", "$ne", kind)

    def null(self) -> Expr:  # missing, or null: no kind marker
        return _leaf(f"{self.token}:t", "$nin", _KINDS)

    def notnull(self) -> Expr:
        return _leaf(f"{self.token}:t", "$in", _KINDS)

    def text(self, value: str) -> str | None:
        return value


class _FixedField:
    """A built-in field every memory has, of one kind (``s`` or ``f``)."""

    def __init__(self, key: str, kind: str, digest: bool = False) -> None:
        self._key, self.kinds, self._digest = key, kind, digest

    def key(self, kind: str) -> str:
        return self._key

    def has(self, kind: str) -> Expr:
        return TRUE

    def lacks(self, kind: str) -> Expr:
        return FALSE

    def null(self) -> Expr:
        return FALSE

    def notnull(self) -> Expr:
        return TRUE

    def text(self, value: str) -> str | None:
        return text_digest(value) if self._digest else value


class _ScopeField(_FixedField):
    """``user_id`` / ``agent_id`` / ``run_id``: a string, ``""`` standing for unset."""

    def __init__(self, key: str) -> None:
        super().__init__(key, "s")

    def has(self, kind: str) -> Expr:
        return _leaf(self._key, "$ne", "")

    def lacks(self, kind: str) -> Expr:
        return _leaf(self._key, "$eq", "")

    def null(self) -> Expr:
        return self.lacks("s")

    def notnull(self) -> Expr:
        return self.has("s")

    def text(self, value: str) -> str | None:
        return value or None  # no memory's id is "": that value matches nothing


_Field = _MetaField | _FixedField

_BUILTINS: dict[str, _Field] = {
    "id": _FixedField("b:id", "s"),
    "memory": _FixedField("b:memory", "s", digest=True),
    "hash": _FixedField("b:hash", "s"),
    "created_at": _FixedField("b:created_at", "f"),
    "updated_at": _MetaField("b:updated_at", kinds="f"),
    **{name: _ScopeField(key) for name, key in SCOPE_KEYS.items()},
}
assert set(_BUILTINS) == BUILTIN_FIELDS


def _field(name: str) -> _Field:
    return _BUILTINS.get(name) or _MetaField(key_token(name))


# -- numbers ---------------------------------------------------------------------------------------


def _as_int(v: int | float) -> int | None:
    """``v`` as a 64-bit integer when it is one exactly."""
    if isinstance(v, float):
        if not v.is_integer():
            return None
        v = int(v)
    return v if INT64_MIN <= v <= INT64_MAX else None


def _int_bound(op: str, v: int | float) -> tuple[str, int] | _Const:
    """``i op v`` over 64-bit integers ``i`` as ``i >= t`` or ``i <= t`` (or a constant)."""
    if op == "gt":
        cond, t = "$gte", math.floor(v) + 1
    elif op == "gte":
        cond, t = "$gte", math.ceil(v)
    elif op == "lt":
        cond, t = "$lte", math.ceil(v) - 1
    else:
        cond, t = "$lte", math.floor(v)
    if cond == "$gte":
        return FALSE if t > INT64_MAX else TRUE if t <= INT64_MIN else (cond, t)
    return FALSE if t < INT64_MIN else TRUE if t >= INT64_MAX else (cond, t)


def _float_bound(op: str, v: int | float) -> tuple[str, int]:
    """``f op v`` over floats ``f`` as a condition on their float keys: exact even when ``v`` is
    an integer no float holds (then ``f > v`` is ``f >= the next float above v``)."""
    cond = "$" + op
    exact = as_exact_float(v)
    if exact is not None:
        return cond, float_key(exact)
    fv = float(v)  # filter integers fit in 64 bits: no overflow
    lo, hi = (fv, math.nextafter(fv, math.inf)) if fv < v else (math.nextafter(fv, -math.inf), fv)
    return ("$gte", float_key(hi)) if op in ("gt", "gte") else ("$lte", float_key(lo))


def _range(f: _Field, op: str, v: int | float, negate: bool) -> Expr:
    parts: list[Expr] = []
    for kind in f.kinds:
        if kind not in ("i", "f"):
            continue
        bound = _int_bound(op, v) if kind == "i" else _float_bound(op, v)
        if isinstance(bound, _Const):
            if negate:
                parts.append(TRUE if bound is FALSE else f.lacks(kind))
            else:
                parts.append(FALSE if bound is FALSE else f.has(kind))
            continue
        cond, t = bound
        if negate:
            parts.append(any_of([_leaf(f.key(kind), _COMPLEMENT[cond], t), f.lacks(kind)]))
        else:
            parts.append(_leaf(f.key(kind), cond, t))
    return all_of(parts) if negate else any_of(parts)


# -- leaves ----------------------------------------------------------------------------------------


def _refuse(c: Cmp, why: str, capability: str) -> InvalidFilterError:
    return InvalidFilterError(
        f"the chroma vector store cannot evaluate filter {c.op!r} on {c.field!r} with the string "
        f"{c.value!r}: {why}; it lacks the {capability!r} capability (the sqlite store has it)"
    )


def _in(f: _Field, values: Iterable[Any], negate: bool) -> Expr:
    """``field in values`` (or its negation), grouped by JSON type into one ``$in`` per projection."""
    groups: dict[str, list[Any]] = {"s": [], "i": [], "f": [], "b": []}
    null = False
    for v in values:
        if v is None:
            null = True
        elif isinstance(v, bool):
            groups["b"].append(v)
        elif isinstance(v, str):
            if (t := f.text(v)) is not None:
                groups["s"].append(t)
        else:
            if (n := _as_int(v)) is not None:
                groups["i"].append(n)
            if (x := as_exact_float(v)) is not None:
                groups["f"].append(float_key(x))
    parts: list[Expr] = []
    for kind, vals in groups.items():
        if kind not in f.kinds or not vals:
            continue
        vals = list(dict.fromkeys(vals))
        if len(vals) == 1:
            parts.append(_leaf(f.key(kind), "$ne" if negate else "$eq", vals[0]))
        else:
            parts.append(_leaf(f.key(kind), "$nin" if negate else "$in", vals))
    if null:
        parts.append(f.notnull() if negate else f.null())
    return all_of(parts) if negate else any_of(parts)


def _contains(f: _Field, v: Any, negate: bool) -> Expr:
    """A list field holding the number or bool ``v`` as an element: its element flags
    (``1`` finds the flags of ``1`` and of ``1.0``)."""
    if "l" not in f.kinds:
        return TRUE if negate else FALSE
    codes = {element_code(v)}
    if not isinstance(v, bool) and (n := _as_int(v)) is not None:
        codes.add(element_code(n))
    if not isinstance(v, bool) and (x := as_exact_float(v)) is not None:
        codes.add(element_code(x))
    parts = [_leaf(f.key(f"e:{c}"), "$ne" if negate else "$eq", True) for c in sorted(c for c in codes if c)]
    return all_of(parts) if negate else any_of(parts)


def _cmp(c: Cmp, negate: bool) -> Expr:
    f = _field(c.field)
    op, v = c.op, c.value
    if op in ("contains", "icontains"):
        if isinstance(v, str):
            raise _refuse(c, "Chroma's metadata filters cannot test for a substring of a string field "
                             "(their $contains matches whole array elements) nor fold case", "substring_filters")
        return _contains(f, v, negate)
    if op in ("gt", "gte", "lt", "lte"):
        if isinstance(v, str):
            raise _refuse(c, "Chroma's $gt/$gte/$lt/$lte order numbers only, not strings", "string_range_filters")
        return _range(f, op, v, negate)
    if op in ("eq", "ne"):
        return _in(f, [v], negate != (op == "ne"))
    return _in(f, v, negate != (op == "nin"))


def _translate(node: Filter, negate: bool) -> Expr:
    if isinstance(node, Cmp):
        return _cmp(node, negate)
    if isinstance(node, Not):
        return _translate(node.item, not negate)
    parts = [_translate(x, negate) for x in node.items]
    conj = isinstance(node, And) != negate  # NOT (a AND b) = NOT a OR NOT b
    assert isinstance(node, And | Or)
    return all_of(parts) if conj else any_of(parts)


def where_clause(scope: Scope | None, filters: Filter | None) -> Expr:
    """The ``where`` clause for a scope and a parsed filter: a Chroma ``where`` mapping, ``TRUE``
    (no condition: pass no ``where``) or ``FALSE`` (nothing can match: ask Chroma nothing).

    Raises:
        InvalidFilterError: a substring or string-range filter (see the module docstring).
    """
    parts: list[Expr] = []
    if scope is not None:
        parts += [_leaf(SCOPE_KEYS[name], "$eq", value) for name, value in scope.items()]
    if filters is not None:
        parts.append(_translate(filters, False))
    return all_of(parts)
