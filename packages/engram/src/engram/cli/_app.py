"""The ``engram`` command line: typer commands over :class:`~engram.core.AsyncMemory`."""

from __future__ import annotations

import json
import sys
from collections import Counter
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any

import typer
from engram.core import AsyncMemory, MemoryItem, parse_filters
from engram.core.errors import MemoryNotFoundError
from rich import box
from rich.markup import escape
from rich.table import Table

from ._formats import ParsedFile, item_to_json, parse_file
from ._ingest import DEFAULT_BATCH, ingest, prepare_model, progress_bar
from ._render import (
    changes_table,
    entity_table,
    history_table,
    infer_lines,
    memory_panel,
    memory_table,
    relation_table,
    scope_label,
)
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
    parse_json_option,
    parse_metadata,
    print_json,
)

__all__ = ["app", "main"]

app = typer.Typer(
    name="engram",
    help="engram: long-term memory for AI agents. Remembers conversations, recalls what matters. "
    "Runs offline on an embedded SQLite database and a local embedding model.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

FilterOpt = Annotated[
    str | None,
    typer.Option(
        "--filter",
        "-f",
        help='Metadata filter as JSON, e.g. \'{"speaker": "Maya"}\' or \'{"session": {"gte": 3}}\'.',
    ),
]
ArchivedOpt = Annotated[
    bool,
    typer.Option(
        "--include-archived",
        help="Also show archived versions (superseded or deleted by the LLM, or replaced by update), marked.",
    ),
]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def _version() -> str:
    try:
        return version("engram")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without metadata
        return "0+unknown"


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"engram {_version()}")
        raise typer.Exit()


