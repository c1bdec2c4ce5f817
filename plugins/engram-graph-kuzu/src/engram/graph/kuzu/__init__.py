"""engram.graph.kuzu: a graph store on embedded Kuzu (being built)."""
