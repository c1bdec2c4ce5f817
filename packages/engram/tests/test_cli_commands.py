"""The ``engram`` commands, in-process through typer's CliRunner and once through a real subprocess.

Every test runs on a fresh SQLite file with the ``hash`` embedder, so no model is involved.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from engram.cli._demo import load_demo


def test_help_lists_every_command(cli) -> None:
    result = cli("--help", default_store=False)
    assert result.exit_code == 0
    for name in (
        "add",
        "search",
        "list",
        "get",
        "update",
        "delete",
        "history",
        "reset",
        "import",
        "export",
        "stats",
        "demo",
    ):
        assert name in result.stdout


def test_crud_with_json(cli, ok_json, db: Path) -> None:
    added = ok_json(
        cli(
            "add",
            "Maya moved to Portland in April",
            "Maya adopted a beagle named Biscuit",
            "-u",
            "maya",
            "--name",
            "Maya",
            "--time",
            "2025-04-20T20:05:00Z",
            "-m",
            "source=chat",
            "-m",
            '{"n": 2}',
            "--json",
        )
    )
    assert [r["event"] for r in added["results"]] == ["ADD", "ADD"]
    dog_id = added["results"][1]["id"]
    ok_json(cli("add", "Daniel teaches chemistry", "-u", "daniel", "--agent-id", "bot", "--json"))

    found = ok_json(cli("search", "the beagle named Biscuit", "-u", "maya", "-k", "1", "--json"))
    assert [r["id"] for r in found["results"]] == [dog_id]
    assert found["results"][0]["score"] > 0

    listed = ok_json(cli("list", "-u", "maya", "--json"))["results"]
    assert {r["memory"] for r in listed} == {
        "Maya moved to Portland in April",
        "Maya adopted a beagle named Biscuit",
    }
    assert all(r["user_id"] == "maya" for r in listed)
    everyone = ok_json(cli("list", "--json"))["results"]
    assert len(everyone) == 3
    filtered = ok_json(cli("list", "-u", "maya", "--filter", '{"source": "chat"}', "--json"))["results"]
    assert len(filtered) == 2

    got = ok_json(cli("get", dog_id, "--json"))
    assert got["memory"] == "Maya adopted a beagle named Biscuit"
    assert got["metadata"]["speaker"] == "Maya"
    assert got["metadata"]["source"] == "chat" and got["metadata"]["n"] == 2
    assert got["metadata"]["message_time"].startswith("2025-04-20T20:05:00")

    upd = ok_json(cli("update", dog_id, "Maya's beagle is called Biscuit", "-m", "checked=true", "--json"))
    assert upd["event"] == "UPDATE" and upd["previous_memory"] == "Maya adopted a beagle named Biscuit"
    got = ok_json(cli("get", dog_id, "-u", "maya", "--json"))
    assert got["memory"] == "Maya's beagle is called Biscuit"
    assert got["metadata"]["checked"] is True and got["updated_at"]

    hist = ok_json(cli("history", dog_id, "--json"))
    assert [e["event"] for e in hist] == ["ADD", "UPDATE"]
    assert hist[1]["old_memory"] == "Maya adopted a beagle named Biscuit"

    stats = ok_json(cli("stats", "--json"))
    assert stats["total"] == 3
    assert stats["db"] == str(db.resolve())
    assert stats["size_bytes"] > 0
    assert stats["embedder"] == "hash" and stats["dims"] > 0
    assert {(s["user_id"], s["agent_id"], s["count"]) for s in stats["scopes"]} == {
        ("maya", None, 2),
        ("daniel", "bot", 1),
    }

    deleted = ok_json(cli("delete", dog_id, "--json"))
    assert deleted["event"] == "DELETE"
    assert [e["event"] for e in ok_json(cli("history", dog_id, "--json"))] == ["ADD", "UPDATE", "DELETE"]
    assert cli("get", dog_id, "--json").exit_code == 2

    gone = ok_json(cli("delete", "--all", "-u", "daniel", "--yes", "--json"))
    assert gone["deleted"] == 1
    assert ok_json(cli("stats", "--json"))["total"] == 1

    reset = ok_json(cli("reset", "--yes", "--json"))
    assert reset["deleted"] == 1
    assert ok_json(cli("stats", "--json"))["total"] == 0


def test_human_output(cli) -> None:
    assert cli("add", "Daniel runs marathons", "-u", "daniel").exit_code == 0
    result = cli("search", "marathons", "-u", "daniel")
    assert result.exit_code == 0
    assert "Daniel runs marathons" in result.stdout and "score" in result.stdout
    result = cli("list", "-u", "daniel")
    assert "Daniel runs marathons" in result.stdout
    result = cli("stats")
    assert "memories" in result.stdout and "daniel" in result.stdout
    assert "No memories found" in cli("search", "anything", "-u", "nobody").stdout


def test_scope_guards_id_commands(cli, ok_json) -> None:
    mid = ok_json(cli("add", "secret of alice", "-u", "alice", "--json"))["results"][0]["id"]
    for args in (("get", mid), ("update", mid, "changed"), ("delete", mid)):
        result = cli(*args, "-u", "bob")
        assert result.exit_code == 2, args
        assert "no memory" in result.stderr
    assert ok_json(cli("get", mid, "-u", "alice", "--json"))["memory"] == "secret of alice"


def test_reset_asks_first(cli, ok_json) -> None:
    ok_json(cli("add", "keep me", "-u", "a", "--json"))
    refused = cli("reset", input="n\n")
    assert refused.exit_code == 1
    assert ok_json(cli("stats", "--json"))["total"] == 1
    accepted = cli("reset", input="y\n")
    assert accepted.exit_code == 0
    assert ok_json(cli("stats", "--json"))["total"] == 0


def test_reset_with_scope_only_clears_that_scope(cli, ok_json) -> None:
    ok_json(cli("add", "one", "-u", "a", "--json"))
    ok_json(cli("add", "two", "-u", "b", "--json"))
    assert ok_json(cli("reset", "-u", "a", "--yes", "--json"))["deleted"] == 1
    assert [s["user_id"] for s in ok_json(cli("stats", "--json"))["scopes"]] == ["b"]


def test_add_reads_stdin(cli, ok_json) -> None:
    res = ok_json(cli("add", "-", "-u", "s", "--json", input="plain text from a pipe\n"))
    assert res["results"][0]["memory"] == "plain text from a pipe"
    msgs = [
        {"role": "user", "content": "I live in Lyon", "name": "Ana"},
        {"role": "assistant", "content": "Noted!"},
    ]
    res = ok_json(cli("add", "-", "-u", "s", "--json", input=json.dumps(msgs)))
    assert [r["memory"] for r in res["results"]] == ["I live in Lyon", "Noted!"]


# -- export / import ------------------------------------------------------------------------------


def test_export_import_round_trip_is_lossless(cli, ok_json, tmp_path: Path) -> None:
    ok_json(
        cli("add", "Maya works at Brightline", "-u", "maya", "--name", "Maya", "-m", "tags=[1, 2]", "--json")
    )
    ok_json(
        cli(
            "add",
            "Caf\u00e9 \u2615 at 8",
            "\u65e5\u672c\u8a9e\u3082",
            "--agent-id",
            "bot",
            "--run-id",
            "r1",
            "--json",
        )
    )
    mid = ok_json(cli("add", "Daniel is 33", "-u", "daniel", "--json"))["results"][0]["id"]
    ok_json(cli("update", mid, "Daniel is 34", "--json"))

    dump = tmp_path / "dump.jsonl"
    result = cli("export", "-o", str(dump))
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in dump.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 4
    assert set(lines[0]) == {
        "id",
        "memory",
        "hash",
        "user_id",
        "agent_id",
        "run_id",
        "metadata",
        "created_at",
        "updated_at",
    }
    stdout_dump = cli("export")
    assert stdout_dump.stdout == dump.read_text(encoding="utf-8")

    other = tmp_path / "other.db"
    imported = ok_json(cli("import", str(dump), "--db", str(other), "--json"))
    assert imported["format"] == "jsonl" and imported["imported"] == 4 and imported["skipped"] == 0

    again = tmp_path / "again.jsonl"
    assert cli("export", "-o", str(again), "--db", str(other)).exit_code == 0
    before = {d["id"]: d for d in lines}
    after = {d["id"]: d for d in map(json.loads, again.read_text(encoding="utf-8").splitlines())}
    assert after == before  # ids, text, hash, scope, metadata, created_at and updated_at all kept

    # and the imported memories are searchable (their embeddings were computed on import)
    found = ok_json(cli("search", "Brightline", "-u", "maya", "--db", str(other), "--json"))["results"]
    assert found and found[0]["memory"] == "Maya works at Brightline"

    # importing the same file again replaces by id instead of duplicating
    ok_json(cli("import", str(dump), "--db", str(other), "--json"))
    assert ok_json(cli("stats", "--db", str(other), "--json"))["total"] == 4


def test_export_of_one_scope(cli, ok_json) -> None:
    ok_json(cli("add", "a1", "a2", "-u", "a", "--json"))
    ok_json(cli("add", "b1", "-u", "b", "--json"))
    out = cli("export", "-u", "a")
    assert out.exit_code == 0
    assert sorted(json.loads(line)["memory"] for line in out.stdout.splitlines()) == ["a1", "a2"]


def test_jsonl_import_takes_the_command_line_scope(cli, ok_json, tmp_path: Path) -> None:
    f = tmp_path / "notes.jsonl"
    f.write_text(
        '{"memory": "no scope here"}\n{"memory": "mine", "user_id": "own"}\nnot json\n', encoding="utf-8"
    )
    res = ok_json(cli("import", str(f), "-u", "cli-user", "--json"))
    assert res["imported"] == 2 and res["skipped"] == 1
    assert any("not json" in w or ":3:" in w for w in res["warnings"])
    assert {(s["user_id"], s["count"]) for s in res["scopes"]} == {("cli-user", 1), ("own", 1)}


def locomo_file(tmp_path: Path) -> Path:
    doc = [
        {
            "sample_id": "conv-t",
            "conversation": {
                "speaker_a": "Caroline",
                "speaker_b": "Melanie",
                "session_1_date_time": "1:56 pm on 8 May, 2023",
                "session_1": [
                    {
                        "speaker": "Caroline",
                        "dia_id": "D1:1",
                        "text": "I went to a LGBTQ support group yesterday.",
                    },
                    {
                        "speaker": "Melanie",
                        "dia_id": "D1:2",
                        "text": "Look at my pottery!",
                        "img_url": ["https://example.org/p.jpg"],
                        "blip_caption": "a photo of a clay bowl",
                    },
                    {"speaker": "Melanie", "dia_id": "D1:3"},
                ],
                "session_2_date_time": "7:55 pm on 9 June, 2023",
                "session_2": [
                    {"speaker": "Melanie", "dia_id": "D2:1", "text": "We went camping with the kids."}
                ],
            },
            "qa": [
                {
                    "question": "Where did Melanie go?",
                    "answer": "camping",
                    "evidence": ["D2:1"],
                    "category": 4,
                }
            ],
        }
    ]
    path = tmp_path / "locomo.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def test_locomo_import_through_the_cli(cli, ok_json, tmp_path: Path) -> None:
    path = locomo_file(tmp_path)
    res = ok_json(cli("import", str(path), "--json"))
    assert res["format"] == "locomo"
    assert res["imported"] == 3 and res["skipped"] == 1
    assert res["scopes"] == [{"user_id": "conv-t", "agent_id": None, "run_id": None, "count": 3}]
    assert any("no 'text'" in w for w in res["warnings"])

    hits = ok_json(cli("search", "camping with the kids", "-u", "conv-t", "-k", "1", "--json"))["results"]
    meta = hits[0]["metadata"]
    assert meta["dia_id"] == "D2:1" and meta["session"] == 2 and meta["speaker"] == "Melanie"
    assert meta["message_time"].startswith("2023-06-09T19:55:00")
    pottery = ok_json(cli("search", "pottery", "-u", "conv-t", "-k", "1", "--json"))["results"][0]
    assert pottery["metadata"]["blip_caption"] == "a photo of a clay bowl"

    # a scope on the command line wins over the sample id; the warning reaches stderr in human mode
    human = cli("import", str(path), "-u", "mine", "--format", "locomo")
    assert human.exit_code == 0
    assert "Imported 3 memories" in human.stdout
    assert "warning" in human.stderr and "skipped" in human.stderr
    assert ok_json(cli("stats", "-u", "mine", "--json"))["total"] == 3


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("search", "q"), "needs a scope"),
        (("add", "x"), "needs a scope"),
        (("get", "no-such-id"), "no memory with id"),
        (("update", "no-such-id", "text"), "no memory with id"),
        (("delete", "no-such-id"), "no memory with id"),
        (("search", "q", "-u", "a", "--filter", "{bad json"), "not valid JSON"),
        (("search", "q", "-u", "a", "--filter", '{"x": {"regex": "a"}}'), ""),
        (("list", "-u", "a", "--filter", '{"x": {"gt": [1]}}'), ""),
        (("add", "x", "-u", "a\x01b"), "user_id"),
        (("import", "/no/such/file.jsonl"), "No such file"),
        (("import", "-", "--format", "locomo"), "not a LoCoMo JSON file"),
        (("search", "q", "-u", "a", "--embedder", "nope"), "unknown embedder 'nope'"),
        (("delete",), "give the id"),
    ],
)
def test_errors_exit_2_with_one_red_line(cli, args: tuple[str, ...], message: str) -> None:
    result = cli(*args, input="not json")
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert result.stdout == ""
    assert result.stderr.startswith("error:")
    assert len(result.stderr.strip().splitlines()) == 1 or "\n" not in result.stderr.strip()[:200]
    assert message in result.stderr


def test_bad_config_file_exits_2(cli, tmp_path: Path) -> None:
    bad = tmp_path / "engram.toml"
    bad.write_text("embedder = [1, 2\n", encoding="utf-8")
    result = cli("stats", "--config", str(bad), default_store=False)
    assert result.exit_code == 2
    assert "cannot read config file" in result.stderr


def test_config_file_and_env(cli, ok_json, tmp_path: Path, db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "engram.toml"
    conf.write_text('embedder = "hash"\n[search]\ncandidates = 20\n', encoding="utf-8")
    monkeypatch.setenv("ENGRAM_DB", str(db))
    res = ok_json(cli("add", "via config", "-u", "c", "--config", str(conf), "--json", default_store=False))
    assert res["results"][0]["memory"] == "via config"
    stats = ok_json(cli("stats", "--config", str(conf), "--json", default_store=False))
    assert stats["db"] == str(db.resolve()) and stats["embedder"] == "hash" and stats["total"] == 1
    monkeypatch.setenv("ENGRAM_EMBEDDER", "hash")
    assert ok_json(cli("stats", "--json", default_store=False))["total"] == 1


def test_default_db_is_in_the_user_data_dir(cli, ok_json, tmp_path: Path) -> None:
    stats = ok_json(cli("stats", "--embedder", "hash", "--json", default_store=False))
    assert stats["db"].startswith(str(tmp_path / "xdg-data"))  # XDG_DATA_HOME, set by conftest
    assert stats["db"].endswith("engram.db")


# -- a real process --------------------------------------------------------------------------------


def _engram(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engram.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_subprocess_add_search_and_errors(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    env |= {"ENGRAM_DB": str(tmp_path / "p.db"), "ENGRAM_EMBEDDER": "hash", "NO_COLOR": "1"}
    added = _engram("add", "Lily's wedding is on June 14th in Seattle", "-u", "maya", "--json", env=env)
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["results"][0]["event"] == "ADD"
    found = _engram("search", "When is the wedding?", "-u", "maya", "--json", env=env)
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["results"][0]["memory"].startswith("Lily's wedding")
    assert found.stderr == ""
    bad = _engram("search", "x", env=env)
    assert bad.returncode == 2
    assert bad.stdout == "" and "Traceback" not in bad.stderr and "error:" in bad.stderr


# -- demo ------------------------------------------------------------------------------------------


def test_demo_data_is_found() -> None:
    doc = load_demo()
    turns = [
        t
        for k, v in doc["conversation"].items()
        if k.startswith("session_") and isinstance(v, list)
        for t in v
    ]
    assert 60 <= len(turns) <= 120
    assert len(doc["qa"]) >= 5


def test_demo_with_hash_embedder(cli, ok_json, tmp_path: Path) -> None:
    res = ok_json(cli("demo", "--embedder", "hash", "--json", default_store=False))
    assert res["imported"] == 97
    assert len(res["questions"]) >= 5
    assert all(q["results"] for q in res["questions"])
    kept = tmp_path / "demo.db"
    human = cli("demo", "--embedder", "hash", "--db", str(kept), default_store=False)
    assert human.exit_code == 0, human.stderr
    assert "Where does Maya work now?" in human.stdout
    assert ok_json(cli("stats", "--db", str(kept), "--json"))["total"] == 97


def test_wheel_hook_finds_the_demo_file() -> None:
    """hatch_build.py ships ../../examples/demo_conversation.json; the file must be where it looks."""
    package_root = Path(__file__).resolve().parents[1]
    assert (package_root / "hatch_build.py").is_file()
    assert (package_root / ".." / ".." / "examples" / "demo_conversation.json").resolve().is_file()


@pytest.mark.slow
def test_demo_on_the_defaults(tmp_path: Path) -> None:
    """README command one's engine: `engram demo` with the SQLite store and the local embedder, in a
    real process; most questions find the message their answer came from among the top 3."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    proc = _engram("demo", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert res["imported"] == 97
    evidence = {q["question"]: set(q["evidence"]) for q in load_demo()["qa"]}
    found = [
        bool(evidence[q["question"]] & {r["metadata"]["dia_id"] for r in q["results"]})
        for q in res["questions"]
    ]
    assert sum(found) >= len(found) - 1, found
    human = _engram("demo", "--db", str(tmp_path / "d.db"), env=env | {"COLUMNS": "100"})
    assert human.returncode == 0, human.stderr
    assert "Where does Maya work now?" in human.stdout and "Biscuit" in human.stdout
    assert "Traceback" not in human.stderr
