"""Every LLM in engram-llm against :class:`engram.testing.LLMConformance`.

``openai`` and ``anthropic`` talk to :class:`engram.testing.llm_server.LLMServer` on 127.0.0.1 (the
``llm_server`` fixture, registered in ``conftest.py``), configured with a short timeout and no
retries so that the failure checks stay fast; ``scripted`` answers in-process.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import pytest
from engram.core import LLMResponse
from engram.llm.anthropic import AnthropicLLM
from engram.llm.openai import OpenAILLM
from engram.llm.scripted import ScriptedLLM
from engram.testing import LLMConformance, ScriptedReply, script_llm_server
from engram.testing.llm_server import LLMServer

FAST = {"timeout": 0.5, "total_timeout": 5.0, "max_retries": 0}


class ServerScript:
    """``script`` for providers that talk to the ``llm_server`` their fixture stored on the class."""

    server: LLMServer

    async def script(self, llm: Any, replies: list[ScriptedReply]) -> None:
        script_llm_server(self.server, replies)


class TestOpenAILLM(ServerScript, LLMConformance):
    @pytest.fixture
    async def llm(self, llm_server: LLMServer):
        self.server = llm_server
        client = OpenAILLM(base_url=llm_server.openai_url, model="test-model", **FAST)
        yield client
        await client.aclose()


class TestAnthropicLLM(ServerScript, LLMConformance):
    @pytest.fixture
    async def llm(self, llm_server: LLMServer):
        self.server = llm_server
        client = AnthropicLLM(base_url=llm_server.anthropic_url, model="claude-test", api_key="sk-ant-test", **FAST)
        yield client
        await client.aclose()


class TestScriptedLLM(LLMConformance):
    @pytest.fixture
    async def llm(self):
        self.queue: deque[ScriptedReply] = deque()

        def respond(messages: list[dict[str, Any]], options: dict[str, Any]) -> LLMResponse:
            return self.queue.popleft().respond("scripted")

        client = ScriptedLLM(respond=respond)
        yield client
        await client.aclose()

    async def script(self, llm: ScriptedLLM, replies: list[ScriptedReply]) -> None:
        self.queue.extend(replies)

