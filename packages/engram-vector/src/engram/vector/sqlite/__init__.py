"""``sqlite``: the default vector store. One file: memories, float32 embeddings, an FTS5 BM25
index and the history, written together in one transaction per change."""

from ._store import SQLiteVectorStore, fts_query

__all__ = ["SQLiteVectorStore", "fts_query"]
