"""``chroma``: an engram vector store on Chroma 1.x, embedded (in memory or a folder) or on a
Chroma server (``chroma run``).

Scope and metadata filters run inside Chroma as native ``where`` clauses over typed projections
of each memory's metadata; substring (``contains``/``icontains`` with a string) and string-range
filters are refused with ``InvalidFilterError``, since Chroma cannot evaluate them exactly.
Search is dense only: Chroma 1.5 offers BM25 (sparse vectors) only on Chroma Cloud.
"""

from ._config import ChromaConfig
from ._store import ChromaVectorStore

__all__ = ["ChromaConfig", "ChromaVectorStore"]
