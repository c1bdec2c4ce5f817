"""FastEmbedReranker on a cross-encoder graph built by the tests (see conftest.py): the wiring is
checked against onnxruntime run directly on the same file. No trained cross-encoder is available
offline, so the relevance quality of a real one is not tested here."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import numpy as np
import pydantic
import pytest
from engram.core import Registry
from engram.core.errors import ConfigurationError, InvalidInputError, ProviderError
from engram.embedding.fastembed import CUSTOM_PREFIX, FastEmbedReranker
from fastembed.rerank.cross_encoder import TextCrossEncoder

Scores = Callable[[str, list[str]], np.ndarray]

QUERY = "where does alice live now"
DOCS = [
    "Bob plays the cello.",
    "Alice lives in Oslo now, she moved in 2021.",
    "The weather in Oslo is cold.",
    "",
    "alice alice alice",
    "Where does the train to Bergen leave from? " * 40,  # long: truncated with the query
    "Carol lives in Lisbon.",
]


@pytest.fixture(scope="module")
def reranker(reranker_dir: Path) -> FastEmbedReranker:
    """The default model name, with the files from a folder laid out as its hub repository."""
    return FastEmbedReranker(model_path=reranker_dir, batch_size=3)


async def test_scores_are_what_onnxruntime_computes(reranker: FastEmbedReranker, reference_scores: Scores) -> None:
    ranked = await reranker.rerank(QUERY, DOCS)
    want = reference_scores(QUERY, DOCS)
    assert sorted(i for i, _ in ranked) == list(range(len(DOCS)))
    got = np.empty(len(DOCS))
    for i, score in ranked:
        got[i] = score
    assert np.allclose(got, want, atol=1e-5)
    assert [s for _, s in ranked] == sorted((s for _, s in ranked), reverse=True)
    assert ranked[0][0] == int(np.argmax(want))
    assert len(set(np.round(want, 6))) > 4  # the scores do differ, so the order means something
    assert type(reranker._model.model).__name__ == "OnnxTextCrossEncoder"  # fastembed's own class for the name
    assert reranker.capabilities == frozenset({"offline", "pointwise", "semantic"})


async def test_indexes_map_back_to_the_documents(reranker: FastEmbedReranker) -> None:
    ranked = dict((DOCS[i], s) for i, s in await reranker.rerank(QUERY, DOCS))
    perm = [3, 6, 0, 5, 1, 4, 2]
    shuffled = [DOCS[p] for p in perm]
    again = await reranker.rerank(QUERY, shuffled)
    assert len(again) == len(DOCS)
    for i, s in again:
        assert s == pytest.approx(ranked[shuffled[i]], abs=1e-6)


async def test_top_n(reranker: FastEmbedReranker) -> None:
    full = await reranker.rerank(QUERY, DOCS)
    assert await reranker.rerank(QUERY, DOCS, top_n=2) == full[:2]
    assert await reranker.rerank(QUERY, DOCS, top_n=100) == full
    for bad in (0, -1, True, 1.5, "2"):
        with pytest.raises(InvalidInputError, match="top_n"):
            await reranker.rerank(QUERY, DOCS, top_n=bad)  # type: ignore[arg-type]


async def test_ties_keep_the_lower_index_first(reranker: FastEmbedReranker) -> None:
    ranked = await reranker.rerank(QUERY, ["alice lives here", "nothing", "alice lives here"])
    positions = [i for i, _ in ranked]
    assert ranked[positions.index(0)][1] == pytest.approx(ranked[positions.index(2)][1], abs=1e-6)
    assert positions.index(0) < positions.index(2)


async def test_batch_size_does_not_change_scores(reranker_dir: Path, reranker: FastEmbedReranker) -> None:
    one = FastEmbedReranker(model_path=reranker_dir, batch_size=1)
    assert np.allclose([s for _, s in await one.rerank(QUERY, DOCS)],
                       [s for _, s in await reranker.rerank(QUERY, DOCS)], atol=1e-6)
    await one.aclose()


async def test_empty_documents_and_bad_input(reranker_dir: Path) -> None:
    r = FastEmbedReranker(model_path=reranker_dir)
    assert await r.rerank(QUERY, []) == []
    assert not r.loaded  # nothing to score: the model was not opened
    with pytest.raises(InvalidInputError, match="string query"):
        await r.rerank(None, DOCS)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="not a single string"):
        await r.rerank(QUERY, "one document")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="item 1 is a bytes"):
        await r.rerank(QUERY, ["ok", b"bytes"])  # type: ignore[list-item]
    assert not r.loaded


async def test_a_model_of_your_own(reranker_dir: Path, reference_scores: Scores) -> None:
    """Another name makes the folder a custom model, registered with fastembed; its ONNX file is
    found under onnx/ or named with model_file."""
    found = FastEmbedReranker(model="acme/bag-of-words", model_path=reranker_dir)
    named = FastEmbedReranker(model="acme/bag-of-words", model_path=reranker_dir, model_file="onnx/model.onnx")
    assert found._plan().name == named._plan().name and found._plan().name.startswith(CUSTOM_PREFIX)
    for r in (found, named):
        ranked = await r.rerank(QUERY, DOCS[:3])
        want = reference_scores(QUERY, DOCS[:3])
        assert [i for i, _ in ranked] == list(np.argsort(-want, kind="stable"))
        assert np.allclose([s for _, s in ranked], np.sort(want)[::-1], atol=1e-5)
        await r.aclose()
    names = [m["model"] for m in TextCrossEncoder.list_supported_models()]
    assert names.count(found._plan().name) == 1  # registered once for both


async def test_concurrent_first_calls_load_once(reranker_dir: Path, constructions: Callable) -> None:
    opened = constructions(TextCrossEncoder)
    r = FastEmbedReranker(model_path=reranker_dir)
    results: list[list[tuple[int, float]]] = []

    async def one() -> None:
        results.append(await r.rerank(QUERY, DOCS[:4]))

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(one)
    assert opened == ["Xenova/ms-marco-MiniLM-L-6-v2"]
    assert all(res == results[0] for res in results)
    await r.aclose()


async def test_bad_model_path(tmp_path: Path, reranker_dir: Path) -> None:
    with pytest.raises(ConfigurationError, match="is not a folder"):
        await FastEmbedReranker(model_path=tmp_path / "nowhere").rerank(QUERY, DOCS)
    folder = tmp_path / "flat"
    folder.mkdir()
    (folder / "model.onnx").write_bytes((reranker_dir / "onnx" / "model.onnx").read_bytes())
    (folder / "tokenizer.json").write_bytes((reranker_dir / "tokenizer.json").read_bytes())
    with pytest.raises(ConfigurationError, match=r"lacks onnx/model\.onnx, tokenizer_config\.json"):
        await FastEmbedReranker(model_path=folder).rerank(QUERY, DOCS)  # the default name's layout
    with pytest.raises(ConfigurationError, match=r"lacks tokenizer_config\.json"):
        await FastEmbedReranker(model="acme/flat", model_path=folder).rerank(QUERY, DOCS)
    (folder / "tokenizer_config.json").write_text('{"model_max_length": 512}')  # no pad token anywhere
    tokenizer = json.loads((reranker_dir / "tokenizer.json").read_text())
    tokenizer["padding"] = None
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer))
    with pytest.raises(ProviderError, match=f"cannot load the fastembed model in {folder}.*pad token"):
        await FastEmbedReranker(model="acme/flat", model_path=folder).rerank(QUERY, DOCS)


async def test_output_that_is_not_a_score(tmp_path: Path, reranker_dir: Path) -> None:
    """A graph whose first output has one value per pair, not (batch, k): refused on loading."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["mask_f", "axis"], ["score"], keepdims=0),
         helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT)],
        "flat", [helper.make_tensor_value_info(n, TensorProto.INT64, ["b", "s"]) for n in ("input_ids", "attention_mask")],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["b"])],
        initializer=[onnx.numpy_helper.from_array(np.array([1], dtype=np.int64), "axis")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder = tmp_path / "flat"
    folder.mkdir()
    onnx.save(model, str(folder / "model.onnx"))
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (folder / f).write_bytes((reranker_dir / f).read_bytes())
    with pytest.raises(ConfigurationError, match=r"does not score pairs.*first column is the relevance"):
        await FastEmbedReranker(model="acme/flat", model_path=folder).rerank(QUERY, DOCS)


async def test_unknown_name_and_offline_hub(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"Did you mean 'Xenova/ms-marco-MiniLM-L-6-v2'"):
        await FastEmbedReranker(model="Xenova/ms-marco-MiniLM-L6-v2").rerank(QUERY, DOCS)
    r = FastEmbedReranker(cache_dir=tmp_path / "cache")
    assert r.capabilities == frozenset({"pointwise", "semantic"})
    t0 = time.monotonic()
    with pytest.raises(ProviderError, match="HF_HUB_OFFLINE is set"):
        await r.rerank(QUERY, DOCS)
    assert time.monotonic() - t0 < 10


def test_config_and_url(tmp_path: Path) -> None:
    with pytest.raises(pydantic.ValidationError, match="set model_path too"):
        FastEmbedReranker(model_file="model.onnx")
    with pytest.raises(pydantic.ValidationError, match="extra"):
        FastEmbedReranker(pooling="mean")
    r = FastEmbedReranker.from_url("fastembed://BAAI/bge-reranker-base?batch_size=16&local_files_only=true")
    assert r.config.model == "BAAI/bge-reranker-base" and r.config.batch_size == 16
    assert "offline" in r.capabilities
    r = FastEmbedReranker.from_url(f"fastembed://{tmp_path}")
    assert r.config.model_path == tmp_path and r.config.model == "Xenova/ms-marco-MiniLM-L-6-v2"
    with pytest.raises(ConfigurationError, match=r"bad fastembed URL .* for FastEmbedReranker"):
        FastEmbedReranker.from_url("fastembed://?threads=0")


async def test_registry(reranker_dir: Path, reference_scores: Scores) -> None:
    reg = Registry()
    r = reg.create("reranker", {"provider": "fastembed", "config": {"model_path": str(reranker_dir)}})
    assert isinstance(r, FastEmbedReranker)
    ranked = await r.rerank(QUERY, DOCS[:3], top_n=1)
    assert ranked[0][0] == int(np.argmax(reference_scores(QUERY, DOCS[:3])))
    await r.aclose()
    assert isinstance(reg.create("reranker", f"fastembed://{reranker_dir}"), FastEmbedReranker)
