"""``memory``: an in-process graph store (dicts and numpy), for ephemeral use and tests. Nothing persists."""

from ._store import MemoryGraphStore

__all__ = ["MemoryGraphStore"]
