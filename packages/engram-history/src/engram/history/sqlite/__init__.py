"""``sqlite``: the default history store, and the SQLite plumbing both SQLite stores share.

The history lives in table ``history`` of a SQLite file. The SQLite vector store keeps the same
table in its own file and writes a change's history rows in the same transaction as the change;
this standalone store is for pairing history with another vector store.
"""

from ._db import Database, default_db_path, path_from_url
from ._history import (
    HISTORY_SCHEMA,
    SQLiteHistoryStore,
    create_schema,
    from_micros,
    insert_events,
    select_history,
    to_micros,
)

__all__ = [
    "HISTORY_SCHEMA",
    "Database",
    "SQLiteHistoryStore",
    "create_schema",
    "default_db_path",
    "from_micros",
    "insert_events",
    "path_from_url",
    "select_history",
    "to_micros",
]
