"""``hash``: a deterministic feature-hashing embedder for tests and benchmarks (no model, no I/O)."""

from ._hash import HashEmbedder

__all__ = ["HashEmbedder"]
