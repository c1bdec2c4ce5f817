"""Writing parsed import records to a memory in batches, with a progress bar."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

from engram.core import AsyncMemory
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from ._formats import ParsedRecord

__all__ = ["batches", "ingest", "prepare_model", "progress_bar"]

DEFAULT_BATCH = 64


def batches(records: Sequence[ParsedRecord], size: int = DEFAULT_BATCH) -> Iterator[list[ParsedRecord]]:
    """Consecutive records of one group (a conversation session, a file), at most ``size`` at a time."""
    chunk: list[ParsedRecord] = []
    for rec in records:
        if chunk and (len(chunk) >= size or rec.group != chunk[-1].group):
            yield chunk
            chunk = []
        chunk.append(rec)
    if chunk:
        yield chunk


def progress_bar(console: Console, *, enabled: bool = True) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not enabled or not console.is_terminal,
        transient=False,
    )


async def ingest(
    mem: AsyncMemory,
    records: Sequence[ParsedRecord],
    *,
    batch_size: int = DEFAULT_BATCH,
    on_batch: Callable[[list[ParsedRecord]], None] | None = None,
) -> dict[str, Any]:
    """Store the records with :meth:`AsyncMemory.import_items`, one call (one embedding batch, one
    transaction) per batch.

    Returns:
        ``{"imported": n, "scopes": [{"user_id", "agent_id", "run_id", "count"}]}``.
    """
    per_scope: Counter[tuple[str | None, str | None, str | None]] = Counter()
    done = 0
    for chunk in batches(records, batch_size):
        done += await mem.import_items([r.item for r in chunk])
        for r in chunk:
            per_scope[(r.item.user_id, r.item.agent_id, r.item.run_id)] += 1
        if on_batch is not None:
            on_batch(chunk)
    scopes = [{"user_id": u, "agent_id": a, "run_id": r, "count": n} for (u, a, r), n in per_scope.items()]
    return {"imported": done, "scopes": scopes}


_STAGES = {
    "download": "Downloading the embedding model (all-MiniLM-L6-v2)",
    "build": "Building the local embedding model (once per machine)",
    "write": "Saving the embedding model",
}


async def prepare_model(mem: AsyncMemory, console: Console, *, enabled: bool = True) -> None:
    """Load the embedder's model now, with a progress bar while it is downloaded or built.

    The ``local`` embedder builds its ONNX file once per machine (seconds to a minute) and reports
    ``on_progress(stage, done, total)`` from a worker thread; the bar appears only then, so a
    cached model loads silently. Embedders without ``load()`` are left alone.
    """
    embedder = mem.embedder
    load: Callable[..., Awaitable[Any]] | None = getattr(embedder, "load", None)
    if not callable(load) or getattr(embedder, "model_files", True) is not None:
        return
    lock = threading.Lock()
    state: dict[str, Any] = {"progress": None, "tasks": {}}
    show_bar = enabled and console.is_terminal

    def report(stage: str, done: int, total: int) -> None:
        with lock:
            label = _STAGES.get(stage, stage)
            if not show_bar:
                if enabled and done == 0:
                    console.print(f"{label}...", highlight=False)
                return
            progress = state["progress"]
            if progress is None:
                progress = Progress(
                    SpinnerColumn(),
                    TextColumn("{task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeElapsedColumn(),
                    console=console,
                    transient=False,
                )
                progress.start()
                state["progress"] = progress
            task = state["tasks"].get(stage)
            if task is None:
                task = state["tasks"][stage] = progress.add_task(label, total=total)
            progress.update(task, completed=done, total=total)

    try:
        await load(on_progress=report)
    finally:
        with lock:
            if state["progress"] is not None:
                state["progress"].stop()
