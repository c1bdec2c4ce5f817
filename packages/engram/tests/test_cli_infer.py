"""``engram add`` with an LLM (the scripted one, through ``ENGRAM_LLM`` or an ``engram.toml``, and a
real OpenAI-compatible server on 127.0.0.1 through ``--llm URL``), ``--no-infer``, and
``--include-archived`` on ``search`` and ``list``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from engram.cli._runtime import llm_spec
from engram.core.errors import ConfigurationError
from engram.testing.llm_server import LLMServer, Reply


def scripted(monkeypatch: pytest.MonkeyPatch, *replies: Any) -> None:
    """The next commands use a scripted LLM answering these replies (dicts become JSON)."""
    texts = [r if isinstance(r, str) else json.dumps(r) for r in replies]
    monkeypatch.setenv("ENGRAM_LLM", json.dumps({"provider": "scripted", "config": {"replies": texts}}))


def facts(*texts: str) -> dict[str, Any]:
    return {"facts": [{"text": t, "type": "factual", "category": "personal"} for t in texts]}


def test_add_with_llm_from_env_json(cli, ok_json, monkeypatch) -> None:
    scripted(monkeypatch, facts("Maya lives in Paris"))
    out = ok_json(cli("add", "I live in Paris", "-u", "maya", "--json"))
    assert [(r["event"], r["memory"]) for r in out["results"]] == [("ADD", "Maya lives in Paris")]
    assert out["infer"] == {"facts": 1}
    paris = out["results"][0]["id"]

    scripted(monkeypatch, facts("Maya lives in Rome"), {"actions": [{"fact": 0, "event": "UPDATE", "id": 0}]})
    out = ok_json(cli("add", "I moved to Rome", "-u", "maya", "--json"))
    assert out["results"] == [
        {"id": paris, "memory": "Maya lives in Rome", "event": "UPDATE", "previous_memory": "Maya lives in Paris"}
    ]

    scripted(monkeypatch, facts("Maya lives in Rome"), {"actions": [{"fact": 0, "event": "NONE", "id": 0}]})
    out = ok_json(cli("add", "Rome, yes", "-u", "maya", "--json"))
    assert out == {"results": [], "infer": {"facts": 1}}

    listed = ok_json(cli("list", "-u", "maya", "--json"))["results"]
    assert [m["memory"] for m in listed] == ["Maya lives in Rome"]
    both = ok_json(cli("list", "-u", "maya", "--include-archived", "--json"))["results"]
    assert [(m["memory"], m.get("archive_reason")) for m in both] == [
        ("Maya lives in Rome", None),
        ("Maya lives in Paris", "superseded"),
    ]
    everyone = ok_json(cli("list", "--include-archived", "--json"))["results"]
    assert len(everyone) == 2 and everyone[1]["archived"] is True

    hits = ok_json(cli("search", "Maya lives in Paris", "-u", "maya", "--include-archived", "--json"))["results"]
    assert {h["memory"]: h.get("archived", False) for h in hits} == {
        "Maya lives in Rome": False,
        "Maya lives in Paris": True,
    }
    history = ok_json(cli("history", paris, "--json"))
    assert [(e["event"], e["old_memory"], e["new_memory"]) for e in history] == [
        ("ADD", None, "Maya lives in Paris"),
        ("UPDATE", "Maya lives in Paris", "Maya lives in Rome"),
    ]


def test_add_table_shows_events_previous_text_and_report(cli, monkeypatch) -> None:
    scripted(monkeypatch, facts("Maya lives in Paris", "Maya likes tea"))
    first = cli("add", "Paris and tea", "-u", "maya")
    assert first.exit_code == 0, first.output
    assert "2 added" in first.stdout and "ADD" in first.stdout and "Maya likes tea" in first.stdout
    assert "LLM: 2 facts extracted" in first.stdout

    def decide(payload_word: str) -> dict[str, Any]:
        return {"actions": [{"fact": 0, "event": "UPDATE", "id": 0, "text": "Maya lives in Rome"},
                            {"fact": 1, "event": "DELETE", "id": 1}, {"fact": 1, "event": "ADD", "id": 99}]}

    scripted(monkeypatch, facts("Maya lives in Rome", "Maya prefers coffee"), decide("x"))
    out = cli("add", "Rome, and coffee now", "-u", "maya")
    assert out.exit_code == 0, out.output
    text = out.stdout
    assert "UPDATE" in text and "DELETE" in text and "ADD" in text
    assert "1 added, 1 updated, 1 deleted" in text
    # the text an UPDATE replaced is shown, and the hallucinated id is reported
    assert "Maya lives in" in text and "problem:" in text and "unknown memory id 99" in text


def test_add_fallback_is_reported(cli, ok_json, monkeypatch) -> None:
    scripted(monkeypatch, "Sorry, I cannot help with that.")
    out = cli("add", "I like tea", "-u", "maya")
    assert out.exit_code == 0, out.output
    assert "fallback:" in out.stdout and "verbatim" in out.stdout
    assert "I like tea" in out.stdout

    scripted(monkeypatch)  # no replies left: the LLM raises
    data = ok_json(cli("add", "I like coffee", "-u", "maya", "--json"))
    assert [r["memory"] for r in data["results"]] == ["I like coffee"]
    assert "ProviderError" in data["infer"]["fallback"]


def test_nothing_new(cli, monkeypatch) -> None:
    scripted(monkeypatch, {"facts": []})
    out = cli("add", "hello!", "-u", "maya")
    assert out.exit_code == 0, out.output
    assert "Nothing new" in out.stdout and "0 facts extracted" in out.stdout


def test_no_infer_stores_verbatim_even_with_an_llm(cli, ok_json, monkeypatch) -> None:
    scripted(monkeypatch)  # would raise if it were asked
    out = ok_json(cli("add", "I like tea", "-u", "maya", "--no-infer", "--json"))
    assert [r["memory"] for r in out["results"]] == ["I like tea"] and "infer" not in out
    table = cli("add", "I like coffee", "-u", "maya", "--no-infer")
    assert "Remembered 1 memory" in table.stdout


def test_without_an_llm_add_is_verbatim(cli, ok_json) -> None:
    out = ok_json(cli("add", "I like tea", "-u", "maya", "--json"))
    assert "infer" not in out and out["results"][0]["memory"] == "I like tea"


def test_llm_from_an_engram_toml(cli, ok_json, tmp_path: Path) -> None:
    reply = json.dumps(facts("Maya has a beagle named Biscuit"))
    toml = tmp_path / "engram.toml"
    toml.write_text(
        f'[llm]\nprovider = "scripted"\n[llm.config]\nreplies = [{json.dumps(reply)}]\n', encoding="utf-8"
    )
    out = ok_json(cli("add", "My beagle is called Biscuit", "-u", "maya", "-c", str(toml), "--json"))
    assert [r["memory"] for r in out["results"]] == ["Maya has a beagle named Biscuit"]


def test_llm_flag_with_a_real_openai_compatible_server(cli, ok_json) -> None:
    with LLMServer() as server:
        server.reply(Reply.json(facts("Maya lives in Oslo")))
        out = ok_json(
            cli("add", "I live in Oslo", "-u", "maya", "--llm", server.openai_url, "--llm-model", "m1", "--json")
        )
        assert [r["memory"] for r in out["results"]] == ["Maya lives in Oslo"]
        (req,) = server.requests
        assert req.path == "/v1/chat/completions" and req.body["model"] == "m1"


def test_llm_flag_overrides_the_environment(cli, ok_json, monkeypatch) -> None:
    scripted(monkeypatch, facts("from the environment"))
    out = ok_json(cli("add", "x", "-u", "maya", "--llm", "scripted", "--json"))  # no replies: fallback
    assert "fallback" in out["infer"]


def test_bad_llm_flags(cli) -> None:
    out = cli("add", "x", "-u", "maya", "--llm", "nosuchllm")
    assert out.exit_code == 2 and "nosuchllm" in out.stderr
    out = cli("add", "x", "-u", "maya", "--llm-model", "m")
    assert out.exit_code == 2 and "--llm-model needs an LLM" in out.stderr


def test_llm_spec() -> None:
    assert llm_spec(None, None, None) is None
    assert llm_spec("openai", None, None) == "openai"
    assert llm_spec("http://h:1/v1", "m", None) == {"provider": "openai", "config": {"base_url": "http://h:1/v1", "model": "m"}}
    assert llm_spec(None, "m", {"provider": "openai", "config": {"api_key": "k"}}) == {
        "provider": "openai", "config": {"api_key": "k", "model": "m"},
    }
    assert llm_spec(None, "m", "anthropic") == {"provider": "anthropic", "config": {"model": "m"}}
    assert llm_spec("openai://h/v1?tls=false", "m", None) == "openai://h/v1?tls=false&model=m"
    with pytest.raises(ConfigurationError):
        llm_spec(" ", None, None)
    with pytest.raises(ConfigurationError):
        llm_spec(None, "m", None)


def test_list_table_marks_archived_rows(cli, monkeypatch) -> None:
    scripted(monkeypatch, facts("Maya lives in Paris"))
    cli("add", "Paris", "-u", "maya")
    scripted(monkeypatch, facts("Maya lives in Rome"), {"actions": [{"fact": 0, "event": "DELETE", "id": 0},
                                                                    {"fact": 0, "event": "ADD"}]})
    cli("add", "Rome", "-u", "maya")
    plain = cli("list", "-u", "maya")
    assert "Maya lives in Rome" in plain.stdout and "Maya lives in Paris" not in plain.stdout
    assert "archived" not in plain.stdout
    marked = cli("list", "-u", "maya", "--include-archived")
    assert "Maya lives in Paris" in marked.stdout and "archived (deleted)" in marked.stdout
    assert "1 archived" in marked.stdout
    found = cli("search", "Paris", "-u", "maya", "--include-archived")
    assert "archived (deleted)" in found.stdout
