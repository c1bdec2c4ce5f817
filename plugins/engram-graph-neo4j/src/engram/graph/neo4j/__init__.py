"""engram.graph.neo4j: a graph store on Neo4j 5 (being built)."""
