"""engram.graph.neo4j: engram's graph store on Neo4j 5.13+ / 2025.x through the official async driver.

Entry point ``neo4j`` in ``engram.graph_stores``; install with ``pip install "engram[neo4j]"``;
configure with ``neo4j://user:password@host:7687/database`` or a :class:`Neo4jGraphStore.Config`.
"""

from ._store import Neo4jGraphStore

__all__ = ["Neo4jGraphStore"]
