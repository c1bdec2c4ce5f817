"""Neighbour lookup for the sqlite store: the memories written just before and after given ones."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from engram.core import Filter, MemoryItem, Scope

from ._sql import filter_sql, scope_sql


def neighbors(
    conn: sqlite3.Connection,
    scope: Scope,
    ids: Sequence[str],
    filters: Filter | None,
    cols: str,
    to_item: Callable[[Sequence[Any]], MemoryItem],
) -> dict[str, list[MemoryItem]]:
    """``{id: [previous, next]}`` among the active memories of ``scope`` matching ``filters``,
    ordered by ``(created_at, seq)``; two indexed probes per id (the scope indexes are on
    ``(scope field, created_at)``, and ``seq`` is the rowid every index carries)."""
    out: dict[str, list[MemoryItem]] = {}
    base: list[Any] = []
    where = f"{scope_sql(scope, base, 'm.')} AND {filter_sql(filters, base)} AND m.archived_at IS NULL"
    own: list[Any] = []
    own_where = scope_sql(scope, own, "m.", use_index=False)
    for mid in dict.fromkeys(ids):
        row = conn.execute(
            f"SELECT m.seq, m.created_at FROM memories m WHERE m.id = ? AND m.archived_at IS NULL AND {own_where}",
            [mid, *own],
        ).fetchone()
        if row is None:
            continue
        seq, created = row
        found = []
        for cmp, order in (("<", "DESC"), (">", "ASC")):
            r = conn.execute(
                f"SELECT {cols} FROM memories m WHERE {where}"
                f" AND m.created_at {cmp}= ? AND (m.created_at {cmp} ? OR m.seq {cmp} ?)"  # a range the index uses
                f" ORDER BY m.created_at {order}, m.seq {order} LIMIT 1",
                [*base, created, created, seq],
            ).fetchone()
            if r is not None:
                found.append(to_item(r))
        out[mid] = found
    return out
