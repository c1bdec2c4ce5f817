"""``fastembed``: an engram embedder and reranker on FastEmbed (ONNX on onnxruntime, no torch).

:class:`FastEmbedEmbedder` (entry point ``fastembed`` in ``engram.embedders``) and
:class:`FastEmbedReranker` (``fastembed`` in ``engram.rerankers``) load a model fastembed knows by
name (downloaded from the Hugging Face hub, or found in fastembed's cache), or the files in a local
folder (``model_path``) with no hub access at all.
"""

from ._common import CUSTOM_PREFIX, TOKENIZER_FILES
from ._embedder import FastEmbedEmbedder
from ._reranker import FastEmbedReranker

__all__ = ["CUSTOM_PREFIX", "TOKENIZER_FILES", "FastEmbedEmbedder", "FastEmbedReranker"]
