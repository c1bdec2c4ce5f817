"""``qdrant``: an engram vector store on Qdrant, in qdrant-client's local mode (in memory or a
folder) or on a Qdrant server, with BM25 lexical search through sparse vectors.

    from engram.core import AsyncMemory

    memory = AsyncMemory({"vector_store": "qdrant://localhost:6333/memories"})
    memory = AsyncMemory({"vector_store": "qdrant:///:memory:"})

See :class:`QdrantVectorStore` and the plugin's README.
"""

from ._config import QdrantConfig
from ._store import QdrantVectorStore

__all__ = ["QdrantConfig", "QdrantVectorStore"]
