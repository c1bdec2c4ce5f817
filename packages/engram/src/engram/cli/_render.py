"""Rich tables for people; ``--json`` bypasses all of this."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from rich import box
from rich.markup import escape
from rich.table import Table
from rich.text import Text

__all__ = [
    "changes_table",
    "entity_table",
    "history_table",
    "infer_lines",
    "memory_panel",
    "memory_table",
    "relation_table",
    "scope_label",
    "when_label",
]


def when_label(d: Mapping[str, Any]) -> str:
    """When a memory was said (``message_time``) or else stored (``created_at``), to the minute."""
    meta = d.get("metadata") or {}
    raw = meta.get("message_time") or d.get("created_at")
    if not raw:
        return ""
    try:
        return datetime.fromisoformat(str(raw)).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return str(raw)


def scope_label(d: Mapping[str, Any]) -> str:
    parts = [f"{k.removesuffix('_id')}={d[k]}" for k in ("user_id", "agent_id", "run_id") if d.get(k)]
    return " ".join(parts)


def _speaker(d: Mapping[str, Any]) -> str:
    meta = d.get("metadata") or {}
    return str(meta.get("speaker") or "")


def memory_table(
    rows: Sequence[Mapping[str, Any]], *, scores: bool = False, title: str | None = None
) -> Table:
    """One row per memory: (rank, score,) the memory with its id beneath, speaker, when, and the
    scope when the rows span several."""
    show_scope = len({scope_label(d) for d in rows}) > 1
    show_state = any(d.get("archived") for d in rows)
    table = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left", pad_edge=False, expand=True)
    if scores:
        table.add_column("#", justify="right", style="dim", no_wrap=True)
        table.add_column("score", justify="right", style="cyan", no_wrap=True)
    table.add_column("memory", ratio=1, overflow="fold", min_width=20)
    table.add_column("who", style="magenta", max_width=14)
    table.add_column("when", style="green", min_width=10)
    if show_scope:
        table.add_column("scope", style="yellow", max_width=20, overflow="fold")
    if show_state:
        table.add_column("state", no_wrap=True)
    for i, d in enumerate(rows, start=1):
        cells: list[Any] = []
        if scores:
            cells += [str(i), f"{float(d.get('score', 0.0)):.3f}"]
        body = Text(str(d.get("memory", "")))
        body.append("\n" + str(d.get("id", "")), style="dim")
        cells += [body, escape(_speaker(d)), when_label(d)]
        if show_scope:
            cells.append(escape(scope_label(d)))
        if show_state:
            cells.append(archived_label(d))
        table.add_row(*cells)
    return table


def archived_label(d: Mapping[str, Any]) -> Text:
    """``archived (superseded)`` in red for an archived version, ``active`` otherwise."""
    if not d.get("archived"):
        return Text("active", style="green")
    return Text(f"archived ({d.get('archive_reason') or '?'})", style="red")


_EVENT_COLOURS = {"ADD": "green", "UPDATE": "yellow", "DELETE": "red", "NONE": "dim"}


def changes_table(results: Sequence[Mapping[str, Any]]) -> Table:
    """What one ``add`` did: one row per change, the event, the memory (id beneath) and, for an
    UPDATE, the text it replaced (for a DELETE the memory column holds the text removed)."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, expand=True)
    table.add_column("event", style="bold", no_wrap=True)
    table.add_column("memory", ratio=1, overflow="fold", min_width=20)
    table.add_column("was", ratio=1, overflow="fold", style="dim")
    for r in results:
        ev = str(r.get("event", ""))
        body = Text(str(r.get("memory", "")), style="strike" if ev == "DELETE" else "")
        body.append("\n" + str(r.get("id", "")), style="dim")
        table.add_row(f"[{_EVENT_COLOURS.get(ev, 'white')}]{ev}[/]", body, Text(str(r.get("previous_memory") or "")))
    return table


