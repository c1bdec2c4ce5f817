"""``openai``: embeddings from any OpenAI-compatible ``POST {base_url}/embeddings`` server, over httpx,
with batching, retries (exponential backoff with jitter, ``Retry-After``) and a bounded total time."""

from ._openai import KNOWN_DIMS, OpenAIEmbedder

__all__ = ["KNOWN_DIMS", "OpenAIEmbedder"]
