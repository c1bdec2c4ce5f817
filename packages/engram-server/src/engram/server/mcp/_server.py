"""``create_server``: an MCP server (the official SDK's ``MCPServer``) over one :class:`AsyncMemory`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Literal

from engram.core import AsyncMemory, MemoryConfig, Scope
from engram.core.errors import ConfigurationError
from mcp.server.mcpserver import MCPServer

from ._text import scope_label
from ._tools import TOOLS, ServerState

__all__ = ["create_server"]

_INSTRUCTIONS = """\
engram is this user's long-term memory: it keeps what was learned in earlier conversations.
- Before answering a question that may depend on what the user said before (their preferences, \
facts about them, their projects, earlier decisions), call search_memory with the question.
- When the user tells you something durable about themselves or their work, or corrects \
something, call add_memory with it (self-contained sentences; no secrets).
- Use update_memory or delete_memory (ids come from search results) when a memory is wrong; \
reset_memories only when the user explicitly asks to erase everything.
"""


def _server_version() -> str:
    try:
        return version("engram-server")
    except PackageNotFoundError:  # pragma: no cover - a source tree without metadata
        return "0+unknown"


def _default_scope(value: Scope | Mapping[str, str | None] | None) -> dict[str, str | None]:
    ids: dict[str, str | None] = {"user_id": None, "agent_id": None, "run_id": None}
    if value is None:
        return ids
    if isinstance(value, Scope):
        ids.update(dict(value.items()))
        return ids
    unknown = set(value) - set(ids)
    if unknown:
        raise ConfigurationError(f"default_scope takes user_id, agent_id and run_id, got {sorted(unknown)}")
    ids.update({k: v for k, v in value.items() if v is not None})
    if any(v is not None for v in ids.values()):
        Scope(**ids)  # validates the ids (InvalidScopeError)
    return ids


def create_server(
    memory: AsyncMemory | MemoryConfig | Mapping[str, Any] | None = None,
    *,
    default_scope: Scope | Mapping[str, str | None] | None = None,
    allow_full_reset: bool = False,
    name: str = "engram",
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "WARNING",
    tracer_provider: Any = None,
) -> MCPServer[ServerState]:
    """An MCP server whose tools read and write one engram memory.

    The tools are ``add_memory``, ``search_memory``, ``list_memories``, ``get_memory``,
    ``update_memory``, ``delete_memory``, ``memory_history``, ``get_graph`` and
    ``reset_memories`` (``docs/mcp.md`` describes each). Run it with the SDK:
    ``await server.run_stdio_async()`` or ``await server.run_streamable_http_async(host=..., port=...)``,
    or mount ``server.streamable_http_app()`` in an ASGI application.

    Args:
        memory: an open :class:`AsyncMemory` to use (the caller keeps it and closes it), or its
            configuration (a :class:`MemoryConfig`, a mapping of its fields, or ``None`` for the
            defaults): the server then opens one ``AsyncMemory`` when it starts (the SDK's lifespan,
            once per server, not per session) and closes it when it stops.
        default_scope: the ``user_id`` / ``agent_id`` / ``run_id`` a tool call uses for the ids it
            leaves out. With none, every call that needs a scope must give one. When a scope is in
            force, the tools that take a memory id act only on that scope's memories (another
            scope's memory is "not found"). It is a default, not an access control: a call may
            name other ids.
        allow_full_reset: let ``reset_memories(everything=true, confirm=true)`` erase every scope
            and all history; without it only one scope can be erased at a time.
        name: the server's name, as clients show it.
        log_level: the SDK's log level (logs go to stderr).
        tracer_provider: an OpenTelemetry ``TracerProvider`` for the ``execute_tool {tool}`` span
            each call opens (and for the memory the server opens, when it opens one); ``None``: the
            API's global provider. The SDK's own ``tools/call`` span uses the global provider.

    Returns:
        the SDK's ``MCPServer``, with the tools registered.

    Raises:
        ConfigurationError: an invalid configuration or ``default_scope`` key.
        InvalidScopeError: a malformed default scope id.
    """
    ids = _default_scope(default_scope)
    owned = not isinstance(memory, AsyncMemory)
    config = None if isinstance(memory, AsyncMemory) else MemoryConfig.parse(memory)

    @asynccontextmanager
    async def lifespan(_: MCPServer[ServerState]) -> AsyncIterator[ServerState]:
        if isinstance(memory, AsyncMemory):
            mem = memory
        elif tracer_provider is not None:
            mem = AsyncMemory(config, tracer_provider=tracer_provider)
        else:
            mem = AsyncMemory(config)
        try:
            yield ServerState(
                memory=mem,
                default_scope=ids,
                allow_full_reset=allow_full_reset,
                tracer_provider=tracer_provider,
            )
        finally:
            if owned:
                await mem.aclose()

    instructions = _INSTRUCTIONS
    if any(v is not None for v in ids.values()):
        scope = Scope(**ids)
        instructions += (
            f"This server's default scope is {scope_label(scope)}: leave user_id, agent_id and run_id "
            "out to use it.\n"
        )
    else:
        instructions += (
            "This server has no default scope: pass user_id (or agent_id / run_id) in each call.\n"
        )
    server: MCPServer[ServerState] = MCPServer(
        name,
        title="engram memory",
        instructions=instructions,
        version=_server_version(),
        lifespan=lifespan,
        log_level=log_level,
    )
    for spec in TOOLS:
        server.add_tool(
            spec.fn,
            name=spec.name,
            title=spec.title,
            description=spec.description,
            annotations=spec.annotations,
        )
    return server
