"""Build an ONNX graph of a BERT sentence encoder (all-MiniLM-L6-v2) from its safetensors weights.

The graph reproduces ``transformers.BertModel`` (Devlin et al., 2019, "BERT: Pre-training of Deep
Bidirectional Transformers"; the layer layout of HF transformers' ``modeling_bert.py``) followed by
sentence-transformers' ``Pooling(mean)`` and ``Normalize`` modules (Reimers & Gurevych, 2019,
"Sentence-BERT"):

    x   = LayerNorm(word[input_ids] + position[0:S] + token_type[0])           eps 1e-12
    per layer (6):
        a = softmax(Q K^T / sqrt(d_head) + (1 - mask) * float32.min) V        12 heads of 32
        x = LayerNorm(x + a W_o + b_o)
        x = LayerNorm(x + GELU_erf(x W_1 + b_1) W_2 + b_2)                    FFN 1536
    e   = sum_s(mask_s * x_s) / max(sum_s mask_s, 1e-9)                         mean pooling
    out = e / max(||e||_2, 1e-12)                                              L2 normalisation

Inputs ``input_ids`` and ``attention_mask`` are ``(batch, seq)`` int64; the single output
``sentence_embedding`` is ``(batch, hidden)`` float32 with unit rows. Only ``onnx`` and
``safetensors`` are used, never torch.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

GRAPH_VERSION = "1"
"""Bumped whenever the graph changes, so cached builds of an older layout are rebuilt."""

OPSET = 17  # LayerNormalization is a standard op from opset 17.

ProgressCallback = Callable[[str, int, int], None]


def _progress(cb: ProgressCallback | None, stage: str, done: int, total: int) -> None:
    if cb is not None:
        cb(stage, done, total)


def build_bert_onnx(source_dir: Path, on_progress: ProgressCallback | None = None):  # -> onnx.ModelProto
    """Read ``model.safetensors`` + ``config.json`` from ``source_dir`` and return the ONNX model.

    Raises:
        FileNotFoundError, KeyError, ValueError: missing files or unexpected tensors.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from safetensors.numpy import load_file

    cfg = json.loads((source_dir / "config.json").read_text(encoding="utf-8"))
    hidden = int(cfg["hidden_size"])
    heads = int(cfg["num_attention_heads"])
    n_layers = int(cfg["num_hidden_layers"])
    eps = float(cfg.get("layer_norm_eps", 1e-12))
    act = cfg.get("hidden_act", "gelu")
    if act != "gelu":
        raise ValueError(f"unsupported hidden_act {act!r} (only exact erf 'gelu')")
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError("only absolute position embeddings are supported")
    head_dim = hidden // heads
    total = n_layers + 3  # weights, embeddings, layers..., pooling

    _progress(on_progress, "build", 0, total)
    weights = load_file(str(source_dir / "model.safetensors"))
    # Checkpoints saved from BertModel have bare names; those saved from a task head prefix "bert.".
    if "bert.embeddings.word_embeddings.weight" in weights:
        weights = {k.removeprefix("bert."): v for k, v in weights.items()}
    _progress(on_progress, "build", 1, total)

    inits: list = []
    nodes: list = []

    def w(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def t(key: str) -> np.ndarray:
        return np.asarray(weights[key], dtype=np.float32)

    def node(op: str, inputs: list[str], output: str, **attrs) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def linear(x: str, prefix: str, out: str) -> str:
        wt = w(prefix + ".weight_t", t(prefix + ".weight").T)  # torch Linear keeps (out, in)
        b = w(prefix + ".bias", t(prefix + ".bias"))
        return node("Add", [node("MatMul", [x, wt], out + "_mm"), b], out)

    def layer_norm(x: str, prefix: str, out: str) -> str:
        g = w(prefix + ".weight", t(prefix + ".weight"))
        b = w(prefix + ".bias", t(prefix + ".bias"))
        return node("LayerNormalization", [x, g, b], out, axis=-1, epsilon=eps)

    # Constants.
    w("c_axes1", np.array([1], dtype=np.int64))
    w("c_axes_last", np.array([-1], dtype=np.int64))
    w("c_zero", np.array([0], dtype=np.int64))
    w("c_axes1_end", np.array([2], dtype=np.int64))
    w("c_one_f", np.array(1.0, dtype=np.float32))
    w("c_half", np.array(0.5, dtype=np.float32))
    w("c_inv_sqrt2", np.array(1.0 / math.sqrt(2.0), dtype=np.float32))
    w("c_neg", np.array(np.finfo(np.float32).min, dtype=np.float32))
    w("c_scale", np.array(1.0 / math.sqrt(head_dim), dtype=np.float32))
    w("c_tiny_count", np.array(1e-9, dtype=np.float32))
    w("c_tiny_norm", np.array(1e-12, dtype=np.float32))
    w("c_shape_heads", np.array([0, 0, heads, head_dim], dtype=np.int64))
    w("c_shape_hidden", np.array([0, 0, hidden], dtype=np.int64))
    w("c_mask_axes", np.array([1, 2], dtype=np.int64))

    # Embeddings: word + position[0:S] + token_type[0] (every input is a single segment).
    word = w("embeddings.word_embeddings.weight", t("embeddings.word_embeddings.weight"))
    pos = w("embeddings.position_embeddings.weight", t("embeddings.position_embeddings.weight"))
    tt0 = w("embeddings.token_type_row0", t("embeddings.token_type_embeddings.weight")[0])
    x = node("Gather", [word, "input_ids"], "emb_word", axis=0)
    shape = node("Shape", ["input_ids"], "ids_shape")
    seq = node("Slice", [shape, "c_axes1", "c_axes1_end"], "seq_len")
    pos_rows = node("Slice", [pos, "c_zero", seq, "c_zero"], "emb_pos")
    x = node("Add", [x, pos_rows], "emb_wp")
    x = node("Add", [x, tt0], "emb_sum")
    x = layer_norm(x, "embeddings.LayerNorm", "emb_out")

    # Additive attention mask (batch, 1, 1, seq): 0 where attended, float32.min where padded.
    maskf = node("Cast", ["attention_mask"], "mask_f", to=TensorProto.FLOAT)
    inv = node("Sub", ["c_one_f", maskf], "mask_inv")
    add_mask = node("Unsqueeze", [node("Mul", [inv, "c_neg"], "mask_neg"), "c_mask_axes"], "mask_add")
    _progress(on_progress, "build", 2, total)

    for i in range(n_layers):
        p = f"encoder.layer.{i}"
        q = linear(x, f"{p}.attention.self.query", f"l{i}_q")
        k = linear(x, f"{p}.attention.self.key", f"l{i}_k")
        v = linear(x, f"{p}.attention.self.value", f"l{i}_v")
        q = node("Transpose", [node("Reshape", [q, "c_shape_heads"], f"l{i}_qr")], f"l{i}_qt", perm=[0, 2, 1, 3])
        k = node("Transpose", [node("Reshape", [k, "c_shape_heads"], f"l{i}_kr")], f"l{i}_kt", perm=[0, 2, 3, 1])
        v = node("Transpose", [node("Reshape", [v, "c_shape_heads"], f"l{i}_vr")], f"l{i}_vt", perm=[0, 2, 1, 3])
        scores = node("Mul", [node("MatMul", [q, k], f"l{i}_qk"), "c_scale"], f"l{i}_scaled")
        scores = node("Add", [scores, add_mask], f"l{i}_masked")
        probs = node("Softmax", [scores], f"l{i}_probs", axis=-1)
        ctx = node("Transpose", [node("MatMul", [probs, v], f"l{i}_ctx")], f"l{i}_ctxt", perm=[0, 2, 1, 3])
        ctx = node("Reshape", [ctx, "c_shape_hidden"], f"l{i}_ctxr")
        a = linear(ctx, f"{p}.attention.output.dense", f"l{i}_ao")
        x = layer_norm(node("Add", [a, x], f"l{i}_ares"), f"{p}.attention.output.LayerNorm", f"l{i}_aln")
        h = linear(x, f"{p}.intermediate.dense", f"l{i}_h")
        # Exact GELU: 0.5 * h * (1 + erf(h / sqrt(2))).
        erf = node("Erf", [node("Mul", [h, "c_inv_sqrt2"], f"l{i}_hs")], f"l{i}_erf")
        g = node("Mul", [node("Mul", [h, "c_half"], f"l{i}_hh"), node("Add", [erf, "c_one_f"], f"l{i}_erf1")], f"l{i}_gelu")
        o = linear(g, f"{p}.output.dense", f"l{i}_o")
        x = layer_norm(node("Add", [o, x], f"l{i}_ores"), f"{p}.output.LayerNorm", f"l{i}_out")
        _progress(on_progress, "build", 3 + i, total)

    # Mean pooling over the attention mask, then L2 normalisation.
    m3 = node("Unsqueeze", [maskf, "c_axes_last"], "pool_mask")
    summed = node("ReduceSum", [node("Mul", [x, m3], "pool_masked"), "c_axes1"], "pool_sum", keepdims=0)
    count = node("Max", [node("ReduceSum", [m3, "c_axes1"], "pool_cnt0", keepdims=0), "c_tiny_count"], "pool_cnt")
    mean = node("Div", [summed, count], "pool_mean")
    sq = node("ReduceSum", [node("Mul", [mean, mean], "norm_sq0"), "c_axes_last"], "norm_sq", keepdims=1)
    norm = node("Max", [node("Sqrt", [sq], "norm0"), "c_tiny_norm"], "norm")
    node("Div", [mean, norm], "sentence_embedding")

    graph = helper.make_graph(
        nodes,
        "all-MiniLM-L6-v2",
        inputs=[
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        outputs=[helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", hidden])],
        initializer=inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="engram.embedding.local"
    )
    model.ir_version = 8  # readable by onnxruntime >= 1.14
    helper.set_model_props(
        model,
        {
            "engram.graph_version": GRAPH_VERSION,
            "engram.source": "sentence-transformers/all-MiniLM-L6-v2 (safetensors)",
            "engram.pooling": "mean",
            "engram.normalized": "true",
            "engram.max_position_embeddings": str(cfg.get("max_position_embeddings", 512)),
        },
    )
    onnx.checker.check_model(model)
    _progress(on_progress, "build", total, total)
    return model


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part:
    a temp file in the same folder, fsync, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a cache file is as readable as any other
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
