"""``anthropic``: Claude through Anthropic's native Messages API (``POST /v1/messages``), over httpx,
with tool use for structured output, retries (exponential backoff with full jitter, ``Retry-After``,
529 "overloaded") and a bounded total time."""

from .._common import TokenUsage
from ._anthropic import JSON_TOOL, AnthropicLLM

__all__ = ["JSON_TOOL", "AnthropicLLM", "TokenUsage"]
