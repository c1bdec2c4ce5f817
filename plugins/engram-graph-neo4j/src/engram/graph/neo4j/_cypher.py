"""Every Cypher statement the Neo4j graph store sends, as named constants.

Rules this module keeps (and ``tests/test_cypher.py`` checks):

- values reach the server only as ``$parameters``, never formatted into the text;
- labels, relationship types, property names and index names are the fixed constants below;
- the two statements that cannot take a parameter where a value goes are built by functions that
  accept only a validated ``int``: the vector index DDL (``vector.dimensions`` is not a parameter
  in Neo4j 5.x index options) and the neighbour walk (the upper bound of a variable-length pattern
  is never a parameter in Cypher).

Targets Cypher 5 as spoken by Neo4j 5.13+ (5.26 LTS) and 2025.x.

Graph model: ``(:EngramEntity)`` nodes and ``[:ENGRAM_RELATION]`` relationships (the predicate is
the ``relation`` property, as relationship types cannot be parameters). Times are integers:
microseconds since the Unix epoch, UTC (exact for Python datetimes and ordered like them). A query
scope sets ``$user_id`` / ``$agent_id`` / ``$run_id``; a ``null`` field matches anything.
"""

from __future__ import annotations

from typing import LiteralString, cast

__all__ = [
    "AWAIT_INDEX",
    "CREATE_CONSTRAINTS",
    "DELETE_ENTITIES",
    "DELETE_RELATIONS",
    "DELETE_RELATIONS_BY_ID",
    "DELETE_SCOPE_ENTITIES",
    "DELETE_SCOPE_RELATIONS",
    "DROP_VECTOR_INDEX",
    "ENTITIES",
    "ENTITY",
    "EXISTING_ENTITY_IDS",
    "MAX_DEPTH",
    "MAX_VECTOR_DIMS",
    "PRUNE_ENTITIES",
    "PRUNE_PROVENANCE",
    "RELATION",
    "RELATIONS",
    "RESET_ENTITIES",
    "RESET_RELATIONS",
    "SIMILAR_EXACT",
    "SIMILAR_INDEXED",
    "STORED_DIMS",
    "UPSERT_ENTITIES",
    "UPSERT_RELATIONS",
    "VECTOR_INDEX",
    "create_vector_index",
    "neighbors",
]

#: The node label of an entity.
ENTITY = "EngramEntity"
#: The relationship type of every relation (the predicate is its ``relation`` property).
RELATION = "ENGRAM_RELATION"
#: The name of the vector index on ``EngramEntity.embedding``.
VECTOR_INDEX = "engram_entity_embedding"
#: Largest ``vector.dimensions`` Neo4j 5.x accepts; longer embeddings are searched without an index.
MAX_VECTOR_DIMS = 4096
#: Deepest neighbour walk (hops).
MAX_DEPTH = 5

# A query scope: each field the caller sets must equal the element's; null matches anything.
_SCOPE_E = (
    "($user_id IS NULL OR e.user_id = $user_id) "
    "AND ($agent_id IS NULL OR e.agent_id = $agent_id) "
    "AND ($run_id IS NULL OR e.run_id = $run_id)"
)
_SCOPE_R = _SCOPE_E.replace("e.", "r.")

# --- schema ---------------------------------------------------------------------------------

#: Constraints and indexes created once per store on first use (each its own schema statement):
#: entity ids unique; entity (scope, key) unique through the composite ``scope_key`` property
#: (a JSON array of user, agent, run id and key, written by the store); relation ids unique
#: (relationship constraints need 5.7+); a range index on the entity key for seed lookups.
CREATE_CONSTRAINTS: tuple[LiteralString, ...] = (
    "CREATE CONSTRAINT engram_entity_id IF NOT EXISTS FOR (e:EngramEntity) REQUIRE e.id IS UNIQUE",
    "CREATE CONSTRAINT engram_entity_scope_key IF NOT EXISTS FOR (e:EngramEntity) REQUIRE e.scope_key IS UNIQUE",
    "CREATE CONSTRAINT engram_relation_id IF NOT EXISTS FOR ()-[r:ENGRAM_RELATION]-() REQUIRE r.id IS UNIQUE",
    "CREATE INDEX engram_entity_key IF NOT EXISTS FOR (e:EngramEntity) ON (e.key)",
)

# The vector index DDL; DIMS is replaced by a validated int in create_vector_index (never a value
# from outside). 'cosine' is a fixed option, not a value.
_VECTOR_INDEX_DDL = (
    "CREATE VECTOR INDEX engram_entity_embedding IF NOT EXISTS "
    "FOR (e:EngramEntity) ON e.embedding "
    "OPTIONS {indexConfig: {`vector.dimensions`: DIMS, `vector.similarity_function`: 'cosine'}}"
)

#: Wait up to ``$seconds`` for the index ``$index`` to come online (after creating it).
AWAIT_INDEX = "CALL db.awaitIndex($index, $seconds)"

