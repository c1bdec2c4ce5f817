"""PEP 420 layout and entry points of engram-llm."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def test_no_init_in_namespace_folders():
    assert not (SRC / "engram" / "__init__.py").exists()
    assert not (SRC / "engram" / "llm" / "__init__.py").exists()


def test_each_provider_is_a_typed_package():
    for name in ("openai", "anthropic", "scripted"):
        pkg = SRC / "engram" / "llm" / name
        assert (pkg / "__init__.py").is_file() and (pkg / "py.typed").is_file(), name
    assert (SRC / "engram" / "llm" / "_common" / "__init__.py").is_file()


def test_entry_points():
    eps = {ep.name: ep.value for ep in metadata.entry_points(group="engram.llms")}
    assert eps["openai"] == "engram.llm.openai:OpenAILLM"
    assert eps["anthropic"] == "engram.llm.anthropic:AnthropicLLM"
    assert eps["scripted"] == "engram.llm.scripted:ScriptedLLM"
