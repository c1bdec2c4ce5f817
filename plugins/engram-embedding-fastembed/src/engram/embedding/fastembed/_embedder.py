from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import anyio.to_thread
import numpy as np
from engram.core.errors import ConfigurationError, InvalidInputError, ProviderError
from pydantic import Field, model_validator

from ._common import (
    PROVIDER,
    FastEmbedModel,
    Plan,
    SourceConfig,
    check_texts,
    custom_name,
    describe,
    fastembed_version,
    find_model_file,
    length_batches,
    unknown_model,
)

Pooling = Literal["mean", "cls", "last_token", "none"]


class FastEmbedEmbedder(FastEmbedModel):
    """Dense text embeddings from `FastEmbed <https://github.com/qdrant/fastembed>`_
    (``fastembed.TextEmbedding``, ONNX on onnxruntime, no torch).

    Two ways to get the model:

    - **A model fastembed knows, by name** (``model``; ``fastembed.TextEmbedding.list_supported_models()``
      lists them): fastembed downloads its files from the Hugging Face hub into ``cache_dir`` on
      first use, or finds them there; with ``local_files_only`` (or ``HF_HUB_OFFLINE=1``) it only
      looks in the cache.
    - **A folder** (``model_path``): the files are loaded from it and the hub is never contacted
      (fastembed's ``specific_model_path``). The folder holds the ONNX file and the tokenizer files
      ``tokenizer.json`` and ``tokenizer_config.json`` (``config.json`` and
      ``special_tokens_map.json`` are read when present). With a model name fastembed knows and
      no ``pooling``, the folder must be laid out as that model's hub repository (its ONNX file at
      the same relative path) and fastembed post-processes the output as it does for that model.
      With ``pooling`` set, the folder is a model of the user's own, registered with fastembed
      through ``TextEmbedding.add_custom_model`` (pooling as given, L2 normalisation) under a name
      derived from the settings (``engram-custom/embed-<hash>``; fastembed keeps such
      registrations per process).

    Nothing is loaded in ``__init__``: the model is found, and its session opened, on the first
    :meth:`embed` (or :meth:`load`), in a worker thread; concurrent first calls open it once. On
    loading, one short text is embedded to check that the output fits (a ``(1, dims)`` vector of
    the expected length). Inference runs in worker threads, ``batch_size`` texts per onnxruntime
    run, texts sorted by length so that batches carry little padding; rows come back in input
    order, float32, L2-normalised.

    ``kind="query"`` goes through fastembed's ``query_embed`` and ``kind="document"`` through
    ``passage_embed``: the two differ for models that embed queries differently (e.g.
    jina-embeddings-v3's tasks) and are the same vectors for symmetric models.

    Capabilities: ``"semantic"`` (fastembed's models are trained sentence encoders), and
    ``"offline"`` when the model never needs the network (``model_path`` is set, or
    ``local_files_only``).

    URL form: ``fastembed://ORG/NAME?threads=2`` (a model name), ``fastembed:///path/to/folder?pooling=none``
    (a folder; the path is taken as written after ``fastembed://``), or ``fastembed://`` (defaults).

    Args:
        config: a :class:`FastEmbedEmbedder.Config`; or pass its fields as keyword arguments.
    """

    class Config(SourceConfig):
        """Attributes:
        model: a model name fastembed knows (default ``sentence-transformers/all-MiniLM-L6-v2``,
            384 dimensions); with ``pooling`` set, only a label used in messages.
        model_path: a folder holding the model's files, loaded without any hub access.
        pooling: set it for a model of the user's own in ``model_path``: ``"mean"`` (mean over
            the attention mask of token embeddings ``(batch, seq, dims)``), ``"cls"`` (the first
            token's), ``"last_token"``, or ``"none"`` (the ONNX output already is ``(batch, dims)``,
            e.g. the local embedder's build).
        model_file: the ONNX file inside ``model_path`` for a model of the user's own (default
            ``model.onnx``, else ``onnx/model.onnx``, whichever exists).
        output_name: which ONNX output to use for a model of the user's own (default the first).
        dims: the expected vector length; checked when the model loads. Needed only to know
            ``dims`` before loading a model of the user's own.
        cache_dir: where fastembed keeps downloaded models (default: ``FASTEMBED_CACHE_PATH``, else
            ``fastembed_cache`` in the system's temporary folder).
        local_files_only: never download; use only what is in ``cache_dir``.
        threads: onnxruntime threads per session (intra- and inter-op); default onnxruntime's
            own choice (one per core).
        batch_size: texts per onnxruntime run.
        providers: onnxruntime execution providers, in order of preference (e.g.
            ``["CUDAExecutionProvider", "CPUExecutionProvider"]``); default fastembed's choice
            (CUDA when onnxruntime-gpu finds a GPU, else CPU).
        """

        model: str = Field("sentence-transformers/all-MiniLM-L6-v2", min_length=1)
        pooling: Pooling | None = None
        output_name: str | None = Field(None, min_length=1)
        dims: int | None = Field(None, ge=1)

        @model_validator(mode="after")
        def _rules(self) -> FastEmbedEmbedder.Config:
            own = [f for f in ("model_file", "output_name") if getattr(self, f) is not None]
            if own and self.pooling is None:
                raise ValueError(f"{' and '.join(own)} describe a model of your own: set pooling too")
            if self.pooling is not None and self.model_path is None:
                raise ValueError("pooling describes a model of your own: set model_path to its folder")
            return self

    capabilities = frozenset({"semantic"})

    def __init__(self, config: Config | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._dims: int | None = None

    @property
    def dims(self) -> int:
        """Length of every vector.

        Known without loading when fastembed describes the model (a model name without
        ``pooling``) or the config gives ``dims``; otherwise this loads the model, blocking the
        caller (call ``await load()`` first in async code).

        Raises:
            ConfigurationError / ProviderError: as :meth:`load`, when it has to load.
        """
        if self._dims is None:
            known = self.config.dims or self._plan().dims
            if known is None:
                self._load_sync()
            else:
                self._dims = known
        assert self._dims is not None
        return self._dims

    def _facade(self) -> Any:
        from fastembed import TextEmbedding

        return TextEmbedding

    def _plan(self) -> Plan:
        c = self.config
        if c.pooling is not None:
            model_file = find_model_file(c.model_path, c.model_file)
            settings = {"model": c.model, "pooling": c.pooling, "model_file": model_file,
                        "output_name": c.output_name, "dims": c.dims}
            return Plan(custom_name("embed", settings), model_file, [], custom=True, dims=c.dims)
        listing = self._facade().list_supported_models()
        desc = describe(listing, c.model)
        if desc is None:
            if c.model_path is not None:
                raise ConfigurationError(
                    f"fastembed does not know the model {c.model!r}; for a model of your own in model_path "
                    f"{c.model_path}, set pooling ('mean', 'cls', 'last_token' or 'none') and, optionally, dims"
                )
            raise unknown_model("text embedding", c.model, listing, "fastembed.TextEmbedding.list_supported_models()")
        return Plan(str(desc["model"]), str(desc["model_file"]), list(desc.get("additional_files") or []),
                    custom=False, dims=int(desc["dim"]))

    def _register(self, plan: Plan) -> None:
        from fastembed.common.model_description import ModelSource, PoolingType

        c = self.config
        pooling = getattr(PoolingType, {"none": "DISABLED"}.get(c.pooling or "none", str(c.pooling).upper()), None)
        if pooling is None:
            raise ConfigurationError(f"pooling {c.pooling!r} needs a newer fastembed than {fastembed_version()}")
        extra = {"output_name": c.output_name} if c.output_name is not None else {}
        try:
            self._facade().add_custom_model(
                model=plan.name,
                pooling=pooling,
                normalization=True,
                sources=ModelSource(hf=c.model),  # never fetched: a model of the user's own loads from model_path
                dim=c.dims or 0,  # fastembed only reports it (embedding_size); 0 = unknown until the model runs
                model_file=plan.model_file,
                description=f"engram: {c.model} ({c.pooling} pooling) from a local folder",
                **extra,
            )
        except TypeError as exc:  # a fastembed whose add_custom_model has no output_name
            raise ConfigurationError(f"output_name needs a newer fastembed than {fastembed_version()}: {exc}") from exc

    def _check(self, model: Any, plan: Plan, folder: Path | None) -> None:
        """Embed one short text and keep the vector length.

        Raises:
            ConfigurationError: the output does not fit (a folder, or a dims mismatch).
            ProviderError: a hub model fails to run.
        """
        c = self.config
        where = f"in {folder}" if folder is not None else repr(c.model)
        try:
            out = np.asarray(list(model.passage_embed(["engram"], batch_size=1)), dtype=np.float32)
            if out.ndim != 2 or out.shape[0] != 1 or out.shape[1] < 1:
                raise ValueError(f"one text gave an array of shape {out.shape}, not (1, dims)")
        except Exception as exc:
            if folder is None:
                raise ProviderError(f"the fastembed model {where} fails to embed: {exc}", provider=PROVIDER) from exc
            if plan.custom:
                hint = "; check pooling and output_name against the ONNX file's outputs"
            else:
                hint = (
                    f"; fastembed post-processes {c.model!r} as its hub files need, so the folder must hold "
                    "those files. For another ONNX file set pooling: 'none' if it returns pooled (batch, dims) "
                    "sentence embeddings (e.g. the local embedder's build), 'mean' or 'cls' for token "
                    "embeddings (batch, seq, dims), with output_name if they are not its first output"
                )
            raise ConfigurationError(f"the fastembed model {where} does not give sentence embeddings: {exc}{hint}") from exc
        width = int(out.shape[1])
        if plan.dims is not None and width != plan.dims:
            said = "the config says" if c.dims is not None else f"fastembed describes {c.model!r} with"
            raise ConfigurationError(f"the fastembed model {where} returns {width} dimensions, but {said} {plan.dims}")
        self._dims = width

    async def embed(self, texts: Sequence[str], *, kind: Literal["document", "query"] = "document") -> np.ndarray:
        """Embed a batch of texts.

        Args:
            texts: any strings (the empty string too); texts longer than the tokenizer's
                ``model_max_length`` are truncated.
            kind: ``"document"`` (fastembed's ``passage_embed``) or ``"query"`` (``query_embed``).

        Returns:
            ``(len(texts), dims)`` float32, each row L2-normalised (so a dot product is the cosine),
            in the order of ``texts``.

        Raises:
            InvalidInputError: ``texts`` is a string or holds a non-string; an unknown ``kind``.
            ConfigurationError: on first use, an unknown model, an incomplete ``model_path`` or a
                model that does not fit the settings.
            ProviderError: the model cannot be loaded (or downloaded), or inference failed.
        """
        if kind not in ("document", "query"):
            raise InvalidInputError(f"kind must be 'document' or 'query'; got {kind!r}")
        items = check_texts(texts, "embed()")
        model = await self._loaded()
        dims = self.dims
        out = np.empty((len(items), dims), dtype=np.float32)
        for idx in length_batches(items, self.config.batch_size):
            out[idx] = await anyio.to_thread.run_sync(self._run, model, [items[i] for i in idx], kind, dims)
        return out

    @staticmethod
    def _run(model: Any, texts: list[str], kind: str, dims: int) -> np.ndarray:
        embed = model.query_embed if kind == "query" else model.passage_embed
        try:
            res = np.asarray(list(embed(texts, batch_size=len(texts))), dtype=np.float32)
        except Exception as exc:
            raise ProviderError(f"fastembed inference failed: {type(exc).__name__}: {exc}", provider=PROVIDER) from exc
        if res.shape != (len(texts), dims):
            raise ProviderError(
                f"fastembed returned shape {res.shape} for {len(texts)} texts, expected ({len(texts)}, {dims})",
                provider=PROVIDER,
            )
        res /= np.maximum(np.linalg.norm(res, axis=1, keepdims=True), 1e-12)
        return res
