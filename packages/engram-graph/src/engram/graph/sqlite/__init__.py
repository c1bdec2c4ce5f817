"""engram.graph.sqlite: the default graph store (being built)."""
