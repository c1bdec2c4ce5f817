"""FastEmbedEmbedder on model folders built by the tests (see conftest.py), compared with engram's
local embedder on the same network, and its errors, laziness, concurrency and registry wiring."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pydantic
import pytest
from engram.core import AsyncMemory, Registry
from engram.core.errors import ConfigurationError, InvalidInputError, ProviderError
from engram.embedding.fastembed import CUSTOM_PREFIX, FastEmbedEmbedder
from engram.embedding.local import LocalEmbedder
from fastembed import TextEmbedding
from fastembed.common.model_management import ModelManagement

LONG = " ".join(f"word{i} of a rather long document about memory" for i in range(120))  # > 256 word pieces
SENTENCES = [
    "Alice moved to Oslo in 2021.",
    "",
    "Café crème, naïve résumé — unicode survives.",
    "What is the capital of Norway?",
    "The quick brown fox jumps over the lazy dog.",
    LONG,
]


def rows_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def local_vectors(pooled_dir: Path) -> np.ndarray:
    """The local embedder's vectors for SENTENCES, from the same build."""

    async def go() -> np.ndarray:
        async with LocalEmbedder(model_dir=pooled_dir) as local:
            return await local.embed(SENTENCES)

    return anyio.run(go)


@pytest.fixture(scope="module")
def pooled(pooled_dir: Path) -> FastEmbedEmbedder:
    """One embedder on the local build, shared by the tests that only read from it."""
    return FastEmbedEmbedder(model_path=pooled_dir, pooling="none", batch_size=4)


