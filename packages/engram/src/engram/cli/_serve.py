"""``engram serve``: the REST API (engram-server, ``pip install "engram[server]"``), and
``engram serve key add|list|remove`` for its API keys file."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ._app import app
from ._render import scope_label
from ._runtime import (
    AgentOpt,
    ConfigOpt,
    DbOpt,
    EmbedderOpt,
    JsonOpt,
    LlmModelOpt,
    LlmOpt,
    Options,
    OtlpEndpointOpt,
    OtlpProtocolOpt,
    RunOpt,
    UserOpt,
    console,
    err_console,
    fail,
    handle_errors,
    print_json,
)

__all__ = ["serve_app"]

_INSTALL = 'engram serve needs the REST server: pip install "engram[server]"'

serve_app = typer.Typer(
    name="serve",
    help="Serve the REST API (mem0's paths and bodies) on one memory. [bold]engram serve key[/] manages API keys.",
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
key_app = typer.Typer(
    name="key",
    help="Create, list and remove the API keys a server checks (the file keeps only their SHA-256 hashes).",
    no_args_is_help=True,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
serve_app.add_typer(key_app, name="key")
app.add_typer(serve_app, name="serve")

KeysFileOpt = Annotated[
    Path,
    typer.Option("--keys", envvar="ENGRAM_API_KEYS", dir_okay=False, help="The API keys file."),
]


def _rest() -> Any:
    try:
        from engram.server import rest
    except ImportError:
        raise fail(_INSTALL) from None
    return rest


def _loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


@serve_app.callback(invoke_without_command=True)
@handle_errors
def serve(
    ctx: typer.Context,
    host: Annotated[
        str,
        typer.Option("--host", envvar="ENGRAM_HOST", help="Address to bind. Only this machine by default."),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", envvar="ENGRAM_PORT", min=0, max=65535)] = 8000,
    api_keys: Annotated[
        Path | None,
        typer.Option(
            "--api-keys",
            envvar="ENGRAM_API_KEYS",
            dir_okay=False,
            help="Require API keys from this file (see [bold]engram serve key add[/]). Without it, no auth.",
            show_default=False,
        ),
    ] = None,
    max_body_bytes: Annotated[
        int,
        typer.Option("--max-body-bytes", min=1, help="Refuse request bodies larger than this (413)."),
    ] = 4 * 1024 * 1024,
    db: DbOpt = None,
    embedder: EmbedderOpt = None,
    config: ConfigOpt = None,
    llm: LlmOpt = None,
    llm_model: LlmModelOpt = None,
    otlp_endpoint: OtlpEndpointOpt = None,
    otlp_protocol: OtlpProtocolOpt = None,
    log_level: Annotated[
        str, typer.Option("--log-level", help="uvicorn's log level: critical, error, warning, info, debug.")
    ] = "info",
) -> None:
    """Serve the REST API on one memory (the same database and options as the other commands).

    Binds 127.0.0.1 unless --host says otherwise; --port 0 picks a free port, and the address
    line printed once the server listens gives the port. OpenAPI document at /openapi.json, docs at /docs.

    Example: [bold]engram serve --port 8000 --api-keys ~/.config/engram/keys.json[/]
    """
    if ctx.invoked_subcommand is not None:
        return
    rest = _rest()
    import uvicorn
    from engram.core import AsyncMemory

    if log_level not in ("critical", "error", "warning", "info", "debug"):
        raise fail(f"--log-level must be critical, error, warning, info or debug, got {log_level!r}")
    opts = Options(db=db, embedder=embedder, config=config, llm=llm, llm_model=llm_model)
    cfg, db_path = opts.build()
    memory = AsyncMemory(cfg)
    memory.vector_store  # noqa: B018 - builds the providers now: a bad name fails here, in one red line
    keys = rest.KeyStore(api_keys) if api_keys is not None else None
    n_keys = len(keys.load()) if keys is not None else 0
    if otlp_endpoint is not None or otlp_protocol is not None:
        from ._otlp import start_export

        start_export(otlp_endpoint, otlp_protocol)  # bad input: a ConfigurationError, one red line
    application = rest.create_app(memory, api_keys=keys, max_body_bytes=max_body_bytes)

    err_console.print(f"  database: {escape(str(db_path)) if db_path else 'from the configuration'}")
    if keys is not None:
        err_console.print(f"  auth: API keys from {escape(str(keys.path))} ({n_keys} keys)")
        if n_keys == 0:
            err_console.print(
                "[yellow]  the keys file has no keys: every request but /health will be refused[/]"
            )
    else:
        err_console.print(
            "  auth: [yellow]off[/] (no --api-keys): every caller may read and write every memory"
        )
        if not _loopback(host):
            err_console.print(
                f"[bold red]WARNING: binding {escape(host)} without API keys: anyone who can reach this port can "
                "read, change and delete every memory. Use --api-keys (engram serve key add) or --host 127.0.0.1.[/]"
            )
    where = f"[{host}]" if ":" in host else host

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started:  # bound: the real port (--port 0 picks a free one)
                bound = self.servers[0].sockets[0].getsockname()[1]
                err_console.print(
                    f"[green]engram REST API[/] on [bold]http://{escape(where)}:{bound}[/] (docs at /docs)"
                )

    server = Server(
        uvicorn.Config(
            application, host=host, port=port, log_level=log_level, lifespan="on", server_header=False
        )
    )
    server.run()
    if not server.started:
        raise typer.Exit(3)


# -- keys ----------------------------------------------------------------------------------------


@key_app.command("add")
@handle_errors
def key_add(
    keys_file: KeysFileOpt,
    user_id: UserOpt = None,
    agent_id: AgentOpt = None,
    run_id: RunOpt = None,
    admin: Annotated[
        bool, typer.Option("--admin", help="A key for every scope (and reset). Give this or a scope.")
    ] = False,
    label: Annotated[str | None, typer.Option("--label", help="A note to tell keys apart.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API key and print it once; the file keeps only its hash.

    A key with a scope sees and writes only that scope's memories; an --admin key sees every scope.

    Example: [bold]engram serve key add --keys keys.json --user-id alice[/]
    """
    rest = _rest()
    scope = Options(user_id, agent_id, run_id).scope()
    if scope is None and not admin:
        raise fail("give the key a scope (--user-id, --agent-id, --run-id) or make it --admin")
    if scope is not None and admin:
        raise fail("an --admin key has no scope: give --admin or a scope, not both")
    key, record = rest.KeyStore(keys_file).add(scope, label=label)
    if as_json:
        print_json({"key": key, **{k: v for k, v in record.to_json().items() if k != "hash"}})
        return
    who = (
        scope_label({"user_id": user_id, "agent_id": agent_id, "run_id": run_id})
        if scope
        else "admin (every scope)"
    )
    err_console.print(f"[green]Created API key {record.id}[/] for {escape(who)} in {escape(str(keys_file))}")
    err_console.print("[yellow]It is shown only now; the file keeps only its hash.[/]")
    console.print(key, soft_wrap=True)


