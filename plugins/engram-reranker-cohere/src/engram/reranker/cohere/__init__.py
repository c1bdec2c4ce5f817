"""``cohere``: an engram reranker on Cohere's ``POST /v2/rerank`` API through the official SDK
(``cohere.AsyncClientV2``), or on any server that speaks it (base URL configurable), with batching of
long lists, retries (``Retry-After`` honoured, full-jitter backoff) and a bounded total time."""

from ._cohere import MAX_BAD_BODY_RETRIES, RETRY_STATUS, CohereAPIError, CohereReranker

__all__ = ["MAX_BAD_BODY_RETRIES", "RETRY_STATUS", "CohereAPIError", "CohereReranker"]
