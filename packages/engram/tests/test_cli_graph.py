"""``engram graph``, and the graph in ``engram add`` / ``engram search``: a scripted LLM through
``ENGRAM_LLM`` and the SQLite graph store in the memories' own database file
(``ENGRAM_GRAPH_STORE=sqlite``).

The fact and graph calls of one add run concurrently, so their order is not fixed: each scripted
reply answers every prompt at once (``facts``, ``actions``, ``entities``/``relations`` and
``contradicted`` side by side; each parser reads its own key)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest


def universal(
    fact: str,
    *relations: tuple[str, str, str],
    contradicted: list[dict[str, int]] | None = None,
    valid_at: str | None = None,
) -> dict[str, Any]:
    return {
        "facts": [{"text": fact, "type": "factual", "category": "personal"}],
        "actions": [{"fact": 0, "event": "ADD", "text": fact}],
        "entities": [],
        "relations": [
            {"source": s, "relation": r, "destination": d, **({"valid_at": valid_at} if valid_at else {})}
            for s, r, d in relations
        ],
        "contradicted": contradicted or [],
    }


def llm(monkeypatch: pytest.MonkeyPatch, reply: dict[str, Any]) -> None:
    monkeypatch.setenv(
        "ENGRAM_LLM",
        json.dumps({"provider": "scripted", "config": {"replies": [json.dumps(reply)], "cycle": True}}),
    )
    monkeypatch.setenv("ENGRAM_GRAPH_STORE", "sqlite")


def test_graph_command_shows_current_all_and_past(cli, ok_json, monkeypatch, db: Path) -> None:
    llm(monkeypatch, universal("Maya lives in Paris", ("Maya", "lives_in", "Paris"), valid_at="2021-04-01"))
    added = ok_json(cli("add", "I live in Paris", "-u", "maya", "--json"))
    assert [r["destination"] for r in added["relations"]["added"]] == ["Paris"]

    llm(
        monkeypatch,
        universal(
            "Maya lives in Rome",
            ("Maya", "lives_in", "Rome"),
            valid_at="2024-02-01",
            contradicted=[{"id": 0, "new": 0}],
        ),
    )
    moved = cli("add", "I moved to Rome", "-u", "maya")
    assert moved.exit_code == 0, moved.output
    assert "Relations added" in moved.stdout and "Relations closed" in moved.stdout

    monkeypatch.delenv("ENGRAM_LLM")
    now = ok_json(cli("graph", "-u", "maya", "--json"))
    assert {e["name"] for e in now["entities"]} == {"Maya", "Paris", "Rome"}
    assert [(r["source"], r["relationship"], r["destination"]) for r in now["relations"]] == [
        ("Maya", "lives_in", "Rome")
    ]
    every = ok_json(cli("graph", "-u", "maya", "--all", "--json"))["relations"]
    assert sorted((r["destination"], r["expired_at"] is None) for r in every) == [
        ("Paris", False),
        ("Rome", True),
    ]
    past = ok_json(cli("graph", "-u", "maya", "--at", "2022-01-01", "--json"))["relations"]
    assert [r["destination"] for r in past] == ["Paris"]

    table = cli("graph", "-u", "maya", "--all")
    assert table.exit_code == 0, table.output
    assert (
        "current" in table.stdout and "closed" in table.stdout and "2021-04-01 - 2024-02-01" in table.stdout
    )

    # search shows the relations beside the memories
    found = ok_json(cli("search", "Where does Maya live?", "-u", "maya", "--json"))
    assert [r["destination"] for r in found["relations"]] == ["Rome"] and found["relations"][0]["hops"] == 1
    shown = cli("search", "Where does Maya live?", "-u", "maya")
    assert "Related in the graph" in shown.stdout

    # one database file holds memories and graph
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("select name from sqlite_master where type = 'table'")}
    assert "memories" in tables and any(t.startswith("graph_") for t in tables)

    # delete_all reaches the graph
    cli("delete", "--all", "-u", "maya", "--yes")
    assert ok_json(cli("graph", "-u", "maya", "--all", "--json")) == {"entities": [], "relations": []}


def test_graph_command_without_a_graph_and_bad_input(cli, ok_json) -> None:
    empty = cli("graph", "-u", "nobody")
    assert empty.exit_code == 0 and "No graph for user=nobody" in empty.stdout
    assert cli("graph").exit_code != 0  # a scope is required
    bad = cli("graph", "-u", "x", "--at", "next week")
    assert bad.exit_code != 0 and "at:" in (bad.stderr or bad.output)
