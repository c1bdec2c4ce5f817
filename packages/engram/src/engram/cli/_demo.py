"""``engram demo``: remember a sample conversation, then ask it questions."""

from __future__ import annotations

import json
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

from engram.core import AsyncMemory, Scope
from rich import box
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ._formats import parse_locomo
from ._ingest import ingest, prepare_model, progress_bar
from ._render import when_label
from ._runtime import Options, console, err_console, print_json

__all__ = ["DEMO_FILE", "DEMO_USER", "load_demo", "run_demo"]

DEMO_FILE = "demo_conversation.json"
DEMO_USER = "demo"


def load_demo() -> dict[str, Any]:
    """The demo conversation: shipped inside the wheel (``engram/cli/_data/``), or read from the
    repository's ``examples/`` in a source checkout."""
    try:
        res = resources.files("engram.cli").joinpath("_data", DEMO_FILE)
        if res.is_file():
            return json.loads(res.read_text(encoding="utf-8"))
    except (FileNotFoundError, ModuleNotFoundError, NotADirectoryError):
        pass
    repo_copy = Path(__file__).resolve().parents[5] / "examples" / DEMO_FILE
    if repo_copy.is_file():
        return json.loads(repo_copy.read_text(encoding="utf-8"))
    raise FileNotFoundError(f"the demo conversation ({DEMO_FILE}) is missing from this installation")


def _intro(doc: dict[str, Any], n_turns: int, n_sessions: int, db_label: str, embedder: str) -> Panel:
    conv = doc["conversation"]
    body = Text.assemble(
        ("engram", "bold cyan"),
        " is long-term memory for AI agents: it remembers conversations\n"
        "and finds what matters when a question comes later. No server, no API key.\n\n",
        ("Reading ", ""),
        (f"{n_turns} messages", "bold"),
        f" from {n_sessions} chats between ",
        (conv.get("speaker_a", "A"), "magenta"),
        " and ",
        (conv.get("speaker_b", "B"), "magenta"),
        ",\n",
        "then asking questions about them.\n\n",
        ("database  ", "dim"),
        db_label,
        "\n",
        ("embedder  ", "dim"),
        embedder,
    )
    return Panel(body, title="[bold]engram demo[/]", title_align="left", border_style="cyan", expand=False)


def _answers(question: str, answer: str | None, hits: list[dict[str, Any]], evidence: set[str]) -> Table:
    table = Table(
        box=box.SIMPLE,
        show_header=True,
        header_style="dim",
        pad_edge=False,
        title=Text.assemble(("? ", "bold cyan"), (question, "bold")),
        title_justify="left",
    )
    table.add_column("score", justify="right", style="cyan", no_wrap=True)
    table.add_column("when", style="green", no_wrap=True)
    table.add_column("what engram remembered", overflow="fold", ratio=1, min_width=30)
    for h in hits:
        meta = h.get("metadata") or {}
        mark = " [green]✓[/]" if meta.get("dia_id") in evidence else ""
        table.add_row(
            f"{h['score']:.2f}",
            when_label(h)[:10],
            Text(f"{meta['speaker']}: " if meta.get("speaker") else "", style="magenta")
            + Text(h["memory"])
            + Text.from_markup(mark),
        )
    if answer:
        table.caption = f"the answer, as written in the sample: {answer}"
        table.caption_justify = "left"
        table.caption_style = "dim"
    return table


def run_demo(
    *, db: Path | None, embedder: str | None, config: Path | None, limit: int = 3, as_json: bool = False
) -> None:
    """Import the demo conversation into ``db`` (a temporary file by default) and ask its questions."""
    doc = load_demo()
    with tempfile.TemporaryDirectory(prefix="engram-demo-", ignore_cleanup_errors=True) as tmp:
        keep = db is not None
        path = db if db is not None else Path(tmp) / "demo.db"
        opts = Options(db=path, embedder=embedder, config=config, json=as_json)
        cfg, db_path = opts.build()
        parsed = parse_locomo(doc, scope=Scope(user_id=DEMO_USER), source=DEMO_FILE)
        sessions = {r.item.metadata.get("session") for r in parsed.records}
        questions = [q for q in doc.get("qa", []) if isinstance(q, dict) and q.get("question")]
        spec = cfg.embedder
        emb_label = (
            spec if isinstance(spec, str) else str(spec.get("provider") if isinstance(spec, dict) else spec)
        )
        if emb_label == "local":
            emb_label = "local (all-MiniLM-L6-v2 on onnxruntime, on this machine)"
        if not as_json:
            console.print()
            console.print(
                _intro(
                    doc,
                    len(parsed.records),
                    len(sessions),
                    f"{db_path}" + ("" if keep else " (temporary)"),
                    emb_label,
                )
            )

        async def go(mem: AsyncMemory) -> dict[str, Any]:
            started = time.perf_counter()
            await prepare_model(mem, err_console, enabled=not as_json)
            with progress_bar(err_console, enabled=not as_json) as bar:
                task = bar.add_task("Remembering", total=len(parsed.records))
                stats = await ingest(
                    mem, parsed.records, on_batch=lambda chunk: bar.update(task, advance=len(chunk))
                )
            took = time.perf_counter() - started
            if not as_json:
                console.print(
                    f"[green]Remembered {stats['imported']} messages[/] in {took:.1f} s. Now, some questions:\n"
                )
            answers = []
            for q in questions:
                res = await mem.search(q["question"], user_id=DEMO_USER, limit=limit)
                evidence = set(q.get("evidence") or [])
                answers.append(
                    {"question": q["question"], "answer": q.get("answer"), "results": res["results"]}
                )
                if not as_json:
                    console.print(_answers(q["question"], q.get("answer"), res["results"], evidence))
                    console.print()
            return {
                "db": str(db_path),
                "imported": stats["imported"],
                "seconds": round(took, 3),
                "questions": answers,
            }

        result = opts.run(go)
    if as_json:
        print_json(result)
        return
    console.print(
        "[dim]✓ marks the message the answer came from. Scores are fused dense (meaning) and BM25 (words) relevance, 0-1,[/]\n"
        "[dim]plus boosts for a turn next to a match, a named speaker and a named date.[/]\n"
    )
    where = f"--db {db_path}" if keep else "--db demo.db"
    tips = Text.from_markup(
        (
            ""
            if keep
            else "This demo used a temporary database. Keep one with [bold]engram demo --db demo.db[/], then:\n"
        )
        + f'  [bold]engram search "What does Daniel teach?" -u {DEMO_USER} {where}[/]\n'
        + f'  [bold]engram add "Maya\'s favorite food is ramen" -u {DEMO_USER} {where}[/]\n'
        + f"  [bold]engram list -u {DEMO_USER} {where}[/]     [bold]engram stats {where}[/]\n"
        + "Your own memories go to your user data directory when you leave out --db. [bold]engram --help[/] for more."
    )
    console.print(Panel(tips, title="try it yourself", title_align="left", border_style="dim", expand=False))