#: Drop the vector index (on reset, so the next embeddings may have another length).
DROP_VECTOR_INDEX = "DROP INDEX engram_entity_embedding IF EXISTS"


def create_vector_index(dims: int) -> LiteralString:
    """The ``CREATE VECTOR INDEX`` statement for embeddings of ``dims`` floats.

    ``vector.dimensions`` cannot be a parameter in the index options of every supported Neo4j
    version, so it is written into the text; only a true ``int`` in ``1..MAX_VECTOR_DIMS`` is
    accepted, so nothing else can reach the statement.

    Raises:
        ValueError: ``dims`` is not an int (bools, floats and strings included) or out of range.
    """
    if type(dims) is not int or not 1 <= dims <= MAX_VECTOR_DIMS:
        raise ValueError(f"vector index dimensions must be an int in 1..{MAX_VECTOR_DIMS}, got {dims!r}")
    # The one value written into a statement: an int checked above (hence the cast for the driver).
    return cast("LiteralString", _VECTOR_INDEX_DDL.replace("DIMS", str(dims)))


# --- apply (one write transaction) ----------------------------------------------------------

#: Which of ``$ids`` are stored entity ids (validation before anything is written).
EXISTING_ENTITY_IDS = "UNWIND $ids AS id MATCH (e:EngramEntity {id: id}) RETURN e.id AS id"

#: The length of one stored embedding, ignoring the entities ``$exclude`` (replaced or deleted by
#: the batch being validated); no row when none is stored.
STORED_DIMS = (
    "MATCH (e:EngramEntity) WHERE e.embedding IS NOT NULL AND NOT e.id IN $exclude "
    "RETURN size(e.embedding) AS dims LIMIT 1"
)

#: Delete relations by id (unknown ids are ignored).
DELETE_RELATIONS_BY_ID = "UNWIND $ids AS id MATCH ()-[r:ENGRAM_RELATION {id: id}]->() DELETE r"

#: Delete entities by id with every relation touching them.
DELETE_ENTITIES = "UNWIND $ids AS id MATCH (e:EngramEntity {id: id}) DETACH DELETE e"

#: Insert or replace entities whole by id: ``$rows`` are property maps (id, name, type, key,
#: scope_key, user_id, agent_id, run_id, embedding, mentions, created_at, updated_at); ``SET e =``
#: drops properties the map leaves null.
UPSERT_ENTITIES = "UNWIND $rows AS row MERGE (e:EngramEntity {id: row.id}) SET e = row"

#: Insert or replace relations whole by id: the old relationship (if any) is deleted and a new one
#: created between the row's ``source_id`` and ``destination_id`` entities (endpoints may change).
UPSERT_RELATIONS = (
    "UNWIND $rows AS row "
    "OPTIONAL MATCH ()-[old:ENGRAM_RELATION {id: row.id}]->() "
    "DELETE old "
    "WITH row "
    "MATCH (s:EngramEntity {id: row.source_id}), (d:EngramEntity {id: row.destination_id}) "
    "CREATE (s)-[r:ENGRAM_RELATION]->(d) "
    "SET r = row"
)

# --- reads ----------------------------------------------------------------------------------

#: Entities in scope, narrowed by ``$keys`` / ``$ids`` when not null; ``created_at`` then ``id``.
ENTITIES = (
    "MATCH (e:EngramEntity) "
    f"WHERE {_SCOPE_E} "
    "AND ($keys IS NULL OR e.key IN $keys) AND ($ids IS NULL OR e.id IN $ids) "
    "WITH e ORDER BY e.created_at, e.id LIMIT $limit "
    "RETURN e {.*} AS entity"
)

# Exact cosine similarity of e.embedding and $embedding ($qnorm is the query's L2 norm, > 0);
# written out so it runs on every 5.x (vector.similarity.cosine is newer and rescales to [0, 1]).
_COSINE = (
    "WITH e, reduce(s = 0.0, i IN range(0, size($embedding) - 1) | s + e.embedding[i] * $embedding[i]) AS dot, "
    "reduce(s = 0.0, x IN e.embedding | s + x * x) AS nn "
    "WHERE nn > 0 "
    "WITH e, dot / (sqrt(nn) * $qnorm) AS score "
    "WHERE score >= $min_score "
    "WITH e, score ORDER BY score DESC, e.id LIMIT $limit "
    "RETURN e {.*} AS entity, score"
)

#: Approximate nearest entities through the vector index (``$index``, ``$k`` candidates over every
#: scope), kept when in scope, re-scored exactly; the store over-fetches and falls back to
#: :data:`SIMILAR_EXACT` when fewer than the limit survive.
SIMILAR_INDEXED = (
    "CALL db.index.vector.queryNodes($index, $k, $embedding) YIELD node AS e "
    f"WHERE {_SCOPE_E} AND size(e.embedding) = size($embedding) " + _COSINE
)

#: Exact nearest entities: every entity in scope with an embedding of the query's length.
SIMILAR_EXACT = (
    "MATCH (e:EngramEntity) "
    f"WHERE {_SCOPE_E} AND e.embedding IS NOT NULL AND size(e.embedding) = size($embedding) " + _COSINE
)