@pytest.fixture
def hub_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every call fastembed makes to fetch files from the Hugging Face hub (or its cache)."""
    calls: list[dict[str, Any]] = []
    real = ModelManagement.download_files_from_huggingface.__func__  # type: ignore[attr-defined]

    def spy(cls: Any, hf_source_repo: str, cache_dir: str, extra_patterns: list[str], **kw: Any) -> str:
        calls.append({"repo": hf_source_repo, **kw})
        return real(cls, hf_source_repo, cache_dir, extra_patterns, **kw)

    monkeypatch.setattr(ModelManagement, "download_files_from_huggingface", classmethod(spy))
    return calls


# -- vectors -------------------------------------------------------------------------------------


async def test_local_build_matches_the_local_embedder(pooled: FastEmbedEmbedder, local_vectors: np.ndarray) -> None:
    got = await pooled.embed(SENTENCES)
    assert got.shape == (len(SENTENCES), 384) and got.dtype == np.float32
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cos = rows_cosine(got, local_vectors)
    assert cos.min() > 0.999, cos  # the long text too: both truncate to 256 word pieces
    assert pooled.dims == 384 and pooled.capabilities == frozenset({"offline", "semantic"})


async def test_hub_layout_with_the_model_name(hub_dir: Path, local_vectors: np.ndarray, hub_calls: list) -> None:
    """The default name and a folder laid out as its hub repository: fastembed's own handling of
    sentence-transformers/all-MiniLM-L6-v2 (mean pooling of the first output, normalisation)."""
    e = FastEmbedEmbedder(model_path=hub_dir, threads=1, providers=["CPUExecutionProvider"])
    assert e.dims == 384 and not e.loaded  # from fastembed's description, nothing loaded
    async with e:
        got = await e.embed(SENTENCES)
        assert type(e._model.model).__name__ == "PooledNormalizedEmbedding"
    assert rows_cosine(got, local_vectors).min() > 0.999
    assert hub_calls == []  # model_path: fastembed never went to the hub or its cache
    assert not e.loaded  # aclose released it


async def test_pooling_of_a_model_of_your_own(hub_dir: Path, local_vectors: np.ndarray) -> None:
    """The same folder as a model of the user's own: mean pooling of the first output, the pooled
    second output by name, and CLS pooling (checked against onnxruntime directly)."""
    mean = FastEmbedEmbedder(model_path=hub_dir, pooling="mean", dims=384)
    named = FastEmbedEmbedder(model_path=hub_dir, pooling="none", output_name="sentence_embedding")
    cls = FastEmbedEmbedder(model_path=hub_dir, pooling="cls")
    for e in (mean, named):
        assert rows_cosine(await e.embed(SENTENCES), local_vectors).min() > 0.999
    assert {m["model"] for m in TextEmbedding.list_supported_models()} >= {mean._plan().name, named._plan().name}
    assert mean._plan().name.startswith(CUSTOM_PREFIX) and mean._plan().name != named._plan().name

    import onnxruntime as ort
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(hub_dir / "tokenizer.json"))
    tok.enable_truncation(max_length=256)
    tok.no_padding()
    session = ort.InferenceSession(str(hub_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    want = []
    for text in SENTENCES:
        enc = tok.encode(text)
        feed = {"input_ids": np.array([enc.ids]), "attention_mask": np.array([enc.attention_mask])}
        first = session.run(["last_hidden_state"], feed)[0][0, 0]
        want.append(first / np.linalg.norm(first))
    got = await cls.embed(SENTENCES)
    assert np.allclose(got, np.array(want), atol=1e-5)
    assert rows_cosine(got, local_vectors).min() < 0.99  # CLS is not the mean: pooling was applied as set
    for e in (mean, named, cls):
        await e.aclose()


async def test_batches_keep_the_input_order(pooled: FastEmbedEmbedder) -> None:
    texts = [f"{'very ' * (i % 7)}short note number {i}" for i in range(11)]
    batched = await pooled.embed(texts)  # batch_size 4, sorted by length inside
    one_by_one = np.vstack([await pooled.embed([t]) for t in texts])
    assert np.allclose(batched, one_by_one, atol=1e-5)
    assert np.allclose(await pooled.embed(texts[::-1]), batched[::-1], atol=1e-5)
    assert len({v.tobytes() for v in batched}) == len(texts)


async def test_empty_batch(pooled: FastEmbedEmbedder) -> None:
    out = await pooled.embed([])
    assert out.shape == (0, 384) and out.dtype == np.float32


async def test_query_and_document_kinds(pooled: FastEmbedEmbedder, monkeypatch: pytest.MonkeyPatch) -> None:
    """kind picks fastembed's query_embed or passage_embed; MiniLM is symmetric, so the vectors agree."""
    called: list[str] = []
    for name in ("query_embed", "passage_embed"):
        real = getattr(TextEmbedding, name)

        def spy(self: Any, texts: Any, _real: Any = real, _name: str = name, **kw: Any) -> Any:
            called.append(_name)
            return _real(self, texts, **kw)

        monkeypatch.setattr(TextEmbedding, name, spy)
    q = await pooled.embed(["Where does Alice live?"], kind="query")
    assert called == ["query_embed"]
    d = await pooled.embed(["Where does Alice live?"], kind="document")
    assert called == ["query_embed", "passage_embed"]
    assert np.allclose(q, d, atol=1e-6)
    with pytest.raises(InvalidInputError, match="kind"):
        await pooled.embed(["x"], kind="passage")  # type: ignore[arg-type]


async def test_bad_input_is_refused_before_loading(pooled_dir: Path) -> None:
    e = FastEmbedEmbedder(model_path=pooled_dir, pooling="none")
    with pytest.raises(InvalidInputError, match="not a single string"):
        await e.embed("one string")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="item 1 is a int"):
        await e.embed(["ok", 3])  # type: ignore[list-item]
    assert not e.loaded


async def test_concurrent_first_calls_load_once(pooled_dir: Path, constructions: Callable) -> None:
    opened = constructions(TextEmbedding)
    e = FastEmbedEmbedder(model_path=pooled_dir, pooling="none")
    results: dict[int, np.ndarray] = {}

    async def one(i: int) -> None:
        results[i] = await e.embed([f"text {i}", "shared"])

    async with anyio.create_task_group() as tg:
        for i in range(6):
            tg.start_soon(one, i)
    assert len(opened) == 1
    assert all(np.allclose(results[i][1], results[0][1], atol=1e-6) for i in results)
    await e.aclose()
    await e.embed(["again"])  # a closed embedder opens its model again
    assert len(opened) == 2
    await e.aclose()


