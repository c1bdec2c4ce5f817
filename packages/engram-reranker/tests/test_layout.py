"""PEP 420 layout and entry point of engram-reranker."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def test_no_init_in_namespace_folders() -> None:
    assert not (SRC / "engram" / "__init__.py").exists()
    assert not (SRC / "engram" / "reranker" / "__init__.py").exists()


def test_the_provider_is_a_typed_package() -> None:
    pkg = SRC / "engram" / "reranker" / "llm"
    assert (pkg / "__init__.py").is_file() and (pkg / "py.typed").is_file()


def test_entry_point() -> None:
    eps = {ep.name: ep.value for ep in metadata.entry_points(group="engram.rerankers")}
    assert eps["llm"] == "engram.reranker.llm:LLMReranker"
