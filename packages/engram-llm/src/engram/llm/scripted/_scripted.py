from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import anyio
from engram.core import LLMResponse
from engram.core.errors import ProviderError
from pydantic import BaseModel, ConfigDict, Field

from .._common import check_messages


class ScriptedLLM:
    """Replies from a list (in order) or from a function of the request.

    Args:
        replies: strings or :class:`LLMResponse` objects returned one per call, in order; when
            they run out the LLM raises :class:`ProviderError` (or repeats the last with ``cycle``).
        respond: instead of ``replies``, a function ``(messages, options) -> str | LLMResponse``.
        delay: seconds to wait before each reply (to model a slow server).

    Every call is kept in ``calls`` as ``{"messages": [...], **options}`` for assertions.
    """

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        replies: list[str] = Field(default_factory=list)
        cycle: bool = False
        delay: float = Field(0.0, ge=0)
        model: str = "scripted"

    capabilities = frozenset({"json", "tools"})

    def __init__(
        self,
        config: Config | None = None,
        *,
        replies: Sequence[str | LLMResponse] | None = None,
        respond: Callable[[list[dict[str, Any]], dict[str, Any]], str | LLMResponse] | None = None,
        cycle: bool = False,
        delay: float = 0.0,
    ) -> None:
        self.config = config or self.Config(cycle=cycle, delay=delay)
        self._replies: list[str | LLMResponse] = list(replies if replies is not None else self.config.replies)
        self._respond = respond
        self._next = 0
        self.calls: list[dict[str, Any]] = []

    async def generate(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        response_format: dict[str, Any] | None = None,
        tools: Sequence[dict[str, Any]] | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> LLMResponse:
        options = {
            "response_format": response_format,
            "tools": tools,
            "temperature": temperature,
            "max_tokens": max_tokens,
        }
        msgs = check_messages(messages)
        self.calls.append({"messages": msgs, **options})
        if self.config.delay:
            await anyio.sleep(self.config.delay)
        if self._respond is not None:
            reply = self._respond(msgs, options)
        else:
            if self._next >= len(self._replies):
                if not (self.config.cycle and self._replies):
                    raise ProviderError("scripted LLM has no replies left", provider="scripted")
                self._next = len(self._replies) - 1
            reply = self._replies[self._next]
            self._next += 1
        if isinstance(reply, LLMResponse):
            return reply
        prompt_chars = sum(len(str(m.get("content", ""))) for m in msgs)
        return LLMResponse(
            text=str(reply),
            model=self.config.model,
            input_tokens=prompt_chars // 4,
            output_tokens=len(str(reply)) // 4,
        )

    async def aclose(self) -> None:
        return None
