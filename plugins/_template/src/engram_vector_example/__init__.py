"""``example``: a complete engram vector store to copy when writing your own.

It keeps memories in process memory and, given a ``path``, saves them to one ``.npz`` file. It is
registered under the entry point ``example`` in the ``engram.vector_stores`` group (see
``pyproject.toml``), so ``MemoryConfig(vector_store="example")`` finds it once this distribution is
installed. Rename it before you publish (see the README).
"""

from ._store import ExampleVectorStore

__all__ = ["ExampleVectorStore"]
