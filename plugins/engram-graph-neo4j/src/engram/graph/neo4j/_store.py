"""The Neo4j graph store: engram's entities and relations in a Neo4j 5 database."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, LiteralString, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import anyio
from engram.core import Entity, GraphBatch, Relation, Scope
from engram.core.errors import (
    ConfigurationError,
    EngramError,
    InvalidInputError,
    ProviderError,
    ProviderTimeoutError,
)
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

import neo4j
from neo4j.exceptions import (
    AuthError,
    ConstraintError,
    DriverError,
    Neo4jError,
    ServiceUnavailable,
    SessionExpired,
)

from . import _cypher as q

__all__ = ["Neo4jGraphStore"]

T = TypeVar("T")

SCHEMES = ("neo4j", "neo4j+s", "neo4j+ssc", "bolt", "bolt+s", "bolt+ssc")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NO_LIMIT = 2**62  # LIMIT takes no null: "all of them"
_DELETE_BATCH = 10_000  # rows per transaction in delete_scope / reset
# Vector-index candidates per requested hit, and at least this many: other scopes share the index,
# and HNSW's recall grows with the candidates asked for (k is its search beam).
_OVERFETCH = 10
_MIN_CANDIDATES = 100
_MAX_CANDIDATES = 10_000
_AWAIT_INDEX_SECONDS = 60


def _us(when: datetime | None) -> int | None:
    """Aware datetime -> microseconds since the epoch (naive taken as UTC); exact."""
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - _EPOCH) // timedelta(microseconds=1)


def _dt(us: Any) -> datetime | None:
    return None if us is None else _EPOCH + timedelta(microseconds=int(us))


def _redact(uri: str) -> str:
    """The URI without any user-info part (never show a password)."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def _scope_params(scope: Scope) -> dict[str, Any]:
    if not isinstance(scope, Scope):
        raise InvalidInputError(f"scope must be a Scope, got {type(scope).__name__}")
    return {"user_id": scope.user_id, "agent_id": scope.agent_id, "run_id": scope.run_id}


def _strings(values: Sequence[str] | None, what: str) -> list[str] | None:
    if values is None:
        return None
    if isinstance(values, str | bytes):
        raise InvalidInputError(f"{what} must be a sequence of strings, not a single string")
    out = list(values)
    if not all(isinstance(v, str) for v in out):
        raise InvalidInputError(f"{what} must hold strings only")
    return out


def _limit(limit: int | None, what: str = "limit") -> int:
    if limit is None:
        return _NO_LIMIT
    if type(limit) is not int or limit < 0:
        raise InvalidInputError(f"{what} must be a non-negative int or None, got {limit!r}")
    return limit


def _embedding(values: Sequence[float] | None, what: str) -> list[float] | None:
    if values is None:
        return None
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{what}: an embedding must be a sequence of numbers ({exc})") from None
    if not out:
        raise InvalidInputError(f"{what}: an embedding must not be empty")
    if not all(math.isfinite(v) for v in out):
        raise InvalidInputError(f"{what}: an embedding must hold finite numbers only")
    return out


def _entity_row(e: Entity) -> dict[str, Any]:
    scope = e.scope  # raises InvalidScopeError for an entity without a scope
    key = e.key or ""
    if not isinstance(e.id, str) or not e.id:
        raise InvalidInputError(f"entity {e.name!r}: id must be a non-empty string")
    return {
        "id": e.id,
        "name": e.name,
        "type": e.type,
        "key": key,
        "scope_key": json.dumps([scope.user_id, scope.agent_id, scope.run_id, key], ensure_ascii=False),
        "user_id": e.user_id,
        "agent_id": e.agent_id,
        "run_id": e.run_id,
        "embedding": _embedding(e.embedding, f"entity {e.id}"),
        "mentions": int(e.mentions),
        "created_at": _us(e.created_at),
        "updated_at": _us(e.updated_at),
    }


def _relation_row(r: Relation) -> dict[str, Any]:
    r.scope  # noqa: B018 -- raises InvalidScopeError for a relation without a scope
    if not isinstance(r.id, str) or not r.id:
        raise InvalidInputError(f"relation {r.triple()}: id must be a non-empty string")
    if not r.source_id or not r.destination_id:
        raise InvalidInputError(f"relation {r.id} ({r.triple()}): source_id and destination_id are required")
    return {
        "id": r.id,
        "source": r.source,
        "relation": r.relation,
        "destination": r.destination,
        "source_id": r.source_id,
        "destination_id": r.destination_id,
        "user_id": r.user_id,
        "agent_id": r.agent_id,
        "run_id": r.run_id,
        "mentions": int(r.mentions),
        "valid_at": _us(r.valid_at),
        "invalid_at": _us(r.invalid_at),
        "created_at": _us(r.created_at),
        "expired_at": _us(r.expired_at),
        "memory_ids": [str(m) for m in r.memory_ids],
    }


