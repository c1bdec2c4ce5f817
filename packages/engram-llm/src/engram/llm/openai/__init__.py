"""``openai``: a chat model behind any OpenAI-compatible ``POST {base_url}/chat/completions`` server
(OpenAI, Azure OpenAI, Ollama, vLLM, LM Studio, Groq, Together, DeepSeek, ...), over httpx, with JSON
mode / structured output and tool calls where the server has them, a fallback where it does not,
retries (exponential backoff with full jitter, ``Retry-After``) and a bounded total time."""

from .._common import TokenUsage
from ._openai import PRESETS, OpenAILLM, Preset

__all__ = ["PRESETS", "OpenAILLM", "Preset", "TokenUsage"]
