"""MemoryConfig: mappings, ENGRAM_* variables, engram.toml, and clear errors for bad values."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from engram.core import ENV_PREFIX, FusionConfig, MemoryConfig, SearchConfig
from engram.core.errors import ConfigurationError


def test_defaults() -> None:
    c = MemoryConfig.parse(None)
    assert (c.vector_store, c.embedder, c.llm, c.history_store, c.graph_store, c.reranker) == (
        "sqlite", "local", None, None, None, None)
    assert c.search == SearchConfig() and c.search.fusion == FusionConfig()
    assert c.search.fusion.method == "rsf" and c.search.candidates == 20
    assert ENV_PREFIX == "ENGRAM_"


def test_parse_mapping_and_passthrough() -> None:
    c = MemoryConfig.parse({"embedder": {"provider": "hash", "config": {"dims": 32}},
                            "search": {"fusion": {"method": "rrf", "rrf_k": 10}, "threshold": 0.2}})
    assert c.embedder == {"provider": "hash", "config": {"dims": 32}}
    assert c.search.fusion.method == "rrf" and c.search.fusion.rrf_k == 10 and c.search.threshold == 0.2
    assert MemoryConfig.parse(c) is c
    instance = object()
    assert MemoryConfig.parse({"vector_store": instance}).vector_store is instance


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"vector_stor": "sqlite"}, "vector_stor"),
        ({"search": {"candidates": 0}}, "candidates"),
        ({"search": {"fusion": {"method": "borda"}}}, "method"),
        ({"search": {"fusion": {"dense_weight": -1}}}, "dense_weight"),
        ({"search": {"fusion": {"extra": 1}}}, "extra"),
        ({"search": {"path_timeout": 0}}, "path_timeout"),
        ({"vector_store": "  "}, "cannot be empty"),
        ({"embedder": {"config": {"dims": 3}}}, '"provider" key'),
        ({"search": "fast"}, "search"),
    ],
)
def test_parse_errors(data: dict, words: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        MemoryConfig.parse(data)
    assert words in str(info.value)
    assert "invalid engram configuration" in str(info.value)


def test_from_env_nesting_and_json() -> None:
    env = {
        "ENGRAM_VECTOR_STORE": "sqlite:///data/engram.db",
        "ENGRAM_EMBEDDER": '{"provider": "hash", "config": {"dims": 32}}',
        "ENGRAM_SEARCH__CANDIDATES": "20",
        "ENGRAM_SEARCH__THRESHOLD": "0.25",
        "ENGRAM_SEARCH__FUSION__METHOD": "rrf",
        "ENGRAM_SEARCH__FUSION__LEXICAL_WEIGHT": "2",
        "ENGRAM_DB": "/ignored.db",  # not a config key
        "ENGRAM_TEST_SOMETHING": "1",
        "HOME": "/root",
        "OTHER_SEARCH__CANDIDATES": "999",
    }
    c = MemoryConfig.from_env(env)
    assert c.vector_store == "sqlite:///data/engram.db"
    assert c.embedder == {"provider": "hash", "config": {"dims": 32}}
    assert c.search.candidates == 20 and c.search.threshold == 0.25
    assert c.search.fusion.method == "rrf" and c.search.fusion.lexical_weight == 2.0


@pytest.mark.parametrize("order", ["shallow-first", "deep-first"])
def test_from_env_provider_name_plus_config_in_any_order(order: str) -> None:
    pairs = [("ENGRAM_LLM", "openai"), ("ENGRAM_LLM__CONFIG__MODEL", "gpt-4.1-mini"),
             ("ENGRAM_LLM__CONFIG__TEMPERATURE", "0")]
    env = dict(pairs if order == "shallow-first" else reversed(pairs))
    c = MemoryConfig.from_env(env)
    assert c.llm == {"provider": "openai", "config": {"model": "gpt-4.1-mini", "temperature": 0}}


def test_from_env_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in [k for k in os.environ if k.startswith("ENGRAM_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("ENGRAM_EMBEDDER", "hash")
    monkeypatch.setenv("ENGRAM_SEARCH__CANDIDATES", "7")
    c = MemoryConfig.from_env()
    assert c.embedder == "hash" and c.search.candidates == 7


def test_from_env_layers_over_base() -> None:
    c = MemoryConfig.from_env({"ENGRAM_SEARCH__CANDIDATES": "9"},
                              base={"embedder": "hash", "search": {"threshold": 0.1}})
    assert c.embedder == "hash" and c.search.candidates == 9 and c.search.threshold == 0.1


@pytest.mark.parametrize(
    "env",
    [{"ENGRAM_SEARCH__CANDIDATES": "lots"}, {"ENGRAM_SEARCH__FUSION__METHOD": "borda"},
     {"ENGRAM_SEARCH__NOPE": "1"}, {"ENGRAM_EMBEDDER": ""}],
)
def test_from_env_bad_values(env: dict) -> None:
    with pytest.raises(ConfigurationError):
        MemoryConfig.from_env(env)


TOML = """
vector_store = "sqlite:///data/engram.db"
llm = "scripted"

[embedder]
provider = "hash"
config = { dims = 32 }

[search]
candidates = 30

[search.fusion]
method = "dbsf"
dense_weight = 0.7
"""


def test_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "engram.toml"
    path.write_text(TOML, encoding="utf-8")
    c = MemoryConfig.from_toml(path)
    assert c.vector_store == "sqlite:///data/engram.db" and c.llm == "scripted"
    assert c.embedder == {"provider": "hash", "config": {"dims": 32}}
    assert c.search.candidates == 30 and c.search.fusion.method == "dbsf" and c.search.fusion.dense_weight == 0.7
    assert MemoryConfig.from_toml(str(path)) == c


def test_env_config_file_then_variables(tmp_path: Path) -> None:
    path = tmp_path / "engram.toml"
    path.write_text(TOML, encoding="utf-8")
    c = MemoryConfig.from_env({"ENGRAM_CONFIG": str(path), "ENGRAM_SEARCH__CANDIDATES": "40"})
    assert c.search.candidates == 40  # the variable wins over the file
    assert c.search.fusion.method == "dbsf" and c.llm == "scripted"


@pytest.mark.parametrize(
    ("text", "words"),
    [("vector_store = ", "cannot read config file"), ("[search]\ncandidates = -1", "candidates"),
     ("bogus = 1", "bogus")],
)
def test_from_toml_errors(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "engram.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigurationError, match=words):
        MemoryConfig.from_toml(path)


def test_from_toml_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read config file"):
        MemoryConfig.from_toml(tmp_path / "nope.toml")
