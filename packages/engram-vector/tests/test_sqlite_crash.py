"""A writer killed at any moment leaves the SQLite store consistent.

A subprocess adds, updates and deletes memories in a tight loop; the test SIGKILLs it at varied
moments, reopens the file and checks every row: FTS5's integrity check against the memories
table, every memory has its ADD event, every memory's text is its last history event's text, and
no memory that history says was deleted survives (nor one whose ADD was lost).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from engram.vector.sqlite import SQLiteVectorStore

WRITER = Path(__file__).with_name("_crash_writer.py")


def _consistency_problems(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        problems = []
        memories = {r[0]: r[1] for r in conn.execute("SELECT id, memory FROM memories WHERE archived_at IS NULL")}
        rows = conn.execute("SELECT count(*) FROM memories").fetchone()[0]  # active and archived versions
        last: dict[str, tuple[str, str | None]] = {}
        for mid, event, new in conn.execute("SELECT memory_id, event, new_memory FROM history ORDER BY seq"):
            last[mid] = (event, new)
        for mid, text in memories.items():
            if mid not in last:
                problems.append(f"memory {mid} has no history")
            elif last[mid][0] == "DELETE":
                problems.append(f"memory {mid} survives its DELETE event")
            elif last[mid][1] != text:
                problems.append(f"memory {mid} text differs from its last event")
        for mid, (event, _) in last.items():
            if event != "DELETE" and mid not in memories:
                problems.append(f"history says {mid} exists but it does not")
        fts_rows = conn.execute("SELECT count(*) FROM memories_fts").fetchone()[0]
        if fts_rows != rows:
            problems.append(f"{fts_rows} FTS rows for {rows} memory rows")
        return problems
    finally:
        conn.close()


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(6))
async def test_killed_writer_leaves_store_consistent(tmp_path: Path, seed: int) -> None:
    db = tmp_path / "crash.db"
    total_ops = 0
    for round_ in range(3):  # kill the same file's writer several times
        proc = subprocess.Popen(
            [sys.executable, str(WRITER), str(db), str(seed * 10 + round_)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert proc.stdout is not None
        target = 20 + (seed * 37 + round_ * 53) % 150  # operations before the kill, varied
        seen = 0
        deadline = time.monotonic() + 60
        while seen < target and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen += 1
        # kill between operations' boundaries at an arbitrary point in the next operations
        time.sleep((seed % 3) * 0.0013)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        stderr = proc.stderr.read() if proc.stderr else ""
        assert seen >= target, f"writer stopped early after {seen} operations: {stderr[-2000:]}"
        total_ops += seen

        assert _consistency_problems(db) == []
        store = SQLiteVectorStore(SQLiteVectorStore.Config(path=str(db)))
        try:
            assert await store.check() == []
        finally:
            await store.aclose()
    assert total_ops >= 60
