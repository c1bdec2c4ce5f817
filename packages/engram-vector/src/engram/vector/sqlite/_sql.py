"""Compile engram filter trees and scopes into SQLite WHERE clauses.

Every atom is wrapped in ``COALESCE(..., 0)`` so it is 0 or 1, never NULL: SQL's three-valued
logic would otherwise make ``NOT`` / ``ne`` / ``nin`` drop rows whose field is missing, unlike the
semantics in :mod:`engram.core._filters`. Values are always bound parameters; metadata keys are
validated by the parser (no quotes, backslashes or control characters) and bound as JSON paths.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from engram.core import And, Cmp, Filter, Not, Or, Scope
from engram.core._filters import TIME_FIELDS

TEXT_COLUMNS = frozenset({"id", "memory", "hash", "user_id", "agent_id", "run_id"})
NOT_NULL_COLUMNS = frozenset({"id", "memory", "hash"})
_ORDER_SQL = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def casefold(value: Any) -> Any:
    """SQL function ``engram_fold(x)``: Python's Unicode case folding (SQLite's lower() is ASCII only)."""
    return value.casefold() if isinstance(value, str) else value


def register_functions(conn: sqlite3.Connection) -> None:
    conn.create_function("engram_fold", 1, casefold, deterministic=True)


def to_micros_value(seconds: float) -> int:
    return round(seconds * 1_000_000)


def scope_sql(scope: Scope | None, params: list[Any], alias: str = "", *, use_index: bool = True) -> str:
    """``user_id = ? AND ...`` for the scope's fields. ``use_index=False`` writes ``+col = ?``
    (SQLite's way to keep a term from choosing the index), for queries that a more selective index
    answers better (a lookup by hash or id)."""
    if scope is None:
        return "1"
    plus = "" if use_index else "+"
    return " AND ".join(f"{plus}{alias}{name} = ?" for name, value in scope.items() if not params.append(value))


def is_key_lookup(f: Filter | None) -> bool:
    """A filter that is a plain ``{"hash"|"id": {"in": [...]}}`` (an indexed lookup)."""
    return isinstance(f, Cmp) and f.op in ("in", "eq") and f.field in ("hash", "id") and f.value is not None


def _json_type_of(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return "num"
    return "text"


def _meta_eq(path_param: str, value: Any, params: list[Any], source: str = "m.metadata") -> str:
    if value is None:
        params.append(path_param)
        params.append(path_param)
        return f"(json_type({source}, ?) IS NULL OR json_type({source}, ?) = 'null')"
    kind = _json_type_of(value)
    if kind in ("true", "false"):
        params.append(path_param)
        return f"json_type({source}, ?) = '{kind}'"
    params.extend([path_param, path_param, value])
    if kind == "num":
        return f"(json_type({source}, ?) IN ('integer', 'real') AND json_extract({source}, ?) = ?)"
    return f"(json_type({source}, ?) = 'text' AND json_extract({source}, ?) = ?)"


def _builtin_eq(field: str, value: Any, params: list[Any]) -> str:
    col = f"m.{field}"
    if value is None:
        return f"{col} IS NULL"
    if field in TIME_FIELDS:
        if isinstance(value, bool):
            return "0"
        params.append(to_micros_value(value))
        return f"{col} = ?"
    if not isinstance(value, str):
        return "0"
    params.append(value)
    return f"{col} = ?"


def _eq(field: str, value: Any, params: list[Any]) -> str:
    if field in TEXT_COLUMNS or field in TIME_FIELDS:
        return _builtin_eq(field, value, params)
    return _meta_eq(f'$."{field}"', value, params)


def _order(field: str, op: str, value: Any, params: list[Any]) -> str:
    sql_op = _ORDER_SQL[op]
    if field in TIME_FIELDS:
        params.append(to_micros_value(value))
        return f"m.{field} {sql_op} ?"
    if field in TEXT_COLUMNS:
        if not isinstance(value, str):
            return "0"
        params.append(value)
        return f"m.{field} {sql_op} ?"
    path = f'$."{field}"'
    types = "('integer', 'real')" if _json_type_of(value) == "num" else "('text')"
    params.extend([path, path, value])
    return f"(json_type(m.metadata, ?) IN {types} AND json_extract(m.metadata, ?) {sql_op} ?)"


def _contains(field: str, value: Any, fold: bool, params: list[Any]) -> str:
    if field in TIME_FIELDS:
        return "0"
    if field in TEXT_COLUMNS:
        if not isinstance(value, str):
            return "0"
        params.append(casefold(value) if fold else value)
        return f"instr(engram_fold(m.{field}), ?) > 0" if fold else f"instr(m.{field}, ?) > 0"
    path = f'$."{field}"'
    parts = []
    if isinstance(value, str):
        params.extend([path, path, casefold(value) if fold else value])
        fn = "engram_fold(json_extract(m.metadata, ?))" if fold else "json_extract(m.metadata, ?)"
        parts.append(f"(json_type(m.metadata, ?) = 'text' AND instr({fn}, ?) > 0)")
    params.extend([path, path])
    elem = _element_eq(value, params, fold)
    parts.append(
        f"(json_type(m.metadata, ?) = 'array' AND EXISTS (SELECT 1 FROM json_each(m.metadata, ?) e WHERE {elem}))"
    )
    return "(" + " OR ".join(parts) + ")"


def _element_eq(value: Any, params: list[Any], fold: bool) -> str:
    kind = _json_type_of(value)
    if kind in ("true", "false"):
        return f"e.type = '{kind}'"
    params.append(casefold(value) if fold and isinstance(value, str) else value)
    if kind == "num":
        return "e.type IN ('integer', 'real') AND e.value = ?"
    return "e.type = 'text' AND engram_fold(e.value) = ?" if fold else "e.type = 'text' AND e.value = ?"


def filter_sql(f: Filter | None, params: list[Any]) -> str:
    """A WHERE fragment over ``memories m`` for a parsed filter; appends its parameters in order."""
    if f is None:
        return "1"
    if isinstance(f, And):
        return "(" + " AND ".join(filter_sql(x, params) for x in f.items) + ")"
    if isinstance(f, Or):
        return "(" + " OR ".join(filter_sql(x, params) for x in f.items) + ")"
    if isinstance(f, Not):
        return f"(NOT {filter_sql(f.item, params)})"
    assert isinstance(f, Cmp)
    if f.op == "eq":
        atom = _eq(f.field, f.value, params)
    elif f.op == "ne":
        atom = f"NOT COALESCE({_eq(f.field, f.value, params)}, 0)"
    elif f.op == "in" and f.field in NOT_NULL_COLUMNS and f.value and all(isinstance(v, str) for v in f.value):
        # A plain IN on a column that is never NULL: the same rows, and SQLite can use an index
        # (the LLM pipeline's duplicate check by content hash, ``{"hash": {"in": [...]}}``).
        params.extend(f.value)
        return f"m.{f.field} IN ({', '.join('?' * len(f.value))})"
    elif f.op in ("in", "nin"):
        atom = "(" + " OR ".join(f"COALESCE({_eq(f.field, v, params)}, 0)" for v in f.value) + ")"
        if f.op == "nin":
            atom = f"NOT {atom}"
    elif f.op in _ORDER_SQL:
        atom = _order(f.field, f.op, f.value, params)
    else:
        atom = _contains(f.field, f.value, f.op == "icontains", params)
    return f"COALESCE({atom}, 0)"