def infer_lines(report: Mapping[str, Any] | None) -> list[str]:
    """The LLM pipeline's report (``add``'s ``"infer"``) as Rich markup lines."""
    if not report:
        return []
    n = int(report.get("facts", 0))
    lines = [f"[cyan]LLM:[/] {n} {'fact' if n == 1 else 'facts'} extracted"]
    if report.get("fallback"):
        lines.append(f"[yellow]fallback:[/] {escape(str(report['fallback']))}")
    for problem in report.get("problems") or []:
        lines.append(f"[yellow]problem:[/] {escape(str(problem))}")
    return lines


def memory_panel(d: Mapping[str, Any]) -> Table:
    """Every field of one memory, one per row."""
    table = Table(box=box.SIMPLE, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key in (
        "id", "memory", "hash", "user_id", "agent_id", "run_id", "created_at", "updated_at", "archived_at",
        "archive_reason",
    ):
        if d.get(key) is not None:
            table.add_row(key, Text(str(d[key])))
    for key, value in (d.get("metadata") or {}).items():
        table.add_row(f"metadata.{key}", Text(str(value)))
    return table


def history_table(events: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("when", style="green", no_wrap=True)
    table.add_column("event", style="bold")
    table.add_column("old", overflow="fold", ratio=1)
    table.add_column("new", overflow="fold", ratio=1)
    table.add_column("actor", style="magenta")
    colours = {"ADD": "green", "UPDATE": "yellow", "DELETE": "red"}
    for e in events:
        ev = str(e.get("event", ""))
        table.add_row(
            when_label({"created_at": e.get("created_at")}),
            f"[{colours.get(ev, 'white')}]{ev}[/]",
            Text(e.get("old_memory") or "", style="dim"),
            Text(e.get("new_memory") or ""),
            escape(str(e.get("actor_id") or "")),
        )
    return table


def _day(raw: Any) -> str:
    if not raw:
        return ""
    try:
        return datetime.fromisoformat(str(raw)).strftime("%Y-%m-%d")
    except ValueError:
        return str(raw)


def relation_table(rows: Sequence[Mapping[str, Any]], *, title: str | None = None) -> Table:
    """One row per relation: source -relationship-> destination, when it held in the world
    (``valid_at`` to ``invalid_at``), whether engram still holds it, and its mentions (and hops,
    for search results)."""
    hops = any("hops" in r for r in rows)
    table = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left", pad_edge=False)
    table.add_column("source", style="bold")
    table.add_column("relationship", style="cyan")
    table.add_column("destination", style="bold")
    table.add_column("held", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("mentions", justify="right")
    if hops:
        table.add_column("hops", justify="right")
    for r in rows:
        start, end = _day(r.get("valid_at")), _day(r.get("invalid_at"))
        held = f"{start or '?'} - {end}" if end else (f"since {start}" if start else "")
        status = "[green]current[/]" if r.get("expired_at") is None else f"[dim]closed {_day(r['expired_at'])}[/]"
        cells = [
            escape(str(r.get("source", ""))), escape(str(r.get("relationship", ""))),
            escape(str(r.get("destination", ""))), held, status, str(r.get("mentions", "")),
        ]
        if hops:
            cells.append(str(r.get("hops", "")))
        table.add_row(*cells)
    return table


def entity_table(rows: Sequence[Mapping[str, Any]]) -> Table:
    """One row per entity: name, type, mentions, first seen."""
    table = Table(box=box.SIMPLE_HEAD, title="Entities", title_justify="left", pad_edge=False)
    table.add_column("name", style="bold")
    table.add_column("type", style="cyan")
    table.add_column("mentions", justify="right")
    table.add_column("first seen", no_wrap=True)
    for e in rows:
        table.add_row(escape(str(e["name"])), escape(str(e.get("type", ""))), str(e.get("mentions", "")),
                      _day(e.get("created_at")))
    return table