async def test_dims_of_a_model_of_your_own(pooled_dir: Path) -> None:
    e = FastEmbedEmbedder(model_path=pooled_dir, pooling="none", dims=384)
    assert e.dims == 384 and not e.loaded  # from the config
    e = FastEmbedEmbedder(model_path=pooled_dir, pooling="none")
    assert e.dims == 384 and e.loaded  # unknown before: the property loaded the model
    await e.aclose()
    with pytest.raises(ConfigurationError, match="returns 384 dimensions, but the config says 128"):
        await FastEmbedEmbedder(model_path=pooled_dir, pooling="none", dims=128).embed(["x"])


# -- errors --------------------------------------------------------------------------------------


async def test_missing_model_path_names_the_files(tmp_path: Path, pooled_dir: Path, hub_calls: list) -> None:
    with pytest.raises(ConfigurationError, match="is not a folder") as info:
        await FastEmbedEmbedder(model_path=tmp_path / "nowhere").embed(["x"])
    assert "model.onnx" in str(info.value) and "tokenizer_config.json" in str(info.value)

    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "model.onnx").write_bytes((pooled_dir / "model.onnx").read_bytes()[:1000])
    with pytest.raises(ConfigurationError, match=r"lacks tokenizer\.json, tokenizer_config\.json"):
        await FastEmbedEmbedder(model_path=partial, pooling="none").embed(["x"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigurationError, match=r"lacks onnx/model\.onnx, tokenizer\.json"):
        await FastEmbedEmbedder(model_path=empty, pooling="mean", model_file="onnx/model.onnx").embed(["x"])
    assert hub_calls == []  # never a download instead


async def test_unloadable_model_file(tmp_path: Path, pooled_dir: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (folder / f).write_bytes((pooled_dir / f).read_bytes())
    (folder / "model.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(ProviderError, match=f"cannot load the fastembed model in {folder}"):
        await FastEmbedEmbedder(model_path=folder, pooling="none").embed(["x"])


async def test_pooled_file_under_a_model_name_says_to_set_pooling(pooled_dir: Path) -> None:
    """fastembed mean-pools all-MiniLM-L6-v2's token output; the local build is already pooled."""
    with pytest.raises(ConfigurationError, match="set pooling: 'none' if it returns pooled"):
        await FastEmbedEmbedder(model_path=pooled_dir).embed(["x"])


async def test_unknown_model_names(tmp_path: Path) -> None:
    e = FastEmbedEmbedder(model="BAAI/bge-smal-en-v1.5")  # nothing checked in __init__
    with pytest.raises(ConfigurationError, match=r"no text embedding model 'BAAI/bge-smal-en-v1\.5'.*"
                                                 r"Did you mean 'BAAI/bge-small-en-v1\.5'"):
        await e.embed(["x"])
    with pytest.raises(ConfigurationError, match="no text embedding model"):
        e.dims  # noqa: B018
    with pytest.raises(ConfigurationError, match="set pooling"):
        await FastEmbedEmbedder(model="acme/my-encoder", model_path=tmp_path).embed(["x"])


async def test_hub_model_offline_fails_fast(tmp_path: Path, hub_calls: list) -> None:
    """The hub path, as far as it goes here: with HF_HUB_OFFLINE=1 and an empty cache, fastembed only
    looks in its cache, and the error says why and what to do."""
    e = FastEmbedEmbedder(model="BAAI/bge-small-en-v1.5", cache_dir=tmp_path / "cache")
    assert e.capabilities == frozenset({"semantic"}) and e.dims == 384
    t0 = time.monotonic()
    with pytest.raises(ProviderError, match="HF_HUB_OFFLINE is set") as info:
        await e.embed(["x"])
    assert time.monotonic() - t0 < 10
    assert "model_path" in str(info.value) and str(tmp_path / "cache") in str(info.value)
    assert hub_calls and all(c["repo"] == "Qdrant/bge-small-en-v1.5-onnx-Q" and c["local_files_only"]
                             for c in hub_calls)
    local_only = FastEmbedEmbedder(model="BAAI/bge-small-en-v1.5", cache_dir=tmp_path / "cache", local_files_only=True)
    assert local_only.capabilities == frozenset({"offline", "semantic"})
    with pytest.raises(ProviderError, match="local_files_only is set"):
        await local_only.embed(["x"])


async def test_execution_provider_not_installed(pooled_dir: Path) -> None:
    with pytest.raises(ConfigurationError, match="onnxruntime has no NoSuchExecutionProvider"):
        await FastEmbedEmbedder(model_path=pooled_dir, pooling="none", providers=["NoSuchExecutionProvider"]).embed(["x"])


# -- config, URLs, registry, end to end ----------------------------------------------------------


def test_config_rules(tmp_path: Path) -> None:
    with pytest.raises(pydantic.ValidationError, match="set model_path"):
        FastEmbedEmbedder(pooling="mean")
    with pytest.raises(pydantic.ValidationError, match="set pooling too"):
        FastEmbedEmbedder(model_path=tmp_path, output_name="x")
    with pytest.raises(pydantic.ValidationError, match="path inside model_path"):
        FastEmbedEmbedder(model_path=tmp_path, pooling="mean", model_file="../model.onnx")
    with pytest.raises(pydantic.ValidationError, match="extra"):
        FastEmbedEmbedder(modle="x")
    with pytest.raises(ConfigurationError, match="not both"):
        FastEmbedEmbedder(FastEmbedEmbedder.Config(), threads=2)
    assert FastEmbedEmbedder().capabilities == FastEmbedEmbedder.capabilities == frozenset({"semantic"})


def test_from_url(tmp_path: Path) -> None:
    e = FastEmbedEmbedder.from_url("fastembed://BAAI/bge-small-en-v1.5?threads=2&batch_size=8")
    assert e.config.model == "BAAI/bge-small-en-v1.5" and e.config.threads == 2 and e.config.batch_size == 8
    e = FastEmbedEmbedder.from_url(f"fastembed://{tmp_path}/my%20model?pooling=none")
    assert e.config.model_path == tmp_path / "my model" and e.config.pooling == "none"
    assert "offline" in e.capabilities
    e = FastEmbedEmbedder.from_url("fastembed://?providers=CPUExecutionProvider,AzureExecutionProvider")
    assert e.config.providers == ["CPUExecutionProvider", "AzureExecutionProvider"]
    assert FastEmbedEmbedder.from_url("fastembed://").config == FastEmbedEmbedder.Config()
    for bad in ("fastembed://?batch=3", "local:///x", "fastembed://a/b?model=c"):
        with pytest.raises(ConfigurationError):
            FastEmbedEmbedder.from_url(bad)


async def test_registry_by_name_and_url(pooled_dir: Path, local_vectors: np.ndarray) -> None:
    reg = Registry()
    e = reg.create("embedder", {"provider": "fastembed", "config": {"model_path": str(pooled_dir), "pooling": "none"}})
    assert isinstance(e, FastEmbedEmbedder)
    got = await e.embed(SENTENCES[:1])
    assert rows_cosine(got, local_vectors[:1])[0] > 0.999
    await e.aclose()
    by_url = reg.create("embedder", f"fastembed://{pooled_dir}?pooling=none")
    assert isinstance(by_url, FastEmbedEmbedder) and by_url.config.model_path == pooled_dir
    with pytest.raises(ConfigurationError, match="invalid config for embedder 'fastembed'"):
        reg.create("embedder", {"provider": "fastembed", "config": {"pooling": "avg"}})


async def test_memory_add_and_search(pooled_dir: Path) -> None:
    config = {
        "vector_store": "memory",
        "embedder": {"provider": "fastembed", "config": {"model_path": str(pooled_dir), "pooling": "none"}},
    }
    facts = [
        "Alice drinks green tea every morning",
        "Bob plays the cello in an orchestra",
        "The office is closed on Sundays",
        "Carol is allergic to peanuts",
    ]
    async with AsyncMemory(config) as memory:
        for fact in facts:
            await memory.add(fact, user_id="alice", infer=False)
        found = await memory.search("What does Alice like to drink?", user_id="alice", limit=2)
        assert found["results"][0]["memory"] == facts[0]
        found = await memory.search("musical instrument", user_id="alice", limit=1)
        assert found["results"][0]["memory"] == facts[1]
        assert (await memory.search("tea", user_id="bob"))["results"] == []
