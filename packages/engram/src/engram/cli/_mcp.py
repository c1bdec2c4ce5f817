"""``engram mcp``: the MCP server (engram-server, ``pip install "engram[server]"``)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import anyio
import typer

from ._app import app
from ._runtime import (
    ConfigOpt,
    DbOpt,
    EmbedderOpt,
    LlmModelOpt,
    LlmOpt,
    Options,
    OtlpEndpointOpt,
    OtlpProtocolOpt,
    err_console,
    fail,
    handle_errors,
)


class Transport(StrEnum):
    stdio = "stdio"
    streamable_http = "streamable-http"


class LogLevel(StrEnum):
    debug = "DEBUG"
    info = "INFO"
    warning = "WARNING"
    error = "ERROR"


McpUserOpt = Annotated[
    str | None,
    typer.Option(
        "--user-id", "-u", envvar="ENGRAM_USER_ID",
        help="Default scope: the user whose memories the tools use when a call names none.",
        show_default=False,
    ),
]
McpAgentOpt = Annotated[
    str | None,
    typer.Option("--agent-id", envvar="ENGRAM_AGENT_ID", help="Default scope: the agent.", show_default=False),
]
McpRunOpt = Annotated[
    str | None,
    typer.Option("--run-id", envvar="ENGRAM_RUN_ID", help="Default scope: the run or session.", show_default=False),
]


def _create_server() -> Any:
    try:
        from engram.server.mcp import create_server
    except ImportError as exc:
        if (exc.name or "").startswith(("engram.server", "mcp")):
            raise fail('the MCP server needs engram-server: pip install "engram[server]"') from None
        raise
    return create_server


@app.command("mcp")
@handle_errors
def mcp(
    transport: Annotated[
        Transport,
        typer.Option(
            "--transport", "-t",
            help="stdio: the client starts engram and talks over stdin/stdout (Claude Code, Cursor). "
            "streamable-http: serve http://HOST:PORT/mcp for clients that connect by URL.",
        ),
    ] = Transport.stdio,
    host: Annotated[str, typer.Option("--host", help="streamable-http: the address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", "-p", min=1, max=65535, help="streamable-http: the port to listen on.")
    ] = 8765,
    user_id: McpUserOpt = None,
    agent_id: McpAgentOpt = None,
    run_id: McpRunOpt = None,
    allow_full_reset: Annotated[
        bool,
        typer.Option(
            "--allow-full-reset",
            help="Let reset_memories(everything=true) erase every scope and all history (off: one scope at a time).",
        ),
    ] = False,
    db: DbOpt = None,
    embedder: EmbedderOpt = None,
    config: ConfigOpt = None,
    llm: LlmOpt = None,
    llm_model: LlmModelOpt = None,
    log_level: Annotated[
        LogLevel, typer.Option("--log-level", help="What the server logs (to stderr).")
    ] = LogLevel.warning,
    otlp_endpoint: OtlpEndpointOpt = None,
    otlp_protocol: OtlpProtocolOpt = None,
) -> None:
    """Serve engram's memory to AI agents over MCP (Model Context Protocol): tools to add, search,
    list, get, update and delete memories, see their history and graph, and reset a scope.

    Over stdio (the default) stdout carries only the protocol; logs go to stderr.

    Examples: [bold]engram mcp -u maya[/]   [bold]engram mcp --transport streamable-http --port 8765[/]
    """
    create_server = _create_server()
    if otlp_endpoint is not None or otlp_protocol is not None:
        from ._otlp import start_export

        start_export(otlp_endpoint, otlp_protocol)
    opts = Options(user_id, agent_id, run_id, db, embedder, config)
    opts.llm, opts.llm_model = llm, llm_model
    cfg, db_path = opts.build()
    server = create_server(
        cfg,
        default_scope=opts.scope_kwargs(),
        allow_full_reset=allow_full_reset,
        log_level=log_level.value,
    )
    where = f" ({db_path})" if db_path is not None else ""
    if transport is Transport.stdio:
        err_console.print(f"[dim]engram MCP server on stdio{where}[/]")
        anyio.run(server.run_stdio_async)
        return
    err_console.print(f"engram MCP server on [bold]http://{host}:{port}/mcp[/]{where}")
    anyio.run(lambda: server.run_streamable_http_async(host=host, port=port))