def _entity(p: dict[str, Any]) -> Entity:
    emb = p.get("embedding")
    return Entity(
        name=p["name"],
        type=p.get("type") or "entity",
        user_id=p.get("user_id"),
        agent_id=p.get("agent_id"),
        run_id=p.get("run_id"),
        embedding=[float(x) for x in emb] if emb is not None else None,
        id=p["id"],
        key=p.get("key") or "",
        mentions=int(p.get("mentions") or 0),
        created_at=_dt(p.get("created_at")) or _EPOCH,
        updated_at=_dt(p.get("updated_at")),
    )


def _relation(p: dict[str, Any]) -> Relation:
    return Relation(
        source=p["source"],
        relation=p["relation"],
        destination=p["destination"],
        user_id=p.get("user_id"),
        agent_id=p.get("agent_id"),
        run_id=p.get("run_id"),
        mentions=int(p.get("mentions") or 0),
        valid_at=_dt(p.get("valid_at")),
        invalid_at=_dt(p.get("invalid_at")),
        created_at=_dt(p.get("created_at")) or _EPOCH,
        expired_at=_dt(p.get("expired_at")),
        id=p["id"],
        source_id=p.get("source_id") or "",
        destination_id=p.get("destination_id") or "",
        memory_ids=list(p.get("memory_ids") or []),
    )


def _last_by_id(items: Sequence[T], what: str) -> list[T]:
    """Items deduplicated by ``id``, the last one of an id winning, in first-seen order."""
    seen: dict[str, T] = {}
    for item in items:
        ident = getattr(item, "id", None)
        if not isinstance(ident, str) or not ident:
            raise InvalidInputError(f"every {what} needs a non-empty string id, got {ident!r}")
        seen[ident] = item
    return list(seen.values())


