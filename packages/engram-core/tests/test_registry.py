"""The Registry: entry points scanned once, only the asked one loaded, errors that say the fix."""

from __future__ import annotations

import importlib.metadata as md
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from engram.core import KINDS, Registry, VectorStore
from engram.core.errors import (
    ConfigurationError,
    ProviderLoadError,
    ProviderNotFoundError,
    ProviderNotInstalledError,
)
from engram.embedding.hash import HashEmbedder
from engram.vector.memory import MemoryVectorStore


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Three throwaway plugin modules on sys.path: a good provider, one that fails to import, a non-provider."""
    (tmp_path / "engram_fake_good.py").write_text(
        textwrap.dedent("""
        from engram.vector.memory import MemoryVectorStore

        class GoodStore(MemoryVectorStore):
            pass

        def not_a_class():
            pass

        class HalfStore:
            async def write(self, batch): ...
    """)
    )
    (tmp_path / "engram_fake_broken.py").write_text("import engram_dependency_that_is_not_installed\n")
    (tmp_path / "engram_fake_raises.py").write_text(
        "raise RuntimeError('this module must never be imported')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("engram_fake_good", "engram_fake_broken", "engram_fake_raises"):
        sys.modules.pop(name, None)
    return {
        "good": "engram_fake_good:GoodStore",
        "broken": "engram_fake_broken:Store",
        "never": "engram_fake_raises:Store",
        "function": "engram_fake_good:not_a_class",
        "half": "engram_fake_good:HalfStore",
    }


def test_entry_points_scanned_once_per_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str | None] = []
    real = md.entry_points

    def counting(**kw):  # type: ignore[no-untyped-def]
        calls.append(kw.get("group"))
        return real(**kw)

    monkeypatch.setattr(md, "entry_points", counting)
    r = Registry()
    assert calls == []  # nothing scanned at construction
    r.load("vector_store", "memory")
    r.load("vector_store", "memory")
    r.load("vector_store", "sqlite")
    assert "memory" in r.names("vector_store")
    r.create("vector_store", "memory")
    with pytest.raises(ProviderNotFoundError):
        r.load("vector_store", "nope")
    assert calls == ["engram.vector_stores"]
    r.load("embedder", "hash")
    assert calls == ["engram.vector_stores", "engram.embedders"]
    Registry().names("vector_store")
    assert calls.count("engram.vector_stores") == 2  # a new registry scans afresh


def test_builtins_found_through_entry_points() -> None:
    r = Registry()
    assert {"memory", "sqlite"} <= set(r.names("vector_store"))
    assert "hash" in r.names("embedder") and "sqlite" in r.names("history_store")
    assert r.load("vector_store", "memory") is MemoryVectorStore
    assert r.load("embedder", "hash") is HashEmbedder


def test_loads_only_the_asked_one(plugins: dict[str, str]) -> None:
    r = Registry({"engram.vector_stores": plugins})
    assert r.load("vector_store", "good").__name__ == "GoodStore"
    assert "engram_fake_raises" not in sys.modules
    assert "engram_fake_broken" not in sys.modules


def test_no_plugin_imported_until_asked() -> None:
    code = textwrap.dedent("""
        import sys
        from engram.core import Registry
        r = Registry()
        r.names("vector_store"); r.names("embedder")
        r.load("vector_store", "memory")
        heavy = [m for m in ("engram.vector.sqlite", "engram.embedding.local", "engram.embedding.openai",
                             "onnxruntime", "httpx", "engram.history.sqlite") if m in sys.modules]
        print(",".join(heavy))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == ""


def test_unknown_name_lists_installed_and_suggests() -> None:
    with pytest.raises(ProviderNotFoundError) as info:
        Registry().load("vector_store", "memroy")
    msg = str(info.value)
    assert "unknown vector store 'memroy'" in msg and "did you mean 'memory'?" in msg
    assert "memory" in msg and "sqlite" in msg and "installed:" in msg
    assert {"memory", "sqlite"} <= set(info.value.available)
    assert info.value.kind == "vector store" and info.value.name == "memroy"
    assert not isinstance(info.value, ProviderNotInstalledError)
    with pytest.raises(ProviderNotFoundError) as info:
        Registry({"engram.embedders": {}}).load("embedder", "zzzzzz")
    assert "did you mean" not in str(info.value)


@pytest.mark.parametrize(
    ("kind", "name", "extra"),
    [
        ("vector_store", "qdrant", "qdrant"),
        ("vector_store", "chroma", "chroma"),
        ("graph_store", "kuzu", "kuzu"),
        ("graph_store", "neo4j", "neo4j"),
        ("reranker", "cohere", "cohere"),
        ("embedder", "fastembed", "fastembed"),
    ],
)
def test_first_party_plugin_names_its_extra(kind: str, name: str, extra: str) -> None:
    def without_plugin() -> Registry:
        """A registry that sees every installed entry point except this plugin's (the dev
        environment installs some plugins; a user's may not)."""
        reg = Registry()
        group = KINDS[kind].group
        reg._scanned[group] = {n: ep for n, ep in reg._entries(KINDS[kind]).items() if n != name}
        return reg

    with pytest.raises(ProviderNotInstalledError) as info:
        without_plugin().load(kind, name)
    assert f'pip install "engram[{extra}]"' in str(info.value)
    assert f"{name!r} is not installed" in str(info.value)
    assert info.value.extra == extra
    with pytest.raises(ProviderNotInstalledError):  # through create too, by name and by URL
        without_plugin().create(kind, f"{name}://localhost:1234/x" if kind == "vector_store" else name)


