"""examples/agent_loop.py runs end to end offline: its --scripted mode starts the local LLM server
(real HTTP on 127.0.0.1) and drives recall-before, learn-after turns through the openai provider."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "agent_loop.py"


def _run(*args: str, tmp_path: Path) -> str:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), "--scripted", "--embedder", "hash", "--db", str(tmp_path / "a.db"), *args],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_scripted_conversation(tmp_path: Path) -> None:
    out = _run(tmp_path=tmp_path)
    assert "offline: scripted model at http://127.0.0.1:" in out
    # learned, recalled, contradicted, and the old fact kept in the archive
    assert "memory ADD    Maya lives in Paris" in out
    assert "memory DELETE Maya lives in Paris" in out
    assert "memory ADD    Maya moved to Rome last month" in out
    assert "- Maya loves black coffee" in out  # recalled into the chat's answer
    assert "Maya lives in Paris  [archived: deleted]" in out
    assert "fallback" not in out and "problem" not in out


def test_said_turns_and_a_repeat_change_nothing(tmp_path: Path) -> None:
    out = _run("--say", "I live in Oslo.", "--say", "I live in Oslo.", "--say", "Where do I live?", tmp_path=tmp_path)
    assert out.count("memory ADD    Maya lives in Oslo") == 1
    assert "- Maya lives in Oslo" in out
    # the memories persist in the --db file: a second run recalls them
    again = _run("--say", "What do you know?", tmp_path=tmp_path)
    assert "recalled: 1 memory" in again and "- Maya lives in Oslo" in again
