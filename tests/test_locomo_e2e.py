"""End to end on a real conversation: LoCoMo ``conv-26`` imported through the ``engram`` CLI into the
default store (SQLite) with the default embedder (local all-MiniLM-L6-v2), then its single-hop
questions (category 4) asked with a plain search.

A question counts as answered when ANY of its evidence turns (LoCoMo ``dia_id``s, normalised:
``"D8:6; D9:17"`` -> two ids, ``"D:11:26"`` -> ``"D11:26"``, ``"D30:05"`` -> ``"D30:5"``) is among
the top 10 results. The test requires that for at least half of the questions.

The data is not shipped with engram (LoCoMo is CC BY-NC 4.0); it is read from
``../shared/data/locomo/locomo_dev.json`` beside the checkout, and the test is skipped without it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from engram.cli._formats import normalize_evidence
from engram.core import AsyncMemory

LOCOMO = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "locomo" / "locomo_dev.json"
CONVERSATION = "conv-26"
SINGLE_HOP = 4
TOP_K = 10
REQUIRED = 0.5

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not LOCOMO.is_file(),
        reason=f"LoCoMo data not found at {LOCOMO} (expected ../shared/data/locomo/locomo_dev.json beside the checkout)",
    ),
]


def _conversation() -> dict:
    samples = json.loads(LOCOMO.read_text(encoding="utf-8"))
    (sample,) = [s for s in samples if s.get("sample_id") == CONVERSATION]
    return sample


def _engram(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engram.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )


def test_conv26_single_hop_evidence_in_top_10(tmp_path: Path) -> None:
    sample = _conversation()
    data = tmp_path / f"{CONVERSATION}.json"
    data.write_text(json.dumps([sample]), encoding="utf-8")
    db = tmp_path / "engram.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}

    # 1. import through the real CLI, defaults everywhere but the database file
    proc = _engram("import", str(data), "--db", str(db), "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    turns = sum(
        len(v) for k, v in sample["conversation"].items() if k.startswith("session_") and isinstance(v, list)
    )
    assert report["format"] == "locomo"
    assert report["imported"] == turns
    assert report["scopes"] == [{"user_id": CONVERSATION, "agent_id": None, "run_id": None, "count": turns}]

    # 2. one question through the CLI as well, to check the search path end to end
    questions = [q for q in sample["qa"] if q.get("category") == SINGLE_HOP]
    assert questions
    proc = _engram(
        "search",
        questions[0]["question"],
        "-u",
        CONVERSATION,
        "-k",
        str(TOP_K),
        "--db",
        str(db),
        "--json",
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    cli_ids = [r["metadata"]["dia_id"] for r in json.loads(proc.stdout)["results"]]
    assert len(cli_ids) == TOP_K

    # 3. every single-hop question, in-process on the same file (one model load instead of 70)
    async def ask_all() -> list[list[str]]:
        config = {"vector_store": {"provider": "sqlite", "config": {"path": str(db)}}}
        async with AsyncMemory(config) as mem:
            out = []
            for q in questions:
                res = await mem.search(q["question"], user_id=CONVERSATION, limit=TOP_K)
                out.append([r["metadata"].get("dia_id") for r in res["results"]])
            return out

    ranked = anyio.run(ask_all)
    assert ranked[0] == cli_ids  # the CLI and the library agree

    hits = 0
    misses = []
    for q, ids in zip(questions, ranked, strict=True):
        evidence = normalize_evidence(q.get("evidence"))
        if set(evidence) & set(ids):
            hits += 1
        else:
            misses.append((q["question"], evidence))
    rate = hits / len(questions)
    print(
        f"\n{CONVERSATION}: evidence in the top {TOP_K} for {hits}/{len(questions)} single-hop questions ({rate:.0%})"
    )
    assert rate >= REQUIRED, f"only {hits}/{len(questions)} ({rate:.0%}); first misses: {misses[:5]}"
