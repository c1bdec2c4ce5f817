"""The MCP tools: typed inputs, one span each, engram errors as tool errors.

Each tool reads the server's :class:`ServerState` from the SDK's lifespan context, resolves the
scope (the call's ids over the server's default, field by field), calls the engine and returns a
``CallToolResult`` carrying the engine's dict as structured content and a readable text form.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any, Literal

from engram.core import AsyncMemory, Scope
from engram.core.errors import (
    ConfigurationError,
    EngramError,
    InvalidInputError,
    InvalidScopeError,
    MemoryNotFoundError,
    ProviderError,
    ProviderTimeoutError,
)
from mcp.server.mcpserver import Context
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode
from pydantic import BaseModel, ConfigDict, Field

from . import _text
from ._models import (
    AddResult,
    DeleteResult,
    GraphResult,
    HistoryResult,
    ListResult,
    Memory,
    ResetResult,
    SearchResult,
    UpdateResult,
)

__all__ = ["TOOLS", "ServerState", "ToolSpec"]

log = logging.getLogger("engram.server.mcp")


@dataclass
class ServerState:
    """What the tools share for the server's lifetime (the SDK's lifespan context).

    Attributes:
        memory: the engine every tool calls.
        default_scope: the ids used when a call gives none (all ``None``: no default).
        allow_full_reset: whether ``reset_memories(everything=true)`` may wipe every scope.
        tracer_provider: where the ``execute_tool`` spans go (``None``: the OpenTelemetry API's
            global provider, looked up at each call so one set later is used).
    """

    memory: AsyncMemory
    default_scope: dict[str, str | None] = field(
        default_factory=lambda: {"user_id": None, "agent_id": None, "run_id": None}
    )
    allow_full_reset: bool = False
    tracer_provider: Any = None

    def tracer(self) -> trace.Tracer:
        """The ``engram`` tracer (version: engram-telemetry's), as the telemetry contract names it."""
        provider = self.tracer_provider or trace.get_tracer_provider()
        return provider.get_tracer("engram", _telemetry_version())


# -- inputs ------------------------------------------------------------------------------------

UserId = Annotated[
    str | None,
    Field(
        description="Whose memories: the user's id. Leave it out to use the server's default scope; "
        "when given, it replaces the default's user_id for this call.",
        min_length=1,
        max_length=256,
    ),
]
AgentId = Annotated[
    str | None,
    Field(
        description="The agent the memories belong to. Leave it out to use the server's default; "
        "when given, it replaces the default's agent_id for this call.",
        min_length=1,
        max_length=256,
    ),
]
RunId = Annotated[
    str | None,
    Field(
        description="The run or session the memories belong to. Leave it out to use the server's default; "
        "when given, it replaces the default's run_id for this call.",
        min_length=1,
        max_length=256,
    ),
]
MemoryId = Annotated[
    str,
    Field(
        description="The memory's id, as returned by search_memory, list_memories or add_memory.",
        min_length=1,
        max_length=256,
    ),
]
Filters = Annotated[
    dict[str, Any] | None,
    Field(
        description='Metadata filter. {"topic": "travel"} matches equal values; operators: '
        '{"priority": {"gte": 2}} with eq ne gt gte lt lte in nin contains icontains; combine with '
        '{"OR": [...]}, {"AND": [...]}, {"NOT": {...}}. Built-in fields: created_at, updated_at (ISO 8601).',
    ),
]
Archived = Annotated[
    bool,
    Field(
        description="Also include archived versions (superseded by an update or deleted by the LLM), marked."
    ),
]


class ChatMessage(BaseModel):
    """One conversation turn to remember."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant", "system", "tool"] = Field(
        "user", description="Who spoke. System messages are not stored."
    )
    content: str = Field(description="What was said.")
    name: str | None = Field(None, description="The speaker's name, kept as metadata.speaker.")
    time: str | None = Field(None, description="When it was said, ISO 8601 (e.g. 2024-05-01T14:30:00Z).")


# -- plumbing ----------------------------------------------------------------------------------


@functools.cache
def _telemetry_version() -> str:
    try:
        return version("engram-telemetry")
    except PackageNotFoundError:  # pragma: no cover - a source tree without metadata
        return "0+unknown"


def _state(ctx: Context[ServerState, Any]) -> ServerState:
    return ctx.request_context.lifespan_context


def _resolve(
    state: ServerState, user_id: str | None, agent_id: str | None, run_id: str | None
) -> Scope | None:
    """The call's ids over the default's, field by field; ``None`` when no id is set at all."""
    given = {"user_id": user_id, "agent_id": agent_id, "run_id": run_id}
    ids = {k: given[k] if given[k] is not None else state.default_scope.get(k) for k in given}
    if all(v is None for v in ids.values()):
        return None
    return Scope(**ids)


def _require(state: ServerState, user_id: str | None, agent_id: str | None, run_id: str | None) -> Scope:
    scope = _resolve(state, user_id, agent_id, run_id)
    if scope is None:
        raise InvalidScopeError(
            "no scope: pass user_id, agent_id or run_id (this server has no default scope; "
            "start it with --user-id or ENGRAM_USER_ID to set one)"
        )
    return scope


def _kw(scope: Scope) -> dict[str, str | None]:
    return {"user_id": scope.user_id, "agent_id": scope.agent_id, "run_id": scope.run_id}


async def _in_scope(mem: AsyncMemory, memory_id: str, scope: Scope | None) -> dict[str, Any]:
    """The memory, which must belong to ``scope`` when one is in force (else: not found)."""
    found = await mem.get(memory_id)
    if found is None:
        raise MemoryNotFoundError(f"no memory with id {memory_id!r}")
    if scope is not None and not scope.matches(
        found.get("user_id"), found.get("agent_id"), found.get("run_id")
    ):
        raise MemoryNotFoundError(f"no memory with id {memory_id!r} in scope {_text.scope_label(scope)}")
    return found


def _error_type(exc: BaseException) -> str:
    """``error.type``: the exception class's module-qualified name (``builtins`` left out)."""
    t = type(exc)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _engram_error(exc: BaseException) -> EngramError | None:
    """The engram error behind ``exc`` (also inside an exception group of engram errors only)."""
    if isinstance(exc, EngramError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        leaves = [_engram_error(e) for e in exc.exceptions]
        if leaves and all(leaf is not None for leaf in leaves):
            return leaves[0]
    return None


def _client_message(tool: str, err: EngramError) -> str:
    """The tool error's text: the class name and what was wrong, for the client.

    Input errors (bad scope, filter, arguments; a missing memory) and configuration errors keep
    their message, which is about the call or the server's settings. A provider's message may carry
    a driver's text (hosts, paths, a server's reply): the client gets only the provider's name, and
    the details go to the server's log (stderr), as in the REST server.
    """
    name = type(err).__name__
    if isinstance(err, InvalidInputError | MemoryNotFoundError | ConfigurationError):
        return f"{name}: {err}"
    log.error("tool %s failed: %s", tool, name, exc_info=err)
    if isinstance(err, ProviderError):
        what = "did not answer in time" if isinstance(err, ProviderTimeoutError) else "failed"
        who = f"the {err.provider} provider" if err.provider else "a provider"
        return f"{name}: {who} {what}; see the server log"
    return f"{name}: internal error; see the server log"


async def _run(
    ctx: Context[ServerState, Any], tool: str, body: Callable[[], Awaitable[tuple[Any, str]]]
) -> CallToolResult:
    """Run one tool call under its ``execute_tool {tool}`` span.

    An engram error becomes a tool error (``isError``) whose text names the error class and says
    what was wrong (a provider's failure only names the provider: :func:`_client_message`);
    anything else propagates to the SDK, which logs it on the server and answers
    with a generic tool error (no traceback reaches the client).
    """
    with (
        _state(ctx)
        .tracer()
        .start_as_current_span(
            f"execute_tool {tool}",
            kind=SpanKind.INTERNAL,
            record_exception=False,
            set_status_on_exception=False,
        ) as span
    ):
        if span.is_recording():
            span.set_attribute("gen_ai.operation.name", "execute_tool")
            span.set_attribute("gen_ai.tool.name", tool)
        try:
            data, text = await body()
        except BaseException as exc:
            err = _engram_error(exc)
            if span.is_recording():
                cause = err if err is not None else exc
                span.record_exception(cause)
                span.set_attribute("error.type", _error_type(cause))
                span.set_status(StatusCode.ERROR, str(cause))
            if err is None:
                raise
            message = _client_message(tool, err)
            return CallToolResult(content=[TextContent(type="text", text=message)], is_error=True)
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=data)


# -- tools -------------------------------------------------------------------------------------


async def add_memory(
    ctx: Context[ServerState, Any],
    messages: Annotated[
        str | list[ChatMessage],
        Field(
            description="What to remember: a plain string (taken as the user's words), or a list of "
            'conversation turns. Keep each fact self-contained ("Maya is vegetarian", not "she is").'
        ),
    ],
    user_id: UserId = None,
    agent_id: AgentId = None,
    run_id: RunId = None,
    metadata: Annotated[
        dict[str, Any] | None,
        Field(description='JSON object stored with each memory this call creates, e.g. {"topic": "travel"}.'),
    ] = None,
    infer: Annotated[
        bool,
        Field(
            description="With an LLM configured on the server: extract facts and update or remove the "
            "memories they contradict. false stores the text as written."
        ),
    ] = True,
) -> Annotated[CallToolResult, AddResult]:
    async def body() -> tuple[Any, str]:
        state = _state(ctx)
        scope = _require(state, user_id, agent_id, run_id)
        msgs: Any = (
            messages if isinstance(messages, str) else [m.model_dump(exclude_none=True) for m in messages]
        )
        result = await state.memory.add(msgs, metadata=metadata, infer=infer, **_kw(scope))
        return result, _text.add_text(result, scope)

    return await _run(ctx, "add_memory", body)


async def search_memory(
    ctx: Context[ServerState, Any],
    query: Annotated[str, Field(description="A question or keywords, in natural language.", min_length=1)],
    user_id: UserId = None,
    agent_id: AgentId = None,
    run_id: RunId = None,
    limit: Annotated[int, Field(description="At most this many memories.", ge=1, le=100)] = 10,
    threshold: Annotated[
        float | None,
        Field(description="Drop results whose score is below this (default: the server's configuration)."),
    ] = None,
    filters: Filters = None,
    include_archived: Archived = False,
) -> Annotated[CallToolResult, SearchResult]:
    async def body() -> tuple[Any, str]:
        state = _state(ctx)
        scope = _require(state, user_id, agent_id, run_id)
        result = await state.memory.search(
            query,
            filters=filters,
            limit=limit,
            threshold=threshold,
            include_archived=include_archived,
            **_kw(scope),
        )
        return result, _text.search_text(result, scope, query)

    return await _run(ctx, "search_memory", body)


async def list_memories(
    ctx: Context[ServerState, Any],
    user_id: UserId = None,
    agent_id: AgentId = None,
    run_id: RunId = None,
    limit: Annotated[int, Field(description="At most this many memories.", ge=1, le=1000)] = 50,
    filters: Filters = None,
    include_archived: Archived = False,
) -> Annotated[CallToolResult, ListResult]:
    async def body() -> tuple[Any, str]:
        state = _state(ctx)
        scope = _require(state, user_id, agent_id, run_id)
        result = await state.memory.get_all(
            filters=filters, limit=limit, include_archived=include_archived, **_kw(scope)
        )
        return result, _text.list_text(result, scope)

    return await _run(ctx, "list_memories", body)


async def get_memory(
    ctx: Context[ServerState, Any],
    memory_id: MemoryId,
    user_id: UserId = None,
    agent_id: AgentId = None,
    run_id: RunId = None,
) -> Annotated[CallToolResult, Memory]:
    async def body() -> tuple[Any, str]:
        state = _state(ctx)
        found = await _in_scope(state.memory, memory_id, _resolve(state, user_id, agent_id, run_id))
        return found, _text.get_text(found)

    return await _run(ctx, "get_memory", body)


async def update_memory(
    ctx: Context[ServerState, Any],
    memory_id: MemoryId,
    text: Annotated[
        str, Field(description="The memory's new text, complete (it replaces the old text).", min_length=1)
    ],
    user_id: UserId = None,
    agent_id: AgentId = None,
    run_id: RunId = None,
    metadata: Annotated[
        dict[str, Any] | None, Field(description="Keys merged into the memory's metadata.")
    ] = None,
) -> Annotated[CallToolResult, UpdateResult]:
    async def body() -> tuple[Any, str]:
        state = _state(ctx)
        await _in_scope(state.memory, memory_id, _resolve(state, user_id, agent_id, run_id))
        result = await state.memory.update(memory_id, text, metadata=metadata)
        return result, _text.update_text(result)

    return await _run(ctx, "update_memory", body)


async def delete_memory(
    ctx: Context[ServerState, Any],
    memory_id: MemoryId,
    user_id: UserId = None,
    agent_id: AgentId = None,
    run_id: RunId = None,
) -> Annotated[CallToolResult, DeleteResult]:
    async def body() -> tuple[Any, str]:
        state = _state(ctx)
        await _in_scope(state.memory, memory_id, _resolve(state, user_id, agent_id, run_id))
        result = await state.memory.delete(memory_id)
        return result, _text.delete_text(result)

    return await _run(ctx, "delete_memory", body)


async def memory_history(
    ctx: Context[ServerState, Any],
    memory_id: MemoryId,
    user_id: UserId = None,
    agent_id: AgentId = None,
    run_id: RunId = None,
) -> Annotated[CallToolResult, HistoryResult]:
    async def body() -> tuple[Any, str]:
        state = _state(ctx)
        scope = _resolve(state, user_id, agent_id, run_id)
        events = await state.memory.history(memory_id)
        if scope is not None:
            events = [
                e for e in events if scope.matches(e.get("user_id"), e.get("agent_id"), e.get("run_id"))
            ]
        return {"memory_id": memory_id, "events": events}, _text.history_text(memory_id, events)

    return await _run(ctx, "memory_history", body)


async def get_graph(
    ctx: Context[ServerState, Any],
    user_id: UserId = None,
    agent_id: AgentId = None,
    run_id: RunId = None,
    include_expired: Annotated[
        bool, Field(description="Also the relations a newer one contradicted (no longer true).")
    ] = False,
    at: Annotated[
        str | None,
        Field(
            description="Only what held at this time, ISO 8601 (e.g. 2023-06-01): answers "
            "'where did Maya live in 2023?'."
        ),
    ] = None,
    limit: Annotated[
        int | None, Field(description="At most this many relations, newest first.", ge=1, le=10_000)
    ] = None,
) -> Annotated[CallToolResult, GraphResult]:
    async def body() -> tuple[Any, str]:
        state = _state(ctx)
        scope = _require(state, user_id, agent_id, run_id)
        result = await state.memory.get_graph(
            include_expired=include_expired, at=at, limit=limit, **_kw(scope)
        )
        return result, _text.graph_text(result, scope)

    return await _run(ctx, "get_graph", body)


async def reset_memories(
    ctx: Context[ServerState, Any],
    confirm: Annotated[
        bool,
        Field(
            description="Must be true, and only when the user explicitly asked to erase their memories. "
            "Without it nothing is deleted and the error says what would be."
        ),
    ] = False,
    everything: Annotated[
        bool,
        Field(
            description="Erase every scope and all history instead of one scope. Refused unless the "
            "server was started with --allow-full-reset; give no ids with it."
        ),
    ] = False,
    user_id: UserId = None,
    agent_id: AgentId = None,
    run_id: RunId = None,
) -> Annotated[CallToolResult, ResetResult]:
    async def body() -> tuple[Any, str]:
        state = _state(ctx)
        mem = state.memory
        if everything:
            if any(v is not None for v in (user_id, agent_id, run_id)):
                raise InvalidInputError(
                    "everything=true erases every scope: give no user_id, agent_id or run_id"
                )
            if not state.allow_full_reset:
                raise InvalidInputError(
                    "erasing every scope is turned off on this server (start it with --allow-full-reset); "
                    "without everything=true, reset_memories erases one scope"
                )
            n = await mem.count()
            if not confirm:
                raise InvalidInputError(
                    f"this would delete all {n} memories of every scope and all history; nothing was "
                    "deleted. Call again with confirm=true only if the user asked for it."
                )
            await mem.reset()
            result: dict[str, Any] = {
                "deleted": n,
                "scope": None,
                "message": f"Reset: deleted {n} memories and all history",
            }
            return result, _text.reset_text(result)
        scope = _require(state, user_id, agent_id, run_id)
        if not confirm:
            n = await mem.count(**_kw(scope))
            raise InvalidInputError(
                f"this would delete all {n} memories of {_text.scope_label(scope)}; nothing was deleted. "
                "Call again with confirm=true only if the user asked for it."
            )
        done = await mem.delete_all(**_kw(scope))
        result = {
            "deleted": done["deleted"],
            "scope": dict(scope.items()),
            "message": f"Deleted {done['deleted']} memories of {_text.scope_label(scope)}",
        }
        return result, _text.reset_text(result)

    return await _run(ctx, "reset_memories", body)


# -- registration ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolSpec:
    """A tool function with the name, title, description and hints it is published with."""

    fn: Callable[..., Awaitable[CallToolResult]]
    title: str
    description: str
    annotations: ToolAnnotations

    @property
    def name(self) -> str:
        return self.fn.__name__


def _hints(*, read_only: bool, destructive: bool = False, idempotent: bool = False) -> ToolAnnotations:
    return ToolAnnotations(
        read_only_hint=read_only,
        destructive_hint=destructive,
        idempotent_hint=idempotent,
        open_world_hint=False,
    )


_SCOPE_NOTE = (
    " Scope: user_id / agent_id / run_id select whose memories; each one given replaces the "
    "server's default for that field, the others keep the default."
)

TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        add_memory,
        "Remember",
        "Store something worth remembering in long-term memory, for later conversations. Call it when "
        "the user states a fact, preference, plan, decision or correction about themselves or their work "
        'that will matter later ("I moved to Portland", "we deploy on Fridays"), or when you learn '
        "something durable while working. Do not store secrets, passwords or passing small talk. With an "
        "LLM configured on the server, engram extracts the facts and updates or removes the memories they "
        "contradict; otherwise each message is stored as written. Returns the changes made, with ids."
        + _SCOPE_NOTE,
        _hints(read_only=False),
    ),
    ToolSpec(
        search_memory,
        "Search memory",
        "Find what is already known that is relevant to a question. Call it before answering anything "
        "that may depend on the user's earlier statements, preferences, projects or decisions, and "
        "whenever the user refers to something from a past conversation. Returns the best-matching "
        "memories first, each with its id and score, plus related graph facts when a graph is kept."
        + _SCOPE_NOTE,
        _hints(read_only=True, idempotent=True),
    ),
    ToolSpec(
        list_memories,
        "List memories",
        "List the stored memories of a scope, newest first, without ranking. Use it to review "
        'everything known ("what do you remember about me?"); to find something specific, use '
        "search_memory." + _SCOPE_NOTE,
        _hints(read_only=True, idempotent=True),
    ),
    ToolSpec(
        get_memory,
        "Get a memory",
        "Fetch one memory by id, with its metadata and times. When a scope is in force (given or the "
        "server's default), a memory of another scope is reported as not found.",
        _hints(read_only=True, idempotent=True),
    ),
    ToolSpec(
        update_memory,
        "Update a memory",
        "Replace one memory's text when it has become wrong or incomplete, e.g. the user corrects a "
        "fact. Give the complete new text. The old text stays in memory_history. When a scope is in "
        "force, the memory must belong to it.",
        _hints(read_only=False, idempotent=True),
    ),
    ToolSpec(
        delete_memory,
        "Delete a memory",
        "Delete one memory by id, when the user asks to forget it or it is plainly wrong. Its history "
        "is kept. When a scope is in force, the memory must belong to it.",
        _hints(read_only=False, destructive=True, idempotent=True),
    ),
    ToolSpec(
        memory_history,
        "Memory history",
        "Every change to one memory (ADD, UPDATE, DELETE with old and new text), oldest first; kept "
        "after the memory is deleted. When a scope is in force, only that scope's events are shown.",
        _hints(read_only=True, idempotent=True),
    ),
    ToolSpec(
        get_graph,
        "Knowledge graph",
        "The entities (people, places, things) and relations engram has linked for a scope, newest "
        "relations first. add_memory fills the graph when the server has an LLM and a graph store. Use "
        "include_expired or at to see what held in the past." + _SCOPE_NOTE,
        _hints(read_only=True, idempotent=True),
    ),
    ToolSpec(
        reset_memories,
        "Erase memories",
        "Erase every memory of a scope, with its graph. Cannot be undone: call it only when the user "
        "explicitly asks to erase all their memories, and pass confirm=true (without it nothing is "
        "deleted and the error says how many memories would be). everything=true erases all scopes and "
        "all history, and only works on a server started with --allow-full-reset." + _SCOPE_NOTE,
        _hints(read_only=False, destructive=True),
    ),
)
