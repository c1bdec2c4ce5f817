"""Metadata filters: a small tree parsed from mem0-style mappings, evaluated inside each store.

Syntax (a mapping; several keys at one level are ANDed)::

    {"category": "travel"}                              # eq
    {"priority": {"gte": 2, "lt": 5}}                   # several operators on one field: AND
    {"tags": {"contains": "work"}}                      # substring of a string, or element of a list
    {"OR": [{"city": "Paris"}, {"city": {"in": ["Rome", "Oslo"]}}]}
    {"NOT": {"status": "done"}}
    {"created_at": {"gte": "2024-05-01T00:00:00Z"}}     # built-in fields take datetimes or ISO 8601

Operators: ``eq ne gt gte lt lte in nin contains icontains``. Keys name metadata fields, except
the built-in fields ``id memory hash user_id agent_id run_id created_at updated_at``.

Semantics (every store implements exactly these; the conformance suite checks them):

- ``eq``: the field is present and equal, compared by JSON type (``True`` is not ``1``, ``1`` equals
  ``1.0``); ``{"k": None}`` matches a missing or null field.
- ``gt gte lt lte``: numbers against numbers, strings against strings (code-point order), times
  against times; a field of another type, or missing, does not match.
- Integers must fit in signed 64 bits (as in SQLite, Qdrant and Chroma); floats may be any
  finite value.
- ``in``: equal to any listed value. ``contains``: a string field holding the substring
  (case-sensitive), or a list field holding the value as an element. ``icontains``: the same,
  ignoring case (Unicode case folding).
- ``ne``, ``nin`` and ``NOT`` are the exact negations of ``eq``, ``in`` and their operand: a missing
  field matches ``{"k": {"ne": 1}}``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ._types import parse_time
from .errors import InvalidFilterError

__all__ = [
    "BUILTIN_FIELDS",
    "OPERATORS",
    "TIME_FIELDS",
    "And",
    "Cmp",
    "Filter",
    "Not",
    "Or",
    "parse_filters",
]

OPERATORS = frozenset({"eq", "ne", "gt", "gte", "lt", "lte", "in", "nin", "contains", "icontains"})
BUILTIN_FIELDS = frozenset({"id", "memory", "hash", "user_id", "agent_id", "run_id", "created_at", "updated_at"})
TIME_FIELDS = frozenset({"created_at", "updated_at"})
_KEY_RE = re.compile(r'[^"\\\x00-\x1f\x7f]{1,128}')  # used with fullmatch: "$" would accept a trailing newline
_MAX_DEPTH = 32
_MAX_LIST = 10_000
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING"})()


@dataclass(frozen=True, slots=True)
class Cmp:
    """``field op value``. ``value`` is a scalar, a tuple of scalars (in/nin), or POSIX seconds
    for the time fields."""

    field: str
    op: str
    value: Any


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Filter


Filter = Cmp | And | Or | Not


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _scalar(value: Any, where: str) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and not INT64_MIN <= value <= INT64_MAX:
        raise InvalidFilterError(
            f"{where}: integer {value} is outside the signed 64-bit range that stores index; use a float"
        )
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidFilterError(f"{where}: {value!r} is not a finite number")
        return value
    raise InvalidFilterError(f"{where}: expected a string, number, boolean or null, got {type(value).__name__}")


def _time_value(value: Any, where: str) -> float:
    if isinstance(value, bool):
        raise InvalidFilterError(f"{where}: expected a datetime, ISO 8601 string or POSIX seconds")
    try:
        return parse_time(value).timestamp()
    except (ValueError, TypeError, OverflowError, OSError) as exc:
        raise InvalidFilterError(f"{where}: expected a datetime, ISO 8601 string or POSIX seconds ({exc})") from None


def _cmp(field: str, op: str, value: Any) -> Cmp:
    where = f"filter on {field!r} ({op})"
    if op not in OPERATORS:
        raise InvalidFilterError(f"{where}: unknown operator {op!r}; expected one of {sorted(OPERATORS)}")
    if op in ("in", "nin"):
        if not isinstance(value, list | tuple) or not value:
            raise InvalidFilterError(f"{where}: expected a non-empty list")
        if len(value) > _MAX_LIST:
            raise InvalidFilterError(f"{where}: at most {_MAX_LIST} values")
        if field in TIME_FIELDS:
            return Cmp(field, op, tuple(_time_value(v, where) for v in value))
        return Cmp(field, op, tuple(_scalar(v, where) for v in value))
    if field in TIME_FIELDS and op not in ("contains", "icontains"):
        if value is None and op in ("eq", "ne"):
            return Cmp(field, op, None)
        return Cmp(field, op, _time_value(value, where))
    value = _scalar(value, where)
    if op in ("gt", "gte", "lt", "lte") and (value is None or isinstance(value, bool)):
        raise InvalidFilterError(f"{where}: expected a number or a string")
    if op == "icontains" and not isinstance(value, str):
        raise InvalidFilterError(f"{where}: expected a string")
    if op == "contains" and value is None:
        raise InvalidFilterError(f"{where}: expected a string, number or boolean")
    return Cmp(field, op, value)


def _parse(node: Any, depth: int) -> Filter:
    if depth > _MAX_DEPTH:
        raise InvalidFilterError(f"filter nested deeper than {_MAX_DEPTH} levels")
    if not isinstance(node, Mapping):
        raise InvalidFilterError(f"a filter must be a mapping, got {type(node).__name__}")
    if not node:
        raise InvalidFilterError("empty filter mapping")
    parts: list[Filter] = []
    for key, value in node.items():
        if key in ("AND", "OR"):
            if not isinstance(value, list | tuple) or not value:
                raise InvalidFilterError(f"{key} takes a non-empty list of filters")
            items = tuple(_parse(v, depth + 1) for v in value)
            parts.append(And(items) if key == "AND" else Or(items))
        elif key == "NOT":
            if isinstance(value, list | tuple):
                if not value:
                    raise InvalidFilterError("NOT takes a filter or a non-empty list of filters")
                inner: Filter = And(tuple(_parse(v, depth + 1) for v in value))
            else:
                inner = _parse(value, depth + 1)
            parts.append(Not(inner))
        else:
            if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
                raise InvalidFilterError(
                    f"bad filter key {key!r}: 1-128 characters, no quotes, backslashes or control characters"
                )
            if isinstance(value, Mapping):
                if not value:
                    raise InvalidFilterError(f"filter on {key!r}: empty operator mapping")
                for op, operand in value.items():
                    parts.append(_cmp(key, op, operand))
            else:
                parts.append(_cmp(key, "eq", value))
    return parts[0] if len(parts) == 1 else And(tuple(parts))


def parse_filters(filters: Mapping[str, Any] | Filter | None) -> Filter | None:
    """Parse a mem0-style filter mapping into a tree; ``None`` and ``{}`` give ``None``.

    Raises:
        InvalidFilterError: unknown operator, wrong value type, bad key, or malformed AND/OR/NOT.
    """
    if filters is None:
        return None
    if isinstance(filters, Cmp | And | Or | Not):
        return filters
    if isinstance(filters, Mapping) and not filters:
        return None
    return _parse(filters, 0)


# --- evaluation in Python (in-process stores, and the truth the conformance suite checks against)


def _json_kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "text"
    if isinstance(v, list | tuple):
        return "array"
    return "object"


def _eq(a: Any, b: Any) -> bool:
    if b is None:
        return a is MISSING or a is None
    if a is MISSING:
        return False
    ka, kb = _json_kind(a), _json_kind(b)
    return ka == kb and a == b


def _order(a: Any, b: Any, op: str) -> bool:
    if a is MISSING:
        return False
    ka, kb = _json_kind(a), _json_kind(b)
    if ka != kb or ka not in ("number", "text"):
        return False
    if op == "gt":
        return a > b
    if op == "gte":
        return a >= b
    if op == "lt":
        return a < b
    return a <= b


def _contains(a: Any, b: Any, fold: bool) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return b.casefold() in a.casefold() if fold else b in a
    if isinstance(a, list | tuple):
        if fold:
            return any(isinstance(x, str) and x.casefold() == b.casefold() for x in a)
        return any(_eq(x, b) for x in a)
    return False


def field_value(item: Any, field: str) -> Any:
    """The value a filter sees for ``field`` on a :class:`~engram.core.MemoryItem` (times as POSIX seconds)."""
    if field in BUILTIN_FIELDS:
        v = getattr(item, field)
        if isinstance(v, datetime):
            return v.timestamp()
        return v
    return item.metadata.get(field, MISSING)


def matches(f: Filter | None, item: Any) -> bool:
    """Evaluate a parsed filter against one memory item, with the semantics in the module docstring."""
    if f is None:
        return True
    if isinstance(f, And):
        return all(matches(x, item) for x in f.items)
    if isinstance(f, Or):
        return any(matches(x, item) for x in f.items)
    if isinstance(f, Not):
        return not matches(f.item, item)
    a = field_value(item, f.field)
    op = f.op
    if op == "eq":
        return _eq(a, f.value)
    if op == "ne":
        return not _eq(a, f.value)
    if op == "in":
        return any(_eq(a, v) for v in f.value)
    if op == "nin":
        return not any(_eq(a, v) for v in f.value)
    if op in ("gt", "gte", "lt", "lte"):
        return _order(a, f.value, op)
    return _contains(a, f.value, fold=op == "icontains")
