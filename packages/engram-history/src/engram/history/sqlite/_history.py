from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from engram.core import Event, HistoryEvent
from pydantic import BaseModel, ConfigDict

from ._db import Database, default_db_path, path_from_url

HISTORY_SCHEMA = """
CREATE TABLE IF NOT EXISTS history (
    seq        INTEGER PRIMARY KEY,  -- insertion order (rows are never deleted but by reset)
    id         TEXT NOT NULL,
    memory_id  TEXT NOT NULL,
    event      TEXT NOT NULL CHECK (event IN ('ADD', 'UPDATE', 'DELETE')),
    old_memory TEXT,
    new_memory TEXT,
    user_id    TEXT,
    agent_id   TEXT,
    run_id     TEXT,
    actor_id   TEXT,
    role       TEXT,
    created_at INTEGER NOT NULL,  -- microseconds since the Unix epoch, UTC
    metadata   TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS history_by_memory ON history (memory_id, seq);
"""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(dt: datetime) -> int:
    """Aware datetime -> integer microseconds since the Unix epoch (exact, unlike float seconds)."""
    d = dt - _EPOCH
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


def from_micros(us: int) -> datetime:
    """Inverse of :func:`to_micros`, aware UTC."""
    return _EPOCH + timedelta(microseconds=us)


_INSERT = (
    "INSERT INTO history (id, memory_id, event, old_memory, new_memory, user_id, agent_id, run_id,"
    " actor_id, role, created_at, metadata) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
)


def insert_events(conn: sqlite3.Connection, events: Sequence[HistoryEvent]) -> None:
    """Insert history rows on ``conn`` (inside the caller's transaction)."""
    conn.executemany(
        _INSERT,
        [
            (e.id, e.memory_id, str(e.event), e.old_memory, e.new_memory, e.user_id, e.agent_id, e.run_id,
             e.actor_id, e.role, to_micros(e.created_at), json.dumps(e.metadata, ensure_ascii=False))
            for e in events
        ],
    )


def select_history(conn: sqlite3.Connection, memory_id: str) -> list[HistoryEvent]:
    """One memory's events, oldest first (insertion order)."""
    rows = conn.execute(
        "SELECT id, memory_id, event, old_memory, new_memory, user_id, agent_id, run_id, actor_id, role,"
        " created_at, metadata FROM history WHERE memory_id = ? ORDER BY seq",
        (memory_id,),
    ).fetchall()
    return [
        HistoryEvent(
            id=r[0], memory_id=r[1], event=Event(r[2]), old_memory=r[3], new_memory=r[4], user_id=r[5],
            agent_id=r[6], run_id=r[7], actor_id=r[8], role=r[9],
            created_at=from_micros(r[10]), metadata=json.loads(r[11]),
        )
        for r in rows
    ]


def create_schema(conn: sqlite3.Connection, schema: str) -> None:
    """Run ``;``-separated DDL inside the caller's transaction (``executescript`` would commit)."""
    for stmt in schema.split(";"):
        if stmt.strip():
            conn.execute(stmt)


def _setup(conn: sqlite3.Connection) -> None:
    create_schema(conn, HISTORY_SCHEMA)


class SQLiteHistoryStore:
    """The audit trail in a SQLite file (or ``:memory:``).

    URL form: ``sqlite:///path/to/engram.db`` or ``sqlite:///:memory:``. Pointing it at the vector
    store's own file works but gives up the single-transaction guarantee: leave ``history_store``
    unset to get that (the SQLite vector store then records history itself).
    """

    class Config(BaseModel):
        """Attributes: path: the database file, default in the user's data dir; ``":memory:"`` for none."""

        model_config = ConfigDict(extra="forbid")
        path: str = ""

    capabilities = frozenset({"persistent"})

    def __init__(self, config: Config | None = None, **kwargs: object) -> None:
        self.config = config or self.Config(**kwargs)  # type: ignore[arg-type]
        path = self.config.path or str(default_db_path())
        self._db = Database(path if path == ":memory:" else Path(path).expanduser(), _setup)

    @classmethod
    def from_url(cls, url: str) -> SQLiteHistoryStore:
        return cls(cls.Config(path=path_from_url(url)))

    async def add_events(self, events: Sequence[HistoryEvent]) -> None:
        if events:
            await self._db.write(insert_events, list(events))

    async def history(self, memory_id: str) -> list[HistoryEvent]:
        return await self._db.read(select_history, memory_id)

    async def reset(self) -> None:
        await self._db.write(lambda c: c.execute("DELETE FROM history"))

    async def aclose(self) -> None:
        self._db.close()
