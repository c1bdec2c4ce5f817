"""engram.graph.memory: an in-process graph store (being built)."""
