"""The FastAPI application: mem0's REST paths and bodies over one :class:`AsyncMemory`."""

from __future__ import annotations

import inspect
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from os import PathLike
from typing import Annotated, Any

from engram.core import AsyncMemory, MemoryConfig, MemoryItem, Scope, parse_filters
from fastapi import FastAPI, Path, Query
from fastapi.responses import Response

from ._auth import Caller, CallerDep, security_dependencies
from ._errors import CODES, ApiError, ErrorBody, install_handlers
from ._keys import KeyStore
from ._middleware import BodyLimit, Guard, Telemetry
from ._models import (
    ID_PATTERN,
    MAX_ID,
    MAX_LIMIT,
    MAX_QUERY,
    AddRequest,
    AddResponse,
    DeleteAllResponse,
    DeleteResponse,
    GraphResponse,
    HealthResponse,
    HistoryEventOut,
    ImportRequest,
    ImportResponse,
    MemoryList,
    MemoryOut,
    MessageResponse,
    SearchRequest,
    SearchResponse,
    UpdateRequest,
    UpdateResponse,
)

__all__ = ["DEFAULT_MAX_BODY_BYTES", "create_app"]

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
_FIELDS = ("user_id", "agent_id", "run_id")

_DESCRIPTION = """\
engram's REST API: long-term memory for AI agents. The paths and bodies follow mem0's REST server
(`POST /memories`, `POST /search`, ...) so its clients port with small changes; see docs/rest.md for
every difference. Every error is `{"error": {"code", "message"}}` with a stable code.
"""


def _version() -> str:
    try:
        return version("engram-server")
    except PackageNotFoundError:  # pragma: no cover
        return "0+unknown"


UserQ = Annotated[
    str | None, Query(min_length=1, max_length=MAX_ID, pattern=ID_PATTERN, description="Scope: the user.")
]
AgentQ = Annotated[
    str | None, Query(min_length=1, max_length=MAX_ID, pattern=ID_PATTERN, description="Scope: the agent.")
]
RunQ = Annotated[
    str | None,
    Query(min_length=1, max_length=MAX_ID, pattern=ID_PATTERN, description="Scope: the run or session."),
]
MemoryId = Annotated[str, Path(min_length=1, max_length=MAX_ID, description="The memory's id.")]
FiltersQ = Annotated[
    str | None, Query(max_length=MAX_QUERY, description='Metadata filter as JSON, e.g. {"speaker": "Maya"}.')
]
ArchivedQ = Annotated[
    bool, Query(description="Also return archived versions (after the active ones), marked.")
]


# FastAPI's own OpenTelemetry support (its ``telemetry=`` option, in the versions that have it) is
# turned off: its request span records ``url.query`` (scope ids, filter values), and its logs record
# validation failures and exception messages. :class:`Telemetry` makes the one SERVER span instead.
_FASTAPI_TELEMETRY_OFF = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
    "auto_configure": False,
}


def _no_fastapi_telemetry() -> dict[str, Any]:
    """``FastAPI(**this)`` turns FastAPI's own telemetry off where FastAPI has it."""
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters:
        return {"telemetry": dict(_FASTAPI_TELEMETRY_OFF)}
    return {}


def _doc(model: Any, tag: str, summary: str) -> dict[str, Any]:
    """A route's response model and docs; only the keys the engine returned are sent."""
    return {"response_model": model, "response_model_exclude_unset": True, "tags": [tag], "summary": summary}