@app.callback()
@handle_errors
def _root(
    _version_flag: Annotated[
        bool,
        typer.Option(
            "--version", "-V", callback=_version_callback, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
    otlp_endpoint: OtlpEndpointOpt = None,
    otlp_protocol: OtlpProtocolOpt = None,
) -> None:
    """engram: long-term memory for AI agents."""
    from ._otlp import start_export

    start_export(otlp_endpoint, otlp_protocol)


def _opts(user_id, agent_id, run_id, db, embedder, config, as_json) -> Options:  # type: ignore[no-untyped-def]
    return Options(user_id, agent_id, run_id, db, embedder, config, as_json)


async def _get_in_scope(mem: AsyncMemory, opts: Options, memory_id: str) -> dict[str, Any]:
    found = await mem.get(memory_id)
    scope = opts.scope()
    if found is None or (
        scope is not None
        and not scope.matches(found.get("user_id"), found.get("agent_id"), found.get("run_id"))
    ):
        where = (
            f" in scope {scope_label(opts.scope_kwargs())}" if scope is not None and found is not None else ""
        )
        raise MemoryNotFoundError(f"no memory with id {memory_id!r}{where}")
    return found


# -- add ---------------------------------------------------------------------------------------


@app.command()
@handle_errors
def add(
    text: Annotated[
        list[str],
        typer.Argument(
            help="What to remember (several arguments: one memory each). '-' reads stdin: "
            'plain text, or JSON messages [{"role", "content", "name"}].'
        ),
    ],
    role: Annotated[str, typer.Option("--role", help="Message role: user, assistant, tool.")] = "user",
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="Who said it (kept as metadata.speaker).")
    ] = None,
    time: Annotated[str | None, typer.Option("--time", help="When it was said, ISO 8601.")] = None,
    metadata: Annotated[
        list[str] | None, typer.Option("--metadata", "-m", help="key=value (repeatable) or a JSON object.")
    ] = None,
    infer: Annotated[
        bool,
        typer.Option(
            "--infer/--no-infer",
            help="With an LLM configured (--llm, ENGRAM_LLM__*), let it extract facts and decide ADD / "
            "UPDATE / DELETE / NONE against what is stored; --no-infer stores the text verbatim.",
        ),
    ] = True,
    llm: LlmOpt = None,
    llm_model: LlmModelOpt = None,
    user_id: UserOpt = None,
    agent_id: AgentOpt = None,
    run_id: RunOpt = None,
    db: DbOpt = None,
    embedder: EmbedderOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remember text for a scope. With an LLM configured, it extracts the facts and updates what is
    stored; without one (or with --no-infer), each text is stored verbatim.

    Example: [bold]engram add "I moved to Portland in April" -u maya[/]
    """
    opts = _opts(user_id, agent_id, run_id, db, embedder, config, as_json)
    opts.llm, opts.llm_model = llm, llm_model
    scope = opts.require_scope()
    messages: list[Any] = []
    for t in text:
        if t == "-":
            raw = sys.stdin.read()
            stripped = raw.strip()
            if stripped.startswith(("[", "{")):
                parsed = parse_json_option(stripped, "stdin")
                messages.extend(parsed if isinstance(parsed, list) else [parsed])
                continue
            t = stripped
        msg: dict[str, Any] = {"role": role, "content": t}
        if name is not None:
            msg["name"] = name
        if time is not None:
            msg["time"] = time
        messages.append(msg)
    meta = parse_metadata(metadata)

    async def go(mem: AsyncMemory) -> dict[str, Any]:
        await prepare_model(mem, err_console, enabled=not as_json)
        return await mem.add(messages, metadata=meta, infer=infer, **scope_kw(scope))

    result = opts.run(go)
    if as_json:
        print_json(result)
        return
    who = escape(scope_label(opts.scope_kwargs()))
    if "infer" not in result:
        n = len(result["results"])
        console.print(f"[green]Remembered {n} {'memory' if n == 1 else 'memories'}[/] for {who}")
        for r in result["results"]:
            console.print(f"  [dim]{r['id']}[/]  {escape(r['memory'])}")
        return
    counts = Counter(r["event"] for r in result["results"])
    if result["results"]:
        done = ", ".join(
            f"{counts[e]} {word}" for e, word in (("ADD", "added"), ("UPDATE", "updated"), ("DELETE", "deleted"))
            if counts[e]
        )
        console.print(f"[green]Memories of {who}:[/] {done}")
        console.print(changes_table(result["results"]))
    else:
        console.print(f"[green]Nothing new for {who}[/] [dim](already known, or nothing worth remembering)[/]")
    for line in infer_lines(result["infer"]):
        console.print(line, soft_wrap=True)
    changed = result.get("relations") or {}
    if changed.get("added"):
        console.print(relation_table(changed["added"], title="Relations added"))
    if changed.get("closed"):
        console.print(relation_table(changed["closed"], title="Relations closed (no longer true)"))


def scope_kw(scope: Any) -> dict[str, str | None]:
    return {"user_id": scope.user_id, "agent_id": scope.agent_id, "run_id": scope.run_id}


# -- search ------------------------------------------------------------------------------------


@app.command()
@handle_errors
def search(
    query: Annotated[str, typer.Argument(help="A question or keywords; any text is fine.")],
    limit: Annotated[int, typer.Option("--limit", "-k", min=1, max=10_000, help="How many results.")] = 10,
    threshold: Annotated[
        float | None, typer.Option("--threshold", help="Drop results scoring below this.")
    ] = None,
    filters: FilterOpt = None,
    include_archived: ArchivedOpt = False,
    user_id: UserOpt = None,
    agent_id: AgentOpt = None,
    run_id: RunOpt = None,
    db: DbOpt = None,
    embedder: EmbedderOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Find the memories that best answer a query, best first.

    Example: [bold]engram search "Where does Maya live?" -u maya -k 5[/]
    """
    opts = _opts(user_id, agent_id, run_id, db, embedder, config, as_json)
    scope = opts.require_scope()
    flt = parse_json_option(filters, "--filter")

    async def go(mem: AsyncMemory) -> dict[str, Any]:
        await prepare_model(mem, err_console, enabled=not as_json)
        return await mem.search(
            query, filters=flt, limit=limit, threshold=threshold, include_archived=include_archived,
            **scope_kw(scope),
        )

    result = opts.run(go)
    if as_json:
        print_json(result)
        return
    for path, why in (result.get("missing") or {}).items():
        err_console.print(f"[yellow]the {escape(path)} recall path is missing:[/] {escape(why)}")
    if not result["results"]:
        console.print("[yellow]No memories found.[/]")
    else:
        console.print(memory_table(result["results"], scores=True))
    if result.get("relations"):
        console.print(relation_table(result["relations"], title="Related in the graph"))


# -- list / get --------------------------------------------------------------------------------


@app.command("list")
@handle_errors
def list_(
    limit: Annotated[int, typer.Option("--limit", "-k", min=1, max=10_000, help="At most this many.")] = 100,
    filters: FilterOpt = None,
    include_archived: ArchivedOpt = False,
    user_id: UserOpt = None,
    agent_id: AgentOpt = None,
    run_id: RunOpt = None,
    db: DbOpt = None,
    embedder: EmbedderOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List memories, newest first (every scope when none is given).

    Example: [bold]engram list -u maya -k 20[/]
    """
    opts = _opts(user_id, agent_id, run_id, db, embedder, config, as_json)
    scope = opts.scope()
    flt = parse_json_option(filters, "--filter")

    async def go(mem: AsyncMemory) -> dict[str, Any]:
        if scope is not None:
            return await mem.get_all(filters=flt, limit=limit, include_archived=include_archived, **scope_kw(scope))
        store = mem.vector_store
        items = await store.list(None, filters=parse_filters(flt), limit=limit)
        if include_archived and len(items) < limit and "archive" in getattr(store, "capabilities", ()):
            items += await store.list(None, filters=parse_filters(flt), limit=limit - len(items), archived=True)
        return {"results": [i.to_dict() for i in items]}

    result = opts.run(go)
    if as_json:
        print_json(result)
        return
    rows = result["results"]
    if not rows:
        console.print("[yellow]No memories.[/]")
        return
    console.print(memory_table(rows))
    archived = sum(1 for r in rows if r.get("archived"))
    more = f", {archived} archived after the active ones" if archived else ""
    console.print(f"[dim]{len(rows)} shown (newest first{more}; --limit for more)[/]")


@app.command()
@handle_errors
def get(
    memory_id: Annotated[str, typer.Argument(help="The memory's id.")],
    user_id: UserOpt = None,
    agent_id: AgentOpt = None,
    run_id: RunOpt = None,
    db: DbOpt = None,
    embedder: EmbedderOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one memory. With a scope, the memory must belong to it.

    Example: [bold]engram get 3f2c9a6e-...[/]
    """
    opts = _opts(user_id, agent_id, run_id, db, embedder, config, as_json)
    result = opts.run(lambda mem: _get_in_scope(mem, opts, memory_id))
    if as_json:
        print_json(result)
        return
    console.print(memory_panel(result))


# -- update / delete / history / reset ---------------------------------------------------------


@app.command()
@handle_errors
def update(
    memory_id: Annotated[str, typer.Argument(help="The memory's id.")],
    text: Annotated[str, typer.Argument(help="The new text.")],
    metadata: Annotated[
        list[str] | None, typer.Option("--metadata", "-m", help="key=value pairs merged into its metadata.")
    ] = None,
    user_id: UserOpt = None,
    agent_id: AgentOpt = None,
    run_id: RunOpt = None,
    db: DbOpt = None,
    embedder: EmbedderOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Replace a memory's text (the old text stays in its history).

    Example: [bold]engram update 3f2c9a6e-... "Maya lives in Portland"[/]
    """
    opts = _opts(user_id, agent_id, run_id, db, embedder, config, as_json)
    meta = parse_metadata(metadata)

    async def go(mem: AsyncMemory) -> dict[str, Any]:
        await _get_in_scope(mem, opts, memory_id)
        await prepare_model(mem, err_console, enabled=not as_json)
        return await mem.update(memory_id, text, metadata=meta)

    result = opts.run(go)
    if as_json:
        print_json(result)
        return
    console.print(f"[green]Updated[/] [dim]{result['id']}[/]")
    console.print(f"  [dim]was:[/] {escape(result['previous_memory'])}")
    console.print(f"  [dim]now:[/] {escape(result['memory'])}")


@app.command()
@handle_errors
def delete(
    memory_id: Annotated[str | None, typer.Argument(help="The memory's id (or --all with a scope).")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Delete every memory of the scope given.")] = False,
    yes: YesOpt = False,
    user_id: UserOpt = None,
    agent_id: AgentOpt = None,
    run_id: RunOpt = None,
    db: DbOpt = None,
    embedder: EmbedderOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete one memory, or with --all every memory of a scope (history is kept).

    Examples: [bold]engram delete 3f2c9a6e-...[/]   [bold]engram delete --all -u maya --yes[/]
    """
    opts = _opts(user_id, agent_id, run_id, db, embedder, config, as_json)
    if all_:
        if memory_id is not None:
            raise fail("give a memory id or --all, not both")
        scope = opts.require_scope()
        if not yes:
            typer.confirm(f"Delete every memory of {scope_label(opts.scope_kwargs())}?", abort=True, err=True)
        result = opts.run(lambda mem: mem.delete_all(**scope_kw(scope)))
    else:
        if memory_id is None:
            raise fail("give the id of the memory to delete (or --all with a scope)")

        async def go(mem: AsyncMemory) -> dict[str, Any]:
            await _get_in_scope(mem, opts, memory_id)
            return await mem.delete(memory_id)

        result = opts.run(go)
    if as_json:
        print_json(result)
        return
    if all_:
        console.print(
            f"[green]Deleted {result['deleted']} memories[/] of {escape(scope_label(opts.scope_kwargs()))}"
        )
    else:
        console.print(f"[green]Deleted[/] [dim]{memory_id}[/]")


@app.command()
@handle_errors
def history(
    memory_id: Annotated[str, typer.Argument(help="The memory's id.")],
    user_id: UserOpt = None,
    agent_id: AgentOpt = None,
    run_id: RunOpt = None,
    db: DbOpt = None,
    embedder: EmbedderOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Every change to one memory, oldest first (kept after it is deleted).

    Example: [bold]engram history 3f2c9a6e-...[/]
    """
    opts = _opts(user_id, agent_id, run_id, db, embedder, config, as_json)
    scope = opts.scope()

    async def go(mem: AsyncMemory) -> list[dict[str, Any]]:
        events = await mem.history(memory_id)
        if scope is not None:
            events = [
                e for e in events if scope.matches(e.get("user_id"), e.get("agent_id"), e.get("run_id"))
            ]
        return events

    events = opts.run(go)
    if as_json:
        print_json(events)
        return
    if not events:
        console.print(f"[yellow]No history for {escape(memory_id)}.[/]")
        return
    console.print(history_table(events))


@app.command()
@handle_errors
def reset(
    yes: YesOpt = False,
    user_id: UserOpt = None,
    agent_id: AgentOpt = None,
    run_id: RunOpt = None,
    db: DbOpt = None,
    embedder: EmbedderOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete everything: every memory and all history. With a scope, only that scope's memories.

    Example: [bold]engram reset --yes[/]
    """
    opts = _opts(user_id, agent_id, run_id, db, embedder, config, as_json)
    scope = opts.scope()
    _, db_path = opts.build()
    what = (
        f"every memory of {scope_label(opts.scope_kwargs())}"
        if scope is not None
        else f"ALL memories and history{f' in {db_path}' if db_path else ''}"
    )
    if not yes:
        typer.confirm(f"Delete {what}? This cannot be undone.", abort=True, err=True)

    async def go(mem: AsyncMemory) -> dict[str, Any]:
        if scope is not None:
            return await mem.delete_all(**scope_kw(scope))
        n = await mem.count()
        await mem.reset()
        return {"deleted": n, "message": f"Reset: deleted {n} memories and all history"}

    result = opts.run(go)
    if as_json:
        print_json(result)
        return
    console.print(f"[green]{escape(result['message'])}[/]")


# -- import / export ---------------------------------------------------------------------------


def read_input(path: Path) -> str:
    if str(path) == "-":
        return sys.stdin.read()
    return path.expanduser().read_text(encoding="utf-8")


@app.command("import")
@handle_errors
def import_(
    file: Annotated[Path, typer.Argument(help="The file to import ('-' for stdin).", dir_okay=False)],
    fmt: Annotated[
        str, typer.Option("--format", help="auto, jsonl (engram export) or locomo (LoCoMo conversations).")
    ] = "auto",
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=10_000, help="Memories embedded and written per batch.")
    ] = DEFAULT_BATCH,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no warnings.")] = False,
    user_id: UserOpt = None,
    agent_id: AgentOpt = None,
    run_id: RunOpt = None,
    db: DbOpt = None,
    embedder: EmbedderOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Import memories: engram's JSON lines (what export writes) or LoCoMo conversations.

    Without a scope, JSON lines keep their own scope and each LoCoMo conversation goes to
    user_id = its sample_id. With one, everything goes to that scope.

    Example: [bold]engram import locomo_dev.json[/]   [bold]engram import backup.jsonl[/]
    """
    if fmt not in ("auto", "jsonl", "locomo"):
        raise fail(f"--format must be auto, jsonl or locomo, got {fmt!r}")
    opts = _opts(user_id, agent_id, run_id, db, embedder, config, as_json)
    text = read_input(file)
    parsed: ParsedFile = parse_file(text, fmt, scope=opts.scope(), source=str(file))  # type: ignore[arg-type]
    if not quiet:
        for w in parsed.warnings[:20]:
            err_console.print(f"[yellow]warning:[/] {escape(w)}", soft_wrap=True)
        if len(parsed.warnings) > 20:
            err_console.print(f"[yellow]warning:[/] ... and {len(parsed.warnings) - 20} more")

    async def go(mem: AsyncMemory) -> dict[str, Any]:
        await prepare_model(mem, err_console, enabled=not quiet)
        with progress_bar(err_console, enabled=not quiet) as bar:
            task = bar.add_task(f"Importing {file.name}", total=len(parsed.records))

            def advance(chunk: list[Any]) -> None:
                bar.update(task, advance=len(chunk), description=f"Importing {escape(chunk[-1].group)}")

            return await ingest(mem, parsed.records, batch_size=batch_size, on_batch=advance)

    result = opts.run(go) if parsed.records else {"imported": 0, "scopes": []}
    result = {"format": parsed.format, **result, "skipped": parsed.skipped, "warnings": parsed.warnings}
    if as_json:
        print_json(result)
        return
    console.print(
        f"[green]Imported {result['imported']} memories[/] ({parsed.format})"
        + (f", [yellow]skipped {parsed.skipped}[/]" if parsed.skipped else "")
    )
    for s in result["scopes"]:
        console.print(f"  {escape(scope_label(s))}: {s['count']}")


@app.command()
@handle_errors
def export(
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", dir_okay=False, help="Write to this file instead of stdout."),
    ] = None,
    user_id: UserOpt = None,
    agent_id: AgentOpt = None,
    run_id: RunOpt = None,
    db: DbOpt = None,
    embedder: EmbedderOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Export memories as JSON lines (one memory per line; every scope when none is given).
    [bold]engram import[/] reads the file back losslessly.

    Example: [bold]engram export -u maya -o maya.jsonl[/]
    """
    opts = _opts(user_id, agent_id, run_id, db, embedder, config, as_json)
    scope = opts.scope()
    items: list[MemoryItem] = opts.run(lambda mem: mem.export_items(scope))
    lines = "".join(json.dumps(item_to_json(i), ensure_ascii=False) + "\n" for i in items)
    if output is None:
        sys.stdout.write(lines)
        sys.stdout.flush()
        return
    output.expanduser().write_text(lines, encoding="utf-8")
    if as_json:
        print_json({"exported": len(items), "path": str(output)})
    else:
        err_console.print(f"[green]Exported {len(items)} memories[/] to {escape(str(output))}")


# -- stats -------------------------------------------------------------------------------------


def _spec_label(spec: Any) -> str:
    if isinstance(spec, str):
        return spec.split("@")[-1] if "://" in spec and "@" in spec else spec
    if isinstance(spec, dict):
        return str(spec.get("provider"))
    return type(spec).__name__


def _size(path: Path | None) -> int | None:
    if path is None or str(path) == ":memory:":
        return None
    total, found = 0, False
    for suffix in ("", "-wal", "-shm"):
        p = Path(str(path) + suffix)
        if p.exists():
            total += p.stat().st_size
            found = True
    return total if found else None


def _human_size(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


@app.command()
@handle_errors
def stats(
    user_id: UserOpt = None,
    agent_id: AgentOpt = None,
    run_id: RunOpt = None,
    db: DbOpt = None,
    embedder: EmbedderOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """How many memories each scope holds, where the database is, its size and the embedder.

    Example: [bold]engram stats[/]
    """
    opts = _opts(user_id, agent_id, run_id, db, embedder, config, as_json)
    cfg, db_path = opts.build()
    scope = opts.scope()

    async def go(mem: AsyncMemory) -> dict[str, Any]:
        items = await mem.vector_store.list(scope, limit=None)
        counts = Counter((i.user_id, i.agent_id, i.run_id) for i in items)
        return {
            "db": str(db_path) if db_path else None,
            "size_bytes": _size(db_path),
            "vector_store": _spec_label(cfg.vector_store) if db_path is None else "sqlite",
            "embedder": _spec_label(cfg.embedder),
            "dims": mem.embedder.dims,
            "total": len(items),
            "scopes": [
                {"user_id": u, "agent_id": a, "run_id": r, "count": n}
                for (u, a, r), n in sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))
            ],
        }

    result = opts.run(go)
    if as_json:
        print_json(result)
        return
    info = Table.grid(padding=(0, 2))
    info.add_column(style="bold")
    info.add_column()
    info.add_row("database", escape(result["db"] or "-"))
    info.add_row("size", _human_size(result["size_bytes"]))
    info.add_row("vector store", escape(result["vector_store"]))
    info.add_row("embedder", f"{escape(result['embedder'])} ({result['dims']} dims)")
    info.add_row("memories", str(result["total"]))
    console.print(info)
    if result["scopes"]:
        table = Table(title="memories per scope", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        for col in ("user_id", "agent_id", "run_id"):
            table.add_column(col, style="yellow")
        table.add_column("memories", justify="right", style="cyan")
        for s in result["scopes"]:
            table.add_row(*(escape(s[c] or "") for c in ("user_id", "agent_id", "run_id")), str(s["count"]))
        console.print(table)


# -- graph -------------------------------------------------------------------------------------


@app.command()
@handle_errors
def graph(
    include_expired: Annotated[
        bool, typer.Option("--all", "-a", help="Also the relations a newer one contradicted (closed intervals).")
    ] = False,
    at: Annotated[
        str | None,
        typer.Option("--at", help="Only what held at this time (ISO 8601, e.g. 2023-06-01), current or closed."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", "-k", min=1, max=10_000, help="At most this many relations.")
    ] = None,
    user_id: UserOpt = None,
    agent_id: AgentOpt = None,
    run_id: RunOpt = None,
    db: DbOpt = None,
    embedder: EmbedderOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a scope's entities and relations: the current ones, or with --all the closed ones too.

    The graph is filled by [bold]engram add[/] with an LLM and a graph store configured (ENGRAM_GRAPH_STORE=sqlite keeps it in the same database file). Without a graph store configured, this command reads the SQLite graph in the database file.

    Example: [bold]engram graph -u maya --all[/]
    """
    opts = _opts(user_id, agent_id, run_id, db, embedder, config, as_json)
    opts.graph_default = "sqlite"
    scope = opts.require_scope()

    async def go(mem: AsyncMemory) -> dict[str, Any]:
        return await mem.get_graph(include_expired=include_expired, at=at, limit=limit, **scope_kw(scope))

    result = opts.run(go)
    if as_json:
        print_json(result)
        return
    who = escape(scope_label(opts.scope_kwargs()))
    if not result["entities"] and not result["relations"]:
        console.print(f"[yellow]No graph for {who}.[/] [dim](engram add with an LLM and a graph store fills it)[/]")
        return
    console.print(entity_table(result["entities"]))
    what = f"held at {escape(at)}" if at else ("all, closed included" if include_expired else "current")
    if result["relations"]:
        console.print(relation_table(result["relations"], title=f"Relations ({what})"))
    else:
        console.print(f"[yellow]No relations ({what}).[/]")


# -- demo --------------------------------------------------------------------------------------


@app.command()
@handle_errors
def demo(
    db: Annotated[
        Path | None,
        typer.Option(
            "--db", dir_okay=False, help="Keep the demo's memories in this file (default: a temporary one)."
        ),
    ] = None,
    embedder: EmbedderOpt = None,
    config: ConfigOpt = None,
    limit: Annotated[
        int, typer.Option("--limit", "-k", min=1, max=20, help="Answers shown per question.")
    ] = 3,
    as_json: JsonOpt = False,
) -> None:
    """Remember a sample conversation and ask it questions: engram in one command, offline.

    Example: [bold]engram demo[/]
    """
    from ._demo import run_demo

    run_demo(db=db, embedder=embedder, config=config, limit=limit, as_json=as_json)


# `engram serve` and `engram mcp` live in their own modules and register on `app` when imported.
from . import _mcp, _serve  # noqa: E402, F401


def main() -> None:
    """Console-script entry point."""
    app()
