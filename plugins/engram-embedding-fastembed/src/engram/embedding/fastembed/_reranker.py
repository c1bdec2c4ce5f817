from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
    find_model_file,
    length_batches,
    unknown_model,
)


class FastEmbedReranker(FastEmbedModel):
    """Cross-encoder reranking from `FastEmbed <https://github.com/qdrant/fastembed>`_
    (``fastembed.rerank.cross_encoder.TextCrossEncoder``, ONNX on onnxruntime, no torch).

    A cross-encoder reads the query and one document together (``[CLS] query [SEP] document
    [SEP]`` for BERT models) and returns one relevance logit for the pair (Nogueira & Cho, 2019,
    "Passage Re-ranking with BERT"). fastembed feeds ``input_ids`` and, when the ONNX graph takes
    them, ``attention_mask`` and ``token_type_ids``, and takes the first column of the first
    output as the score.

    The model comes, as for :class:`~engram.embedding.fastembed.FastEmbedEmbedder`, either by
    name from fastembed's list (``TextCrossEncoder.list_supported_models()``; downloaded from the
    Hugging Face hub into ``cache_dir``, or found there), or from a folder (``model_path``) with no
    hub access: laid out as the named model's hub repository (``onnx/model.onnx`` for the default
    ``Xenova/ms-marco-MiniLM-L-6-v2``) plus ``tokenizer.json`` and ``tokenizer_config.json``. A
    name fastembed does not know, or ``model_file``, makes the folder a model of the user's own,
    registered through ``TextCrossEncoder.add_custom_model`` under ``engram-custom/rerank-<hash>``.

    Nothing is loaded in ``__init__``; the first :meth:`rerank` (or :meth:`load`) opens the
    model in a worker thread, once even when first calls race, and scores one pair to check the
    output. Pairs are scored in worker threads, ``batch_size`` documents per onnxruntime run.

    Capabilities: ``"pointwise"`` (each pair is scored on its own; padding is masked, so a
    document's score does not depend on its batch), ``"semantic"`` (fastembed's cross-encoders are
    trained for relevance), and ``"offline"`` with ``model_path`` or ``local_files_only``.

    URL form: ``fastembed://ORG/NAME?batch_size=32`` or ``fastembed:///path/to/folder``.

    Args:
        config: a :class:`FastEmbedReranker.Config`; or pass its fields as keyword arguments.
    """

    class Config(SourceConfig):
        """Attributes:
        model: a cross-encoder fastembed knows (default ``Xenova/ms-marco-MiniLM-L-6-v2``); with
            ``model_path``, any other name marks a model of the user's own.
        model_path: a folder holding the model's files, loaded without any hub access.
        model_file: the ONNX file inside ``model_path`` (default: the named model's; for a model of
            the user's own ``model.onnx``, else ``onnx/model.onnx``, whichever exists).
        cache_dir: where fastembed keeps downloaded models (default: ``FASTEMBED_CACHE_PATH``, else
            ``fastembed_cache`` in the system's temporary folder).
        local_files_only: never download; use only what is in ``cache_dir``.
        threads: onnxruntime threads per session; default onnxruntime's own choice.
        batch_size: query-document pairs per onnxruntime run.
        providers: onnxruntime execution providers, in order of preference.
        """

        model: str = Field("Xenova/ms-marco-MiniLM-L-6-v2", min_length=1)

        @model_validator(mode="after")
        def _rules(self) -> FastEmbedReranker.Config:
            if self.model_file is not None and self.model_path is None:
                raise ValueError("model_file names a file in model_path: set model_path too")
            return self

    capabilities = frozenset({"pointwise", "semantic"})

    def _facade(self) -> Any:
        from fastembed.rerank.cross_encoder import TextCrossEncoder

        return TextCrossEncoder

    def _plan(self) -> Plan:
        c = self.config
        listing = self._facade().list_supported_models()
        desc = describe(listing, c.model)
        if desc is not None and c.model_file is None:
            return Plan(str(desc["model"]), str(desc["model_file"]), list(desc.get("additional_files") or []),
                        custom=False)
        if c.model_path is None:
            raise unknown_model("cross-encoder", c.model, listing, "TextCrossEncoder.list_supported_models()")
        model_file = find_model_file(c.model_path, c.model_file)
        return Plan(custom_name("rerank", {"model": c.model, "model_file": model_file}), model_file, [], custom=True)

    def _register(self, plan: Plan) -> None:
        from fastembed.common.model_description import ModelSource

        self._facade().add_custom_model(
            model=plan.name,
            sources=ModelSource(hf=self.config.model),  # never fetched: loaded from model_path
            model_file=plan.model_file,
            description=f"engram: {self.config.model} from a local folder",
        )

    def _check(self, model: Any, plan: Plan, folder: Path | None) -> None:
        """Score one pair.

        Raises:
            ConfigurationError: a folder whose model does not give a score per pair.
            ProviderError: a hub model fails to run.
        """
        try:
            self._score(model, "engram", ["engram"])
        except ProviderError as exc:
            if folder is None:
                raise
            raise ConfigurationError(
                f"the fastembed cross-encoder in {folder} does not score pairs: {exc}; it must take input_ids "
                "(and attention_mask, token_type_ids when it declares them) and return (batch, k) logits "
                "whose first column is the relevance"
            ) from exc

    @staticmethod
    def _score(model: Any, query: str, documents: list[str]) -> np.ndarray:
        try:
            scores = np.fromiter(
                model.rerank(query, documents, batch_size=len(documents)), dtype=np.float64, count=len(documents)
            )
        except Exception as exc:
            raise ProviderError(f"fastembed reranking failed: {type(exc).__name__}: {exc}", provider=PROVIDER) from exc
        if not np.isfinite(scores).all():
            raise ProviderError("fastembed reranking returned a score that is not a finite number", provider=PROVIDER)
        return scores

    async def rerank(
        self, query: str, documents: Sequence[str], *, top_n: int | None = None
    ) -> list[tuple[int, float]]:
        """Score every document against the query and order them, most relevant first.

        Args:
            query: the question; any string.
            documents: the candidates; texts longer than the tokenizer's ``model_max_length``
                (query and document together) are truncated.
            top_n: return only the best ``top_n`` (a positive integer); ``None`` returns them all.

        Returns:
            ``(index into documents, score)`` pairs, highest score first, ties broken by the lower
            index; ``min(top_n, len(documents))`` of them. The score is the model's raw output
            (a logit for the ms-marco and BGE cross-encoders: unbounded, higher is more relevant).
            ``[]`` for no documents, without loading the model.

        Raises:
            InvalidInputError: ``query`` is not a string, ``documents`` is a string or holds a
                non-string, or ``top_n`` is not a positive integer.
            ConfigurationError: on first use, an unknown model, an incomplete ``model_path`` or a
                model whose output is not a score per pair.
            ProviderError: the model cannot be loaded (or downloaded), or inference failed.
        """
        if not isinstance(query, str):
            raise InvalidInputError(f"rerank() takes a string query; got {type(query).__name__}")
        docs = check_texts(documents, "rerank()")
        if top_n is not None and (not isinstance(top_n, int) or isinstance(top_n, bool) or top_n < 1):
            raise InvalidInputError(f"top_n must be a positive integer or None; got {top_n!r}")
        if not docs:
            return []
        model = await self._loaded()
        scores = np.empty(len(docs), dtype=np.float64)
        for idx in length_batches(docs, self.config.batch_size):
            scores[idx] = await anyio.to_thread.run_sync(self._score, model, query, [docs[i] for i in idx])
        order = np.lexsort((np.arange(len(docs)), -scores))[:top_n]
        return [(int(i), float(scores[i])) for i in order]