def _filters(raw: str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ApiError("invalid_filter", f"filters is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ApiError("invalid_filter", "filters must be a JSON object")
    return value


def _ids(scope: Scope | None) -> dict[str, str | None]:
    if scope is None:
        return {}
    return {"user_id": scope.user_id, "agent_id": scope.agent_id, "run_id": scope.run_id}


def create_app(
    memory: AsyncMemory | MemoryConfig | Mapping[str, Any] | None = None,
    *,
    api_keys: KeyStore | str | PathLike[str] | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    own_memory: bool = True,
) -> FastAPI:
    """The REST API over one memory.

    Args:
        memory: an :class:`AsyncMemory`, or a :class:`MemoryConfig` (or mapping) to build one from;
            ``None`` for the defaults. Its providers are built when the app starts (so a bad
            configuration fails at startup) and, with ``own_memory``, closed when it stops.
        api_keys: a :class:`KeyStore` or the path of a keys file (see :mod:`._keys`); ``None``
            turns authentication off (every caller is admin), for local development.
        max_body_bytes: request bodies larger than this are refused with 413 before parsing.
        own_memory: close the memory when the app shuts down.

    Returns:
        A FastAPI app; its OpenAPI document is at ``/openapi.json``, interactive docs at ``/docs``.

    Raises:
        ConfigurationError: an invalid configuration, or an unreadable or malformed keys file.
        ValueError: ``max_body_bytes`` below 1.
    """
    if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int) or max_body_bytes < 1:
        raise ValueError(f"max_body_bytes must be a positive integer, got {max_body_bytes!r}")
    mem = memory if isinstance(memory, AsyncMemory) else AsyncMemory(memory)
    keys = api_keys if isinstance(api_keys, KeyStore) or api_keys is None else KeyStore(api_keys)
    if keys is not None:
        keys.load()

    closed = False

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        nonlocal closed
        if closed:  # started again after a shutdown: a fresh memory on the same configuration
            old: AsyncMemory = app.state.memory
            fresh = AsyncMemory(old.config, registry=old.registry)
            fresh._tel = old._tel  # the tracer and meter providers it was given
            app.state.memory = fresh
            closed = False
        current: AsyncMemory = app.state.memory
        load: Callable[[], Awaitable[object]] | None = getattr(current.embedder, "load", None)
        if callable(load):  # (getting the embedder builds the providers: a bad configuration fails here)
            await load()  # the local model loads now, not on the first request
        try:
            yield
        finally:
            if own_memory:
                await current.aclose()
                closed = True

    error_responses: dict[int | str, dict[str, Any]] = {
        status: {"model": ErrorBody, "description": ", ".join(c for c, s in CODES.items() if s == status)}
        for status in sorted(set(CODES.values()))
    }
    app = FastAPI(
        title="engram REST API",
        description=_DESCRIPTION,
        version=_version(),
        lifespan=lifespan,
        responses=error_responses,
        **_no_fastapi_telemetry(),
    )
    app.state.memory = mem
    app.state.keys = keys
    install_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)  # type: ignore[arg-type]
    app.add_middleware(Guard)  # type: ignore[arg-type]
    app.add_middleware(Telemetry)  # type: ignore[arg-type]
    _routes(app, security_dependencies(keys))

    @app.get("/health", **_doc(HealthResponse, "server", "Liveness (no API key needed)"))
    async def health() -> dict[str, Any]:
        return {"status": "ok", "version": _version(), "auth": keys is not None}

    return app