class Neo4jGraphStore:
    """A graph store on Neo4j 5.13+ (5.26 LTS) or 2025.x through the official async driver.

    Entities are ``(:EngramEntity)`` nodes, relations ``[:ENGRAM_RELATION]`` relationships with the
    predicate in their ``relation`` property; every statement is in :mod:`._cypher`. The driver is
    created on first use (never in ``__init__``), checked with ``verify_connectivity``, and the
    constraints are created then; the vector index on entity embeddings is created once the first
    embedding's length is known, and dropped by :meth:`reset`.

    Configure with a :class:`Neo4jGraphStore.Config`, its fields as keyword arguments, or a URL
    (:meth:`from_url`): ``neo4j://user:password@host:7687/database`` (also ``bolt://``,
    ``neo4j+s://``, ``bolt+s://``, ``+ssc`` variants), query fields for the rest
    (``?connection_timeout=5``).

    Args:
        config: the connection settings.
    """

    class Config(BaseModel):
        """Attributes:
        uri: the server, ``scheme://host[:port]`` with a scheme of ``neo4j``, ``neo4j+s``,
            ``neo4j+ssc``, ``bolt``, ``bolt+s`` or ``bolt+ssc``. User info in it is moved to
            ``username`` / ``password``.
        username: the user to authenticate as (sent only with a password).
        password: the password; no authentication when ``None``.
        database: the database name; ``None`` uses the server's default (``neo4j``).
        connection_timeout: seconds to open one connection.
        max_connection_pool_size: most connections the driver keeps per server.
        """

        model_config = ConfigDict(extra="forbid")
        uri: str = "bolt://localhost:7687"
        username: str = "neo4j"
        password: SecretStr | None = None
        database: str | None = None
        connection_timeout: float = Field(default=10.0, gt=0)
        max_connection_pool_size: int = Field(default=50, ge=1, le=10_000)

        @model_validator(mode="before")
        @classmethod
        def _credentials_out_of_uri(cls, data: Any) -> Any:
            # Move user info out of the URI before anything can echo it in an error.
            if isinstance(data, dict) and isinstance(data.get("uri"), str) and "@" in data["uri"]:
                parts = urlsplit(data["uri"])
                data = dict(data)
                data["uri"] = _redact(data["uri"])
                if parts.username and "username" not in data:
                    data["username"] = unquote(parts.username)
                if parts.password is not None and "password" not in data:
                    data["password"] = unquote(parts.password)
            return data

        @field_validator("uri")
        @classmethod
        def _check_uri(cls, uri: str) -> str:
            parts = urlsplit(uri)
            if parts.scheme not in SCHEMES:
                raise ValueError(
                    f"uri scheme must be one of {', '.join(SCHEMES)}; got {parts.scheme or 'none'!r}"
                )
            if not parts.hostname:
                raise ValueError("uri needs a host")
            if parts.path not in ("", "/") or parts.query:
                raise ValueError("uri takes scheme://host[:port] only; give the database as `database`")
            return uri.rstrip("/")

        @field_validator("database")
        @classmethod
        def _check_database(cls, db: str | None) -> str | None:
            return db or None

    capabilities: ClassVar[frozenset[str]] = frozenset({"persistent", "entity_vectors"})

    def __init__(self, config: Config | None = None, **kwargs: Any) -> None:
        if config is not None and kwargs:
            raise ConfigurationError("pass either a Neo4jGraphStore.Config or keyword fields, not both")
        self.config = config or self.Config(**kwargs)
        self._driver: neo4j.AsyncDriver | None = None
        self._lock = anyio.Lock()
        self._vector_dims: int | None = None  # the dims the vector index was ensured for
        self._index_lock = anyio.Lock()

    @classmethod
    def from_url(cls, url: str) -> Neo4jGraphStore:
        """Build from ``neo4j://[user[:password]@]host[:port][/database][?field=value&...]``.

        The scheme (``neo4j``, ``neo4j+s``, ``neo4j+ssc``, ``bolt``, ``bolt+s``, ``bolt+ssc``) is
        kept in ``uri``; the path names the database; query fields set the other config fields
        (the last value of a repeated field wins).

        Raises:
            ConfigurationError: a bad scheme, an unknown field or a bad value (the password is
                never shown).
        """
        shown = _redact(url)
        try:
            parts = urlsplit(url)
            fields: dict[str, Any] = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            if parts.scheme not in SCHEMES:
                raise ValueError(f"the scheme must be one of {', '.join(SCHEMES)}")
            host = parts.hostname or "localhost"
            host = f"[{host}]" if ":" in host else host
            port = f":{parts.port}" if parts.port else ""
            fields["uri"] = f"{parts.scheme}://{host}{port}"
            if parts.username:
                fields["username"] = unquote(parts.username)
            if parts.password is not None:
                fields["password"] = unquote(parts.password)
            database = unquote(parts.path.strip("/"))
            if database:
                fields["database"] = database
            return cls(cls.Config(**fields))
        except ValueError as exc:  # pydantic.ValidationError, a bad port
            raise ConfigurationError(f"bad neo4j URL {shown!r}: {exc}") from None

    def __repr__(self) -> str:
        c = self.config
        return f"{type(self).__name__}(uri={c.uri!r}, username={c.username!r}, database={c.database!r})"

    # --- connection --------------------------------------------------------------------------

    def _where(self) -> str:
        db = f" database {self.config.database!r}" if self.config.database else ""
        return f"Neo4j at {_redact(self.config.uri)}{db}"

    @asynccontextmanager
    async def _errors(self, what: str) -> AsyncIterator[None]:
        """Translate driver exceptions into engram errors (``raise ... from exc``)."""
        try:
            yield
        except EngramError:
            raise
        except ConstraintError as exc:
            raise InvalidInputError(f"{what}: {self._where()} refused it: {exc.message or exc}") from exc
        except AuthError as exc:
            raise ProviderError(
                f"{what}: {self._where()} refused user {self.config.username!r}: {exc.message or exc}",
                provider="neo4j",
            ) from exc
        except (ServiceUnavailable, SessionExpired) as exc:
            raise ProviderError(f"{what}: cannot reach {self._where()}: {exc}", provider="neo4j") from exc
        except TimeoutError as exc:
            raise ProviderTimeoutError(f"{what}: {self._where()} timed out: {exc}", provider="neo4j") from exc
        except Neo4jError as exc:
            raise ProviderError(
                f"{what}: {self._where()} failed: {exc.code or ''} {exc.message or exc}".strip(),
                provider="neo4j",
            ) from exc
        except (DriverError, OSError) as exc:
            raise ProviderError(
                f"{what}: {self._where()}: {type(exc).__name__}: {exc}", provider="neo4j"
            ) from exc

    async def _connect(self) -> neo4j.AsyncDriver:
        """The driver, created, verified and the schema ensured on first use."""
        if self._driver is not None:
            return self._driver
        async with self._lock:
            if self._driver is not None:
                return self._driver
            c = self.config
            auth = (
                neo4j.basic_auth(c.username, c.password.get_secret_value())
                if c.password is not None
                else None
            )
            driver = neo4j.AsyncGraphDatabase.driver(
                c.uri,
                auth=auth,
                connection_timeout=c.connection_timeout,
                max_connection_pool_size=c.max_connection_pool_size,
            )
            try:
                async with self._errors("connect"):
                    await driver.verify_connectivity()
                    async with driver.session(database=c.database) as session:
                        for stmt in q.CREATE_CONSTRAINTS:
                            await (await session.run(stmt)).consume()
            except BaseException:
                await driver.close()
                raise
            self._driver = driver
            return driver

    def _session(self, driver: neo4j.AsyncDriver) -> neo4j.AsyncSession:
        # One bookmark manager for every session: reads see earlier writes on a cluster too.
        return driver.session(
            database=self.config.database, bookmark_manager=driver.execute_query_bookmark_manager
        )

    async def _write(self, what: str, work: Callable[[neo4j.AsyncManagedTransaction], Awaitable[T]]) -> T:
        driver = await self._connect()
        async with self._errors(what), self._session(driver) as session:
            return await session.execute_write(work)

    async def _read(self, what: str, query: LiteralString, params: dict[str, Any]) -> list[neo4j.Record]:
        driver = await self._connect()

        async def work(tx: neo4j.AsyncManagedTransaction) -> list[neo4j.Record]:
            return [record async for record in await tx.run(query, params)]

        async with self._errors(what), self._session(driver) as session:
            return await session.execute_read(work)

    async def _schema(self, what: str, stmt: LiteralString, params: dict[str, Any] | None = None) -> None:
        driver = await self._connect()
        async with self._errors(what), self._session(driver) as session:
            await (await session.run(stmt, params)).consume()

    async def _ensure_vector_index(self, dims: int) -> None:
        """Create the vector index for ``dims`` and wait for it to come online. Best effort: a
        failure (a concurrent creation, an index of another length) leaves similarity to the
        exact scan and is retried on the next write."""
        if self._vector_dims == dims or dims > q.MAX_VECTOR_DIMS:
            return
        async with self._index_lock:
            if self._vector_dims == dims:
                return
            try:
                await self._schema("create the vector index", q.create_vector_index(dims))
                await self._schema(
                    "wait for the vector index",
                    q.AWAIT_INDEX,
                    {"index": q.VECTOR_INDEX, "seconds": _AWAIT_INDEX_SECONDS},
                )
            except ProviderError as exc:
                if not isinstance(exc.__cause__, Neo4jError) or isinstance(exc.__cause__, AuthError):
                    raise
                return
            self._vector_dims = dims

    async def aclose(self) -> None:
        """Close the driver and its connections (the store may be used again: it reconnects)."""
        driver, self._driver = self._driver, None
        if driver is not None:
            async with self._errors("close"):
                await driver.close()

    async def __aenter__(self) -> Neo4jGraphStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- writes ------------------------------------------------------------------------------

    async def apply(self, batch: GraphBatch) -> None:
        """Write a batch in one transaction: relation deletes, entity deletes (with their
        relations), entity upserts, relation upserts; all of it or none of it.

        Raises:
            InvalidInputError: a relation names an entity id neither stored nor in the batch, an
                embedding whose length differs from the others, an entity or relation without a
                scope, or two entities of one scope with the same key. Nothing is written.
            ProviderError: the server failed or cannot be reached.
        """
        if not isinstance(batch, GraphBatch):
            raise InvalidInputError(f"apply takes a GraphBatch, got {type(batch).__name__}")
        if not batch:
            return
        entities = _last_by_id(batch.entities, "entity")
        relations = _last_by_id(batch.relations, "relation")
        entity_rows = [_entity_row(e) for e in entities]
        relation_rows = [_relation_row(r) for r in relations]
        delete_relations = _strings(batch.delete_relations, "delete_relations") or []
        delete_entities = _strings(batch.delete_entities, "delete_entities") or []
        dims = {len(row["embedding"]) for row in entity_rows if row["embedding"] is not None}
        if len(dims) > 1:
            raise InvalidInputError(f"the batch's entity embeddings differ in length: {sorted(dims)}")
        seen: dict[str, str] = {}
        for row in entity_rows:
            other = seen.setdefault(row["scope_key"], row["id"])
            if other != row["id"]:
                raise InvalidInputError(
                    f"entities {other} and {row['id']} share the key {row['key']!r} in one scope"
                )
        in_batch = {row["id"] for row in entity_rows}
        deleted = set(delete_entities) - in_batch
        wanted = {end for row in relation_rows for end in (row["source_id"], row["destination_id"])}
        to_look_up = sorted(wanted - in_batch)

        async def work(tx: neo4j.AsyncManagedTransaction) -> None:
            # Validate inside the transaction, before its first write.
            if to_look_up:
                found = {rec["id"] async for rec in await tx.run(q.EXISTING_ENTITY_IDS, {"ids": to_look_up})}
                missing = sorted((set(to_look_up) - found) | (set(to_look_up) & deleted))
                if missing:
                    raise InvalidInputError(
                        f"relations name entities that are neither stored nor in the batch: {', '.join(missing)}"
                    )
            if dims:
                exclude = sorted(in_batch | set(delete_entities))
                rec = await (await tx.run(q.STORED_DIMS, {"exclude": exclude})).single()
                if rec is not None and rec["dims"] not in dims:
                    raise InvalidInputError(
                        f"entity embeddings have {next(iter(dims))} dimensions; the stored ones have {rec['dims']}"
                    )
            if delete_relations:
                await (await tx.run(q.DELETE_RELATIONS_BY_ID, {"ids": delete_relations})).consume()
            if delete_entities:
                await (await tx.run(q.DELETE_ENTITIES, {"ids": delete_entities})).consume()
            if entity_rows:
                await (await tx.run(q.UPSERT_ENTITIES, {"rows": entity_rows})).consume()
            if relation_rows:
                await (await tx.run(q.UPSERT_RELATIONS, {"rows": relation_rows})).consume()

        await self._write("apply a graph batch", work)
        if dims:
            await self._ensure_vector_index(next(iter(dims)))

    async def delete_memories(self, memory_ids: Sequence[str]) -> int:
        """Drop these memory ids from every relation's provenance, delete the relations left
        without provenance and then the entities they touched that no relation touches any more,
        in one transaction. Returns the number of relations deleted."""
        ids = _strings(memory_ids, "memory_ids") or []
        if not ids:
            return 0

        async def work(tx: neo4j.AsyncManagedTransaction) -> int:
            orphans = [rec async for rec in await tx.run(q.PRUNE_PROVENANCE, {"ids": ids})]
            if not orphans:
                return 0
            rel_ids = [rec["id"] for rec in orphans]
            ends = sorted({rec[k] for rec in orphans for k in ("source_id", "destination_id")})
            rec = await (await tx.run(q.DELETE_RELATIONS, {"ids": rel_ids})).single()
            await (await tx.run(q.PRUNE_ENTITIES, {"ids": ends})).consume()
            return int(rec["n"]) if rec is not None else 0

        return await self._write("delete memories from the graph", work)

    async def _delete_in_batches(self, what: str, query: LiteralString, params: dict[str, Any]) -> None:
        params = {**params, "batch": _DELETE_BATCH}

        async def work(tx: neo4j.AsyncManagedTransaction) -> int:
            rec = await (await tx.run(query, params)).single()
            return int(rec["n"]) if rec is not None else 0

        while await self._write(what, work) >= _DELETE_BATCH:
            pass

    async def delete_scope(self, scope: Scope) -> None:
        """Delete every entity and relation in ``scope`` (in transactions of 10,000 rows)."""
        params = _scope_params(scope)
        await self._delete_in_batches("delete a scope's relations", q.DELETE_SCOPE_RELATIONS, params)
        await self._delete_in_batches("delete a scope's entities", q.DELETE_SCOPE_ENTITIES, params)

    async def reset(self) -> None:
        """Delete every engram entity and relation in the database, and the vector index (other
        labels are left alone)."""
        await self._delete_in_batches("reset the graph", q.RESET_RELATIONS, {})
        await self._delete_in_batches("reset the graph", q.RESET_ENTITIES, {})
        await self._schema("drop the vector index", q.DROP_VECTOR_INDEX)
        self._vector_dims = None

    # --- reads -------------------------------------------------------------------------------

    async def entities(
        self,
        scope: Scope,
        *,
        keys: Sequence[str] | None = None,
        ids: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[Entity]:
        """Entities in ``scope``, narrowed to these keys and/or ids when given (an empty sequence
        matches nothing). Order: ``created_at``, then ``id``."""
        params = {
            **_scope_params(scope),
            "keys": _strings(keys, "keys"),
            "ids": _strings(ids, "ids"),
            "limit": _limit(limit),
        }
        if params["keys"] == [] or params["ids"] == [] or params["limit"] == 0:
            return []
        records = await self._read("list entities", q.ENTITIES, params)
        return [_entity(rec["entity"]) for rec in records]

    async def similar_entities(
        self, scope: Scope, embedding: Sequence[float], *, limit: int = 10, min_score: float = -1.0
    ) -> list[tuple[Entity, float]]:
        """Entities in ``scope`` by cosine similarity in [-1, 1] to ``embedding``, best first (ties
        by id), at most ``limit``, each scoring >= ``min_score``.

        The vector index is asked for ``max(4 * limit, 50)`` candidates over every scope; those
        in scope are re-scored exactly. When fewer than ``limit`` survive (other scopes crowd the
        candidates, the index is still being built or absent), an exact scan of the scope answers.
        """
        params = _scope_params(scope)
        query = _embedding(embedding, "similar_entities")
        n = _limit(limit)
        if query is None or n == 0:
            return []
        qnorm = math.sqrt(sum(x * x for x in query))
        if qnorm == 0.0:
            return []
        params |= {"embedding": query, "qnorm": qnorm, "min_score": float(min_score), "limit": n}
        hits: list[neo4j.Record] = []
        if self._vector_dims == len(query) or self._vector_dims is None:
            k = min(max(n * _OVERFETCH, _MIN_CANDIDATES), _MAX_CANDIDATES)
            try:
                hits = await self._read(
                    "search the vector index", q.SIMILAR_INDEXED, params | {"index": q.VECTOR_INDEX, "k": k}
                )
            except ProviderError as exc:
                # No index (yet, or another length), or one still populating: the exact scan answers.
                if not isinstance(exc.__cause__, Neo4jError) or isinstance(exc.__cause__, AuthError):
                    raise
                hits = []
        if len(hits) < n:
            hits = await self._read("rank entities by similarity", q.SIMILAR_EXACT, params)
        return [(_entity(rec["entity"]), float(rec["score"])) for rec in hits]

    async def relations(
        self,
        scope: Scope,
        *,
        entity_ids: Sequence[str] | None = None,
        include_expired: bool = False,
        memory_ids: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[Relation]:
        """Relations in ``scope``: current only unless ``include_expired``; narrowed to those
        touching ``entity_ids`` and/or stated by ``memory_ids`` when given. Order: ``created_at``
        newest first, then ``id``."""
        params = {
            **_scope_params(scope),
            "entity_ids": _strings(entity_ids, "entity_ids"),
            "memory_ids": _strings(memory_ids, "memory_ids"),
            "include_expired": bool(include_expired),
            "limit": _limit(limit),
        }
        if params["entity_ids"] == [] or params["memory_ids"] == [] or params["limit"] == 0:
            return []
        records = await self._read("list relations", q.RELATIONS, params)
        return [_relation(rec["relation"]) for rec in records]

    async def neighbors(
        self,
        scope: Scope,
        entity_ids: Sequence[str] = (),
        *,
        keys: Sequence[str] = (),
        depth: int = 2,
        limit: int = 50,
    ) -> list[tuple[Relation, int]]:
        """Current relations within ``depth`` hops of the seeds (entities in ``scope`` with one of
        ``entity_ids`` or ``keys``), walked in both directions, with their hop counts: fewest hops
        first, then ``mentions`` descending, ``created_at`` newest first, ``id``. A depth above 5
        walks 5 hops (the walk enumerates trails; deeper ones could explode on dense graphs).

        Raises:
            InvalidInputError: ``depth`` is not an int >= 1, or a bad limit.
        """
        try:
            query = q.neighbors(depth)
        except ValueError as exc:
            raise InvalidInputError(str(exc)) from None
        params = {
            **_scope_params(scope),
            "ids": _strings(entity_ids, "entity_ids") or [],
            "keys": _strings(keys, "keys") or [],
            "limit": _limit(limit),
        }
        if not (params["ids"] or params["keys"]) or params["limit"] == 0:
            return []
        records = await self._read("walk the graph", query, params)
        return [(_relation(rec["relation"]), int(rec["hops"])) for rec in records]
