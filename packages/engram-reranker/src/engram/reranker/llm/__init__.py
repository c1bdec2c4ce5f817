"""``llm``: an engram reranker that ranks every candidate in one listwise call to any engram LLM
(RankGPT's approach, Sun et al. 2023): the query and the numbered candidates in, ``{"ranking": [...]}``
out, relevance ``1 - position / n``."""

from ._llm import SYSTEM_PROMPT, LLMReranker, parse_ranking

__all__ = ["SYSTEM_PROMPT", "LLMReranker", "parse_ranking"]
