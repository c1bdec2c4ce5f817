"""``engram mcp``: the MCP server (engram-server, ``pip install "engram[server]"``)."""

from __future__ import annotations

import socket
from enum import StrEnum
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any

import anyio
import typer
from rich.markup import escape

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
from ._serve import _loopback


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
        "--user-id",
        "-u",
        envvar="ENGRAM_USER_ID",
        help="Default scope: the user whose memories the tools use when a call names none.",
        show_default=False,
    ),
]
McpAgentOpt = Annotated[
    str | None,
    typer.Option(
        "--agent-id", envvar="ENGRAM_AGENT_ID", help="Default scope: the agent.", show_default=False
    ),
]
McpRunOpt = Annotated[
    str | None,
    typer.Option(
        "--run-id", envvar="ENGRAM_RUN_ID", help="Default scope: the run or session.", show_default=False
    ),
]


def _mcp_sdk_unusable() -> str:
    try:
        installed = f"the installed mcp SDK ({version('mcp')}) is not usable"
    except PackageNotFoundError:
        installed = "the mcp SDK is not installed"
    return f'engram mcp needs the mcp SDK version 2 or later, and {installed}: pip install "mcp>=2"'


def _create_server() -> Any:
    try:
        from engram.server.mcp import create_server
    except ImportError as exc:
        name = exc.name or ""
        if name == "engram.server" or name.startswith("engram.server."):
            raise fail('the MCP server needs engram-server: pip install "engram[server]"') from None
        if name == "mcp" or name.startswith("mcp."):  # e.g. mcp 1.x: no mcp.server.mcpserver
            raise fail(_mcp_sdk_unusable()) from None
        raise
    return create_server


def _bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (0: a free port the system picks).

    Raises:
        OSError: the address cannot be resolved or bound (in use, not this machine's).
    """
    family, kind, proto, _, addr = socket.getaddrinfo(
        host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(addr)
        sock.listen(2048)
    except BaseException:
        sock.close()
        raise
    return sock


async def _serve_http(server: Any, sock: socket.socket, host: str, log_level: str) -> None:
    """Serve the SDK's streamable-HTTP app on an already bound socket (as the SDK's
    ``run_streamable_http_async`` does, but on a socket whose port is known before it serves)."""
    import uvicorn

    app = server.streamable_http_app(host=host)  # host: the SDK's DNS-rebinding protection
    await uvicorn.Server(uvicorn.Config(app, log_level=log_level.lower())).serve(sockets=[sock])


@app.command("mcp")
@handle_errors
def mcp(
    transport: Annotated[
        Transport,
        typer.Option(
            "--transport",
            "-t",
            help="stdio: the client starts engram and talks over stdin/stdout (Claude Code, Cursor). "
            "streamable-http: serve http://HOST:PORT/mcp for clients that connect by URL.",
        ),
    ] = Transport.stdio,
    host: Annotated[
        str, typer.Option("--host", help="streamable-http: the address to listen on.")
    ] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option(
            "--port",
            "-p",
            min=0,
            max=65535,
            help="streamable-http: the port to listen on (0: a free one; the start-up line names it).",
        ),
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
    sock = _bind(host, port)
    with sock:
        bound = f"[{host.strip('[]')}]" if ":" in host else host
        err_console.print(
            f"engram MCP server on [bold]http://{escape(bound)}:{sock.getsockname()[1]}/mcp[/]{escape(where)}",
            soft_wrap=True,  # one line: scripts read the port from it
        )
        if not _loopback(host):
            err_console.print(
                f"[bold red]WARNING: binding {escape(host)}: the MCP server has no authentication; anyone "
                "who can reach this port can read, change and delete every memory. Use --host 127.0.0.1, "
                "or put it behind a proxy that authenticates.[/]"
            )
        anyio.run(_serve_http, server, sock, host, log_level.value)
