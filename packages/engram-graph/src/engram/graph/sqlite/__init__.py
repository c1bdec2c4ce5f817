"""``sqlite``: the default graph store, in the same SQLite file as the memories (no server).

Entities and relations live in ``graph_*`` tables beside the SQLite vector store's and the
history's; the URL is the vector store's (``sqlite:///path/engram.db``).
"""

from ._store import SCHEMA_VERSION, SQLiteGraphStore

__all__ = ["SCHEMA_VERSION", "SQLiteGraphStore"]
