"""``kuzu``: an engram graph store on embedded Kuzu 0.11, with entity similarity served by Kuzu's
HNSW vector index.

Upstream Kuzu (kuzudb/kuzu) was archived by its maintainers in October 2025; 0.11.3 is its last
release and this plugin is pinned to 0.11.x. See the README for what that means and how to move
the data out.
"""

from ._store import KuzuGraphStore

__all__ = ["KuzuGraphStore"]