#: Relations in scope: current only unless ``$include_expired``; narrowed to ``$entity_ids``
#: (either end) and/or ``$memory_ids`` (provenance) when not null; ``created_at`` newest first,
#: then ``id`` descending.
RELATIONS = (
    "MATCH ()-[r:ENGRAM_RELATION]->() "
    f"WHERE {_SCOPE_R} "
    "AND ($include_expired OR r.expired_at IS NULL) "
    "AND ($entity_ids IS NULL OR r.source_id IN $entity_ids OR r.destination_id IN $entity_ids) "
    "AND ($memory_ids IS NULL OR any(m IN r.memory_ids WHERE m IN $memory_ids)) "
    "WITH r ORDER BY r.created_at DESC, r.id DESC LIMIT $limit "
    "RETURN r {.*} AS relation"
)

# Graph recall: seeds in scope by id or key; every trail of 1..DEPTH current in-scope relations
# from a seed, walked in both directions; each relation's hop count is the shortest trail ending
# in it. DEPTH is replaced by a validated int in neighbors().
_NEIGHBORS = (
    "MATCH (s:EngramEntity) "
    f"WHERE {_SCOPE_E.replace('e.', 's.')} AND (s.id IN $ids OR s.key IN $keys) "
    "MATCH p = (s)-[:ENGRAM_RELATION*1..DEPTH]-() "
    f"WHERE all(r IN relationships(p) WHERE r.expired_at IS NULL AND {_SCOPE_R}) "
    "WITH last(relationships(p)) AS r, min(length(p)) AS hops "
    "ORDER BY hops, r.mentions DESC, r.created_at DESC, r.id DESC "
    "LIMIT $limit "
    "RETURN r {.*} AS relation, hops"
)

_NEIGHBORS_BY_DEPTH: dict[int, LiteralString] = {
    d: cast("LiteralString", _NEIGHBORS.replace("DEPTH", str(d))) for d in range(1, MAX_DEPTH + 1)
}


def neighbors(depth: int) -> LiteralString:
    """The neighbour walk bounded by ``depth`` hops: one of :data:`MAX_DEPTH` fixed statements; a
    depth above :data:`MAX_DEPTH` walks :data:`MAX_DEPTH` hops (trails are enumerated, so deeper
    walks could explode on dense graphs).

    Raises:
        ValueError: ``depth`` is not an int (bools excluded) or is below 1.
    """
    if type(depth) is not int or depth < 1:
        raise ValueError(f"depth must be an int >= 1, got {depth!r}")
    return _NEIGHBORS_BY_DEPTH[min(depth, MAX_DEPTH)]


# --- deletes --------------------------------------------------------------------------------

#: Forget ``$ids`` memories: drop them from every relation's provenance and return the relations
#: left without provenance with their end entities (deleted by the next two statements, in the
#: same transaction).
PRUNE_PROVENANCE = (
    "MATCH ()-[r:ENGRAM_RELATION]->() WHERE any(m IN r.memory_ids WHERE m IN $ids) "
    "SET r.memory_ids = [m IN r.memory_ids WHERE NOT m IN $ids] "
    "WITH r WHERE size(r.memory_ids) = 0 "
    "RETURN r.id AS id, startNode(r).id AS source_id, endNode(r).id AS destination_id"
)

#: Delete relations by id, returning how many were deleted.
DELETE_RELATIONS = "UNWIND $ids AS id MATCH ()-[r:ENGRAM_RELATION {id: id}]->() DELETE r RETURN count(r) AS n"

#: Delete the entities ``$ids`` that no relation touches any more.
PRUNE_ENTITIES = "UNWIND $ids AS id MATCH (e:EngramEntity {id: id}) WHERE NOT EXISTS { (e)-[:ENGRAM_RELATION]-() } DELETE e"

#: Delete up to ``$batch`` relations in scope; returns how many (repeated until 0).
DELETE_SCOPE_RELATIONS = (
    f"MATCH ()-[r:ENGRAM_RELATION]->() WHERE {_SCOPE_R} WITH r LIMIT $batch DELETE r RETURN count(*) AS n"
)

#: Delete up to ``$batch`` entities in scope with their relations; returns how many (repeated until 0).
DELETE_SCOPE_ENTITIES = (
    f"MATCH (e:EngramEntity) WHERE {_SCOPE_E} WITH e LIMIT $batch DETACH DELETE e RETURN count(*) AS n"
)

#: Delete up to ``$batch`` relations of any scope (reset; repeated until 0).
RESET_RELATIONS = "MATCH ()-[r:ENGRAM_RELATION]->() WITH r LIMIT $batch DELETE r RETURN count(*) AS n"

#: Delete up to ``$batch`` entities of any scope (reset; repeated until 0).
RESET_ENTITIES = "MATCH (e:EngramEntity) WITH e LIMIT $batch DETACH DELETE e RETURN count(*) AS n"