@key_app.command("list")
@handle_errors
def key_list(keys_file: KeysFileOpt, as_json: JsonOpt = False) -> None:
    """List the keys in a keys file (ids, scopes, labels; never the keys).

    Example: [bold]engram serve key list --keys keys.json[/]
    """
    rest = _rest()
    records = [{k: v for k, v in r.to_json().items() if k != "hash"} for r in rest.KeyStore(keys_file).load()]
    if as_json:
        print_json(records)
        return
    if not records:
        console.print("[yellow]No keys.[/]")
        return
    table = Table(box=None, pad_edge=False)
    for col in ("id", "scope", "label", "created"):
        table.add_column(col)
    for r in records:
        scoped = any(r[k] for k in ("user_id", "agent_id", "run_id"))
        table.add_row(
            r["id"],
            escape(scope_label(r) if scoped else "admin"),
            escape(r["label"] or ""),
            r["created_at"] or "",
        )
    console.print(table)


@key_app.command("remove")
@handle_errors
def key_remove(
    key_id: Annotated[str, typer.Argument(help="The key's id (engram serve key list).")],
    keys_file: KeysFileOpt,
) -> None:
    """Remove a key; a running server stops accepting it at its next request.

    Example: [bold]engram serve key remove k3f9a1c2e --keys keys.json[/]
    """
    rest = _rest()
    if not rest.KeyStore(keys_file).remove(key_id):
        raise fail(f"no key with id {key_id!r} in {keys_file}")
    err_console.print(f"[green]Removed API key {escape(key_id)}[/]")
