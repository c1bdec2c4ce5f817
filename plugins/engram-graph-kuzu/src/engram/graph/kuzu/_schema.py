"""Kuzu schema, value conversions and the Cypher the store runs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from engram.core import Entity, Relation, Scope
from engram.core.errors import ConfigurationError

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

SCHEMA = (
    "CREATE NODE TABLE IF NOT EXISTS EngramMeta(key STRING PRIMARY KEY, value STRING)",
    "CREATE NODE TABLE IF NOT EXISTS Entity(id STRING PRIMARY KEY, key STRING, name STRING, type STRING,"
    " user_id STRING, agent_id STRING, run_id STRING, mentions INT64, created_at INT64, updated_at INT64,"
    " has_embedding BOOL, embedding DOUBLE[])",
    "CREATE REL TABLE IF NOT EXISTS RELATES(FROM Entity TO Entity, id STRING, relation STRING, source STRING,"
    " destination STRING, source_id STRING, destination_id STRING, user_id STRING, agent_id STRING,"
    " run_id STRING, mentions INT64, valid_at INT64, invalid_at INT64, created_at INT64, expired_at INT64,"
    " memory_ids STRING[])",
)

ENTITY_COLS = (
    "e.id, e.key, e.name, e.type, e.user_id, e.agent_id, e.run_id, e.mentions, e.created_at, e.updated_at,"
    " e.has_embedding, e.embedding"
)
_REL_TEXT = (
    "id",
    "relation",
    "source",
    "destination",
    "source_id",
    "destination_id",
    "user_id",
    "agent_id",
    "run_id",
)
_REL_TIMES = ("valid_at", "invalid_at", "created_at", "expired_at")
_REL_FIELDS = (*_REL_TEXT, "mentions", *_REL_TIMES, "memory_ids")
RELATION_COLS = ", ".join(f"r.{f}" for f in _REL_FIELDS)

UPSERT_ENTITIES = (
    "UNWIND $rows AS row MERGE (e:Entity {id: row.id}) SET e.key = row.key, e.name = row.name, e.type = row.type,"
    " e.user_id = CAST(row.user_id AS STRING), e.agent_id = CAST(row.agent_id AS STRING),"
    " e.run_id = CAST(row.run_id AS STRING), e.mentions = CAST(row.mentions AS INT64),"
    " e.created_at = CAST(row.created_at AS INT64), e.updated_at = CAST(row.updated_at AS INT64),"
    " e.has_embedding = row.has_embedding, e.embedding = CAST(row.embedding AS DOUBLE[])"
)
CREATE_RELATIONS = (
    "UNWIND $rows AS row MATCH (s:Entity {id: row.source_id}), (d:Entity {id: row.destination_id})"
    " CREATE (s)-[:RELATES {id: row.id, relation: row.relation, source: row.source, destination: row.destination,"
    " source_id: row.source_id, destination_id: row.destination_id, user_id: CAST(row.user_id AS STRING),"
    " agent_id: CAST(row.agent_id AS STRING), run_id: CAST(row.run_id AS STRING),"
    " mentions: CAST(row.mentions AS INT64), valid_at: CAST(row.valid_at AS INT64),"
    " invalid_at: CAST(row.invalid_at AS INT64), created_at: CAST(row.created_at AS INT64),"
    " expired_at: CAST(row.expired_at AS INT64), memory_ids: CAST(row.memory_ids AS STRING[])}]->(d)"
)
DELETE_RELATIONS = "UNWIND $ids AS i MATCH ()-[r:RELATES]->() WHERE r.id = i DELETE r"
DELETE_ENTITIES = "UNWIND $ids AS i MATCH (e:Entity {id: i}) DETACH DELETE e"


def to_micros(dt: datetime | None) -> int | None:
    """Aware datetime -> integer microseconds since the Unix epoch (exact); ``None`` stays ``None``.
    A naive datetime is taken as UTC."""
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    d = dt - _EPOCH
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


def from_micros(us: int | None) -> datetime | None:
    """Inverse of :func:`to_micros`, aware UTC."""
    return None if us is None else _EPOCH + timedelta(microseconds=us)


def scope_hex(value: str) -> str:
    """A scope id as lower-case hex of its UTF-8 bytes: safe to write into a Cypher string literal
    (the vector index's projected-graph filter takes a literal predicate, not parameters)."""
    return value.encode("utf-8").hex()


def scope_where(var: str, scope: Scope, params: dict[str, Any]) -> str:
    """``var.user_id = $s_user_id AND ...`` for the fields the scope sets (filling ``params``)."""
    parts = []
    for name, value in scope.items():
        params[f"s_{name}"] = value
        parts.append(f"{var}.{name} = $s_{name}")
    return " AND ".join(parts)


def hex_where(var: str, scope: Scope) -> str:
    """The scope as a literal predicate over the vector table's hex columns."""
    cols = {"user_id": "uh", "agent_id": "ah", "run_id": "rh"}
    return " AND ".join(f"{var}.{cols[name]} = '{scope_hex(value)}'" for name, value in scope.items())


def entity_row(e: Entity) -> dict[str, Any]:
    emb = [float(x) for x in e.embedding] if e.embedding is not None else None
    return {
        "id": e.id,
        "key": e.key,
        "name": e.name,
        "type": e.type,
        "user_id": e.user_id,
        "agent_id": e.agent_id,
        "run_id": e.run_id,
        "mentions": int(e.mentions),
        "created_at": to_micros(e.created_at),
        "updated_at": to_micros(e.updated_at),
        "has_embedding": emb is not None,
        "embedding": emb,
    }


def relation_row(r: Relation) -> dict[str, Any]:
    row: dict[str, Any] = {f: getattr(r, f) for f in _REL_TEXT}
    row.update({f: to_micros(getattr(r, f)) for f in _REL_TIMES})
    row["mentions"] = int(r.mentions)
    row["memory_ids"] = [str(m) for m in r.memory_ids]
    return row


def entity_from(row: Sequence[Any]) -> Entity:
    created = from_micros(row[8])
    return Entity(
        id=row[0],
        key=row[1],
        name=row[2],
        type=row[3],
        user_id=row[4],
        agent_id=row[5],
        run_id=row[6],
        mentions=int(row[7]),
        created_at=created or _EPOCH,
        updated_at=from_micros(row[9]),
        embedding=[float(x) for x in row[11]] if row[10] else None,
    )


def relation_from(row: Sequence[Any]) -> Relation:
    values = dict(zip(_REL_FIELDS, row, strict=True))
    times = {f: from_micros(values[f]) for f in _REL_TIMES}
    return Relation(
        **{f: values[f] for f in _REL_TEXT},
        mentions=int(values["mentions"]),
        valid_at=times["valid_at"],
        invalid_at=times["invalid_at"],
        created_at=times["created_at"] or _EPOCH,
        expired_at=times["expired_at"],
        memory_ids=list(values["memory_ids"] or []),
    )


def finite_vector(values: Any) -> list[float] | None:
    """The values as a list of finite floats, or ``None`` when they are not that."""
    try:
        out = [float(x) for x in values]
    except (TypeError, ValueError):
        return None
    return out if all(math.isfinite(x) for x in out) else None


def fields_from_url(url: str) -> dict[str, Any]:
    """``kuzu:///relative/path``, ``kuzu:////absolute/path``, ``kuzu://:memory:`` (or
    ``kuzu:///:memory:``), with ``?buffer_pool_size=BYTES`` -> config fields.

    Raises:
        ConfigurationError: not a ``kuzu://`` URL, a host part, or no path.
    """
    parts = urlsplit(url)
    if parts.scheme != "kuzu":
        raise ConfigurationError(f"not a kuzu URL: {url!r}")
    fields: dict[str, Any] = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    if parts.netloc == ":memory:" and parts.path in ("", "/"):
        fields["path"] = ":memory:"
        return fields
    if parts.netloc:
        raise ConfigurationError(
            f"kuzu URL takes no host; write kuzu:///relative/path, kuzu:////absolute/path or kuzu://:memory: "
            f"(got {url!r})"
        )
    path = unquote(parts.path)
    path = path[1:] if path.startswith("/") else path
    if not path:
        raise ConfigurationError(f"kuzu URL has no path: {url!r}")
    fields["path"] = path
    return fields
