"""``memory``: an in-process vector store (numpy), for ephemeral use and tests. Nothing persists."""

from ._store import MemoryVectorStore

__all__ = ["MemoryVectorStore"]