def _routes(app: FastAPI, security: list[Any]) -> None:
    def doc(model: Any, tag: str, summary: str) -> dict[str, Any]:
        return {**_doc(model, tag, summary), "dependencies": security}

    def mem() -> AsyncMemory:
        memory: AsyncMemory = app.state.memory
        return memory

    async def visible(caller: Caller, memory_id: str) -> dict[str, Any]:
        found = await mem().get(memory_id)
        if found is None or not caller.sees(found):  # another scope's memory looks like none at all
            raise ApiError("not_found", f"no memory with id {memory_id!r}")
        return found

    @app.post("/memories", **doc(AddResponse, "memories", "Remember messages"))
    async def add_memories(body: AddRequest, caller: CallerDep) -> dict[str, Any]:
        scope = caller.resolve(body.user_id, body.agent_id, body.run_id)
        if (
            body.memory_type == "procedural" and mem().config.llm is None
        ):  # the request's problem, not the server's
            raise ApiError(
                "invalid_input", "memory_type 'procedural' needs an LLM; this server has none configured"
            )
        messages: Any = body.messages
        if not isinstance(messages, str):
            messages = [m.model_dump(exclude_none=True) for m in messages]
        return await mem().add(
            messages, metadata=body.metadata, infer=body.infer, memory_type=body.memory_type, **_ids(scope)
        )

    @app.get("/memories", **doc(MemoryList, "memories", "List memories, newest first"))
    async def list_memories(
        caller: CallerDep,
        user_id: UserQ = None,
        agent_id: AgentQ = None,
        run_id: RunQ = None,
        filters: FiltersQ = None,
        limit: Annotated[
            int | None, Query(ge=1, le=MAX_LIMIT, description="At most this many (default 100).")
        ] = None,
        top_k: Annotated[int | None, Query(ge=1, le=MAX_LIMIT, description="mem0's name for limit.")] = None,
        include_archived: ArchivedQ = False,
    ) -> dict[str, Any]:
        if limit is not None and top_k is not None and limit != top_k:
            raise ApiError("invalid_input", "give limit or top_k, not two different values")
        scope = caller.resolve(user_id, agent_id, run_id, required=False)
        flt = _filters(filters)
        n = limit or top_k or 100
        if scope is not None:
            return await mem().get_all(filters=flt, limit=n, include_archived=include_archived, **_ids(scope))
        store = mem().vector_store  # admin without a scope: every scope, as mem0's admin listing
        parsed = parse_filters(flt)
        items = await store.list(None, filters=parsed, limit=n)
        if include_archived and len(items) < n and "archive" in getattr(store, "capabilities", ()):
            items += await store.list(None, filters=parsed, limit=n - len(items), archived=True)
        return {"results": [i.to_dict() for i in items]}

    @app.get("/memories/{memory_id}", **doc(MemoryOut, "memories", "One memory"))
    async def get_memory(memory_id: MemoryId, caller: CallerDep) -> dict[str, Any]:
        return await visible(caller, memory_id)

    @app.put("/memories/{memory_id}", **doc(UpdateResponse, "memories", "Update a memory"))
    async def update_memory(memory_id: MemoryId, body: UpdateRequest, caller: CallerDep) -> dict[str, Any]:
        found = await visible(caller, memory_id)
        text = body.text if body.text is not None else found["memory"]
        result = await mem().update(memory_id, text, metadata=body.metadata)
        return {**result, "message": "Memory updated successfully!"}

    @app.delete("/memories/{memory_id}", **doc(DeleteResponse, "memories", "Delete a memory"))
    async def delete_memory(memory_id: MemoryId, caller: CallerDep) -> dict[str, Any]:
        await visible(caller, memory_id)
        return await mem().delete(memory_id)

    @app.get(
        "/memories/{memory_id}/history",
        **doc(list[HistoryEventOut], "memories", "Every change to a memory, oldest first"),
    )
    async def memory_history(memory_id: MemoryId, caller: CallerDep) -> list[dict[str, Any]]:
        events = [e for e in await mem().history(memory_id) if caller.sees(e)]
        if not events:
            raise ApiError("not_found", f"no history for memory id {memory_id!r}")
        return events

    @app.delete("/memories", **doc(DeleteAllResponse, "memories", "Delete every memory of a scope"))
    async def delete_all_memories(
        caller: CallerDep, user_id: UserQ = None, agent_id: AgentQ = None, run_id: RunQ = None
    ) -> dict[str, Any]:
        scope = caller.resolve(user_id, agent_id, run_id)
        return await mem().delete_all(**_ids(scope))

    @app.post("/search", **doc(SearchResponse, "memories", "Recall the best memories"))
    async def search_memories(body: SearchRequest, caller: CallerDep) -> dict[str, Any]:
        flt = dict(body.filters) if body.filters is not None else None
        ids = {f: getattr(body, f) for f in _FIELDS}
        for f in _FIELDS:  # mem0's newer clients put the scope inside filters
            if flt is not None and isinstance(flt.get(f), str):
                value = flt.pop(f)
                if ids[f] is not None and ids[f] != value:
                    raise ApiError("invalid_input", f"{f} given twice with different values")
                ids[f] = value
        scope = caller.resolve(ids["user_id"], ids["agent_id"], ids["run_id"])
        return await mem().search(
            body.query,
            filters=flt or None,
            limit=body.limit or body.top_k or 10,
            threshold=body.threshold,
            include_archived=body.include_archived,
            **_ids(scope),
        )

    @app.get("/archive", **doc(MemoryList, "memories", "Archived versions, newest first"))
    async def archive(
        caller: CallerDep,
        user_id: UserQ = None,
        agent_id: AgentQ = None,
        run_id: RunQ = None,
        filters: FiltersQ = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="At most this many.")] = 100,
    ) -> dict[str, Any]:
        scope = caller.resolve(user_id, agent_id, run_id, required=False)
        parsed = parse_filters(_filters(filters))
        store = mem().vector_store
        if "archive" not in getattr(store, "capabilities", ()):
            return {"results": []}  # this store keeps no archive
        items = await store.list(scope, filters=parsed, limit=limit, archived=True)
        return {"results": [i.to_dict() for i in items]}

    @app.get("/graph", **doc(GraphResponse, "graph", "A scope's entities and relations"))
    async def graph(
        caller: CallerDep,
        user_id: UserQ = None,
        agent_id: AgentQ = None,
        run_id: RunQ = None,
        include_expired: Annotated[
            bool, Query(description="Also relations a newer one contradicted.")
        ] = False,
        at: Annotated[
            str | None, Query(max_length=64, description="Only what held at this time (ISO 8601).")
        ] = None,
        limit: Annotated[
            int | None, Query(ge=1, le=MAX_LIMIT, description="At most this many relations.")
        ] = None,
    ) -> dict[str, Any]:
        scope = caller.resolve(user_id, agent_id, run_id)
        return await mem().get_graph(include_expired=include_expired, at=at, limit=limit, **_ids(scope))

    @app.post("/reset", **doc(MessageResponse, "server", "Delete everything (admin)"))
    async def reset(caller: CallerDep) -> dict[str, Any]:
        caller.require_admin("reset")
        await mem().reset()
        return {"message": "All memories reset"}

    @app.post("/import", **doc(ImportResponse, "import/export", "Import memories"))
    async def import_memories(body: ImportRequest, caller: CallerDep) -> dict[str, Any]:
        formats, ingest = _cli_formats()
        scope = caller.resolve(body.user_id, body.agent_id, body.run_id, required=False)
        parsed = formats.parse_file(body.content, body.format, scope=scope, source="content")
        items = [r.item for r in parsed.records]
        for it in items:  # the other routes could never address a longer id
            if len(it.id) > MAX_ID:
                raise ApiError(
                    "invalid_input", f"memory ids are at most {MAX_ID} characters; one has {len(it.id)}"
                )
        if not caller.admin:
            for it in items:
                if not caller.sees({"user_id": it.user_id, "agent_id": it.agent_id, "run_id": it.run_id}):
                    raise ApiError(
                        "forbidden", f"memory {it.id!r} belongs to a scope this API key cannot write"
                    )
            await _own_ids(caller, items)
        result = await ingest(mem(), parsed.records) if items else {"imported": 0, "scopes": []}
        return {"format": parsed.format, **result, "skipped": parsed.skipped, "warnings": parsed.warnings}

    async def versions(ids: list[str]) -> list[MemoryItem]:
        """Every stored version (active and archived, any scope) of these ids."""
        store = mem().vector_store
        found: list[MemoryItem] = []
        archive = "archive" in getattr(store, "capabilities", ())
        for start in range(0, len(ids), _ID_BATCH):
            chunk = ids[start : start + _ID_BATCH]
            found += await store.get(chunk)
            if archive:
                by_id = parse_filters({"id": {"in": chunk}})
                found += await store.list(None, filters=by_id, limit=None, archived=True)
        return found

    async def _own_ids(caller: Caller, items: list[MemoryItem]) -> None:
        """Give a scoped key's imported memories ids that cannot reach another scope.

        An id is kept when it is already the caller's: stored (active or archived) and every
        stored version in the caller's scope. Any other id (new, or used elsewhere: the two are
        treated alike, so the answer tells nothing about other scopes) becomes a UUID derived from
        the memory's scope and the given id, so importing the same file again replaces, not
        duplicates. A derived id used outside the caller's scope (only an admin key could put it
        there) is refused, changing nothing.
        """
        stored: dict[str, list[MemoryItem]] = {}
        for v in await versions(sorted({it.id for it in items})):
            stored.setdefault(v.id, []).append(v)
        for it in items:
            mine = it.id in stored and all(caller.sees(v.to_dict()) for v in stored[it.id])
            if not mine:
                it.id = _scoped_id(it)
        for v in await versions(sorted({it.id for it in items} - stored.keys())):
            if not caller.sees(v.to_dict()):
                raise ApiError(
                    "forbidden", f"memory id {v.id!r} is used by a scope this API key cannot write"
                )

    @app.get(
        "/export",
        tags=["import/export"],
        summary="Export memories as JSON lines",
        dependencies=security,
        response_class=Response,
        responses={
            200: {
                "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
                "description": "One memory per line, oldest first (what POST /import reads).",
            }
        },
    )
    async def export(
        caller: CallerDep, user_id: UserQ = None, agent_id: AgentQ = None, run_id: RunQ = None
    ) -> Response:
        formats, _ = _cli_formats()
        scope = caller.resolve(user_id, agent_id, run_id, required=False)
        items = await mem().export_items(scope)
        lines = "".join(json.dumps(formats.item_to_json(i), ensure_ascii=False) + "\n" for i in items)
        return Response(lines, media_type="application/x-ndjson")


_ID_BATCH = 500  # ids per store query when looking for existing versions
_IMPORT_NS = uuid.UUID("5b0d3f7e-9c41-4f63-a2d8-1e6c7b94a0f5")


def _scoped_id(item: MemoryItem) -> str:
    """A scoped key's imported id: a UUID 5 of the memory's scope ids and the id it was given."""
    name = json.dumps([item.user_id, item.agent_id, item.run_id, item.id])
    return str(uuid.uuid5(_IMPORT_NS, name))


def _cli_formats() -> tuple[Any, Any]:
    """The import/export formats and the batched writer of ``engram import`` (one implementation;
    engram-server depends on the ``engram`` distribution for them). Imported on first use: the CLI
    modules pull in rich."""
    from engram.cli import _formats, _ingest

    return _formats, _ingest.ingest