def test_failing_plugin_shows_real_cause(plugins: dict[str, str]) -> None:
    with pytest.raises(ProviderLoadError) as info:
        Registry({"engram.vector_stores": plugins}).load("vector_store", "broken")
    msg = str(info.value)
    assert "'broken' is installed but failed to import" in msg
    assert "ModuleNotFoundError" in msg and "engram_dependency_that_is_not_installed" in msg
    assert isinstance(info.value.__cause__, ModuleNotFoundError)
    with pytest.raises(ProviderLoadError, match="this module must never be imported"):
        Registry({"engram.vector_stores": plugins}).load("vector_store", "never")


@pytest.mark.parametrize(("name", "words"), [("function", "not a class"), ("half", "missing")])
def test_non_provider_refused(plugins: dict[str, str], name: str, words: str) -> None:
    with pytest.raises(ProviderLoadError) as info:
        Registry({"engram.vector_stores": plugins}).load("vector_store", name)
    assert words in str(info.value) and "not a vector store provider" in str(info.value)


def test_wrong_kind_refused() -> None:
    r = Registry({"engram.vector_stores": {"hash": HashEmbedder}})
    with pytest.raises(ProviderLoadError, match="not a vector store provider"):
        r.load("vector_store", "hash")
    with pytest.raises(ConfigurationError, match="is not a vector store"):
        Registry().create("vector_store", HashEmbedder())
    with pytest.raises(ConfigurationError, match=r"is not an? embedder"):
        Registry().create("embedder", object())


def test_unknown_kind() -> None:
    with pytest.raises(ConfigurationError, match="unknown provider kind"):
        Registry().load("vectors", "memory")
    assert set(KINDS) == {"llm", "embedder", "vector_store", "graph_store", "history_store", "reranker"}


def test_spec_instance() -> None:
    store = MemoryVectorStore()
    assert Registry().create("vector_store", store) is store


def test_spec_name() -> None:
    assert isinstance(Registry().create("vector_store", "memory"), MemoryVectorStore)
    emb = Registry().create("embedder", "hash")
    assert isinstance(emb, HashEmbedder) and emb.dims == 384


def test_spec_url(tmp_path: Path) -> None:
    assert isinstance(Registry().create("vector_store", "memory://"), MemoryVectorStore)
    emb = Registry().create("embedder", "hash://?dims=48")
    assert emb.dims == 48
    hist = Registry().create("history_store", f"sqlite:///{tmp_path}/h.db")
    assert type(hist).__name__ == "SQLiteHistoryStore"


def test_spec_mapping() -> None:
    emb = Registry().create("embedder", {"provider": "hash", "config": {"dims": 32, "seed": 1}})
    assert isinstance(emb, HashEmbedder) and emb.dims == 32
    assert isinstance(Registry().create("vector_store", {"provider": "memory"}), MemoryVectorStore)


def test_spec_class_is_built() -> None:
    store = Registry().create("vector_store", MemoryVectorStore)
    assert isinstance(store, MemoryVectorStore) and isinstance(store, VectorStore)


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"provider": "hash", "config": {"dims": 1}}, "invalid config for embedder 'hash'"),
        ({"provider": "hash", "config": {"colour": "red"}}, "colour"),
        ({"provider": "hash", "settings": {}}, '{"provider": name'),
        ({"config": {}}, '{"provider": name'),
        ({"provider": 3}, "'provider' must be a string"),
        ({"provider": "hash", "config": "dims=3"}, "'config' a mapping"),
        ("hash://?dims=2", "invalid config for embedder 'hash'"),
        (42, "is not a embedder"),
    ],
)
def test_spec_errors(spec: object, words: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Registry().create("embedder", spec)
    assert words in str(info.value)


def test_url_needs_from_url() -> None:
    class NoUrl(MemoryVectorStore):
        from_url = None  # type: ignore[assignment]

    r = Registry({"engram.vector_stores": {"nourl": NoUrl}})
    with pytest.raises(ConfigurationError, match="cannot be configured from a URL"):
        r.create("vector_store", "nourl://x")


def test_register_in_code() -> None:
    r = Registry()
    r.register("vector_store", "mine", MemoryVectorStore)
    assert isinstance(r.create("vector_store", "mine"), MemoryVectorStore)
    r.register("vector_store", "mine2", "engram.vector.memory:MemoryVectorStore")
    assert r.load("vector_store", "mine2") is MemoryVectorStore


@pytest.mark.parametrize(
    "url", ["bolt://localhost:7687", "bolt+s://db.example:7687", "neo4j+s://u:p@db.example:7687/x"]
)
def test_transport_variant_schemes_name_their_provider(url: str) -> None:
    """neo4j+s:// and bolt:// are the neo4j plugin's URLs (it is installed in the dev environment)."""
    store = Registry().create("graph_store", url)
    assert type(store).__module__.startswith("engram.graph.neo4j")
    assert store.config.uri.split("://")[0] == url.split("://")[0]
