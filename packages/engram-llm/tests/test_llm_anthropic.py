"""The ``anthropic`` LLM against a real HTTP server on 127.0.0.1 (:mod:`engram.testing.llm_server`)."""

from __future__ import annotations

import json
import time

import anyio
import pytest
from engram.core import Registry, errors
from engram.core._protocols import LLM
from engram.llm.anthropic import JSON_TOOL, AnthropicLLM
from engram.testing.llm_server import Fault, LLMServer, Reply

USER = [{"role": "user", "content": "Where do I live?"}]
SCHEMA = {
    "type": "object",
    "properties": {"facts": {"type": "array", "items": {"type": "string"}}},
    "required": ["facts"],
}
TOOL = {
    "type": "function",
    "function": {
        "name": "add_memory",
        "description": "Store a fact",
        "parameters": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
    },
}


def _make(server: LLMServer, **kw) -> AnthropicLLM:
    kw.setdefault("base_url", server.anthropic_url)
    kw.setdefault("api_key", "sk-ant-test")
    kw.setdefault("model", "claude-test")
    kw.setdefault("backoff_initial", 0.01)
    kw.setdefault("backoff_max", 0.05)
    kw.setdefault("timeout", 5.0)
    return AnthropicLLM(**kw)


async def test_text_reply_headers_system_split_and_usage(llm_server):
    llm_server.api_key = "sk-ant-test"
    llm_server.reply(Reply.text("You live in Lisbon.", input_tokens=20, output_tokens=6))
    async with _make(llm_server, beta=["prompt-caching-2024-07-31"]) as llm:
        assert isinstance(llm, LLM)
        assert llm.capabilities >= {"json", "tools", "remote"}
        out = await llm.generate(
            [
                {"role": "system", "content": "You are a memory assistant."},
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "I moved."},
                {"role": "user", "content": "Where do I live?"},
            ],
            temperature=0.0,
        )
        assert out.text == "You live in Lisbon." and out.tool_calls == []
        assert (out.input_tokens, out.output_tokens, out.model) == (20, 6, "claude-test")
        assert (llm.usage.input_tokens, llm.usage.output_tokens, llm.usage.calls) == (20, 6, 1)
    req = llm_server.last
    assert req.path == "/v1/messages"
    assert req.headers["x-api-key"] == "sk-ant-test" and req.headers["anthropic-version"] == "2023-06-01"
    assert req.headers["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert "authorization" not in req.headers
    assert req.body["system"] == "You are a memory assistant.\n\nBe brief."
    assert (
        req.body["max_tokens"] == 4096
        and req.body["temperature"] == 0.0
        and req.body["model"] == "claude-test"
    )
    # two user turns in a row are merged into one message of two text blocks
    assert req.body["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "I moved."}, {"type": "text", "text": "Where do I live?"}],
        }
    ]
    assert "tools" not in req.body and "tool_choice" not in req.body


async def test_json_object_through_a_forced_tool(llm_server):
    llm_server.reply(Reply.json({"facts": ["lives in Lisbon"]}))
    llm = _make(llm_server)
    out = await llm.generate(USER, response_format={"type": "json_object"})
    assert json.loads(out.text) == {"facts": ["lives in Lisbon"]}
    assert out.tool_calls[0]["name"] == JSON_TOOL and out.tool_calls[0]["arguments"] == {
        "facts": ["lives in Lisbon"]
    }
    body = llm_server.last.body
    assert body["tools"] == [
        {
            "name": JSON_TOOL,
            "description": "Give the answer as a JSON object.",
            "input_schema": {"type": "object", "additionalProperties": True},
        }
    ]
    assert body["tool_choice"] == {"type": "tool", "name": JSON_TOOL}
    await llm.aclose()


async def test_json_schema_through_a_forced_tool(llm_server):
    llm_server.reply(Reply.json({"facts": ["a"]}), Reply.json([1, 2, 3]))
    llm = _make(llm_server)
    rf = {"type": "json_schema", "json_schema": {"name": "extract_facts", "schema": SCHEMA}}
    out = await llm.generate(USER, response_format=rf)
    assert json.loads(out.text) == {"facts": ["a"]}
    assert out.tool_calls[0]["name"] == "extract_facts"
    body = llm_server.last.body
    assert body["tools"][0]["name"] == "extract_facts" and body["tools"][0]["input_schema"] == SCHEMA
    assert body["tool_choice"] == {"type": "tool", "name": "extract_facts"}
    # a schema whose top level is not an object is wrapped, and unwrapped on the way back
    out = await llm.generate(USER, response_format={"type": "array", "items": {"type": "integer"}})
    assert json.loads(out.text) == [1, 2, 3]
    schema = llm_server.last.body["tools"][0]["input_schema"]
    assert schema == {
        "type": "object",
        "properties": {"value": {"type": "array", "items": {"type": "integer"}}},
        "required": ["value"],
    }
    await llm.aclose()


async def test_json_asked_but_answered_as_text_is_extracted(llm_server):
    # a server or model that ignores tool_choice and answers in prose
    llm_server.reply(Reply.text('Sure:\n```json\n{"facts": []}\n```'))
    llm = _make(llm_server)
    out = await llm.generate(USER, response_format={"type": "json_object"})
    assert out.text == '{"facts": []}'
    await llm.aclose()


async def test_tools_are_translated_and_tool_use_parsed(llm_server):
    llm_server.reply(Reply.tool_call("add_memory", {"text": "lives in Lisbon"}, text="Let me store that."))
    llm = _make(llm_server)
    out = await llm.generate(USER, tools=[TOOL])
    assert out.text == "Let me store that."
    assert out.tool_calls[0]["name"] == "add_memory" and out.tool_calls[0]["arguments"] == {
        "text": "lives in Lisbon"
    }
    assert out.tool_calls[0]["id"].startswith("toolu_")
    body = llm_server.last.body
    assert body["tools"] == [
        {"name": "add_memory", "description": "Store a fact", "input_schema": TOOL["function"]["parameters"]}
    ]
    assert "tool_choice" not in body
    await llm.aclose()


async def test_tool_call_history_is_translated(llm_server):
    llm_server.reply("Stored.")
    llm = _make(llm_server)
    await llm.generate(
        [
            {"role": "user", "content": "I live in Lisbon."},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "add_memory", "arguments": '{"text": "lives in Lisbon"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
        ],
        tools=[TOOL],
    )
    assert llm_server.last.body["messages"] == [
        {"role": "user", "content": "I live in Lisbon."},
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "call_1",
                    "name": "add_memory",
                    "input": {"text": "lives in Lisbon"},
                }
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": [{"type": "text", "text": "ok"}]}
            ],
        },
    ]
    await llm.aclose()


async def test_only_a_system_prompt_is_sent_as_the_user_turn(llm_server):
    llm_server.reply("ok")
    llm = _make(llm_server)
    await llm.generate([{"role": "system", "content": "Summarise: the user likes tea."}])
    body = llm_server.last.body
    assert "system" not in body
    assert body["messages"] == [{"role": "user", "content": "Summarise: the user likes tea."}]
    await llm.aclose()


async def test_errors_keep_the_servers_message(llm_server):
    llm_server.api_key = "right"
    llm = _make(llm_server, api_key="wrong")
    with pytest.raises(
        errors.ProviderError, match=r"HTTP 401: invalid x-api-key \(authentication_error\)"
    ) as info:
        await llm.generate(USER)
    assert info.value.provider == "anthropic"
    llm_server.api_key = None
    llm_server.reply(Fault.status(400, "messages: text content blocks must be non-empty"))
    with pytest.raises(
        errors.ProviderError, match=r"text content blocks must be non-empty.*invalid_request_error"
    ):
        await llm.generate(USER)
    assert len(llm_server.requests) == 2  # neither retried
    await llm.aclose()


async def test_retries_on_overloaded_and_rate_limits(llm_server):
    llm_server.reply(
        Fault.status(529, "Overloaded"),
        Fault.rate_limited(retry_after=None, retry_after_ms=250),
        Fault.status(500),
        "done",
    )
    llm = _make(llm_server, backoff_initial=0.001)
    t0 = time.monotonic()
    assert (await llm.generate(USER)).text == "done"
    assert time.monotonic() - t0 >= 0.25
    assert len(llm_server.requests) == 4
    await llm.aclose()


async def test_timeouts_and_broken_bodies(llm_server):
    llm_server.reply(Fault.hang(5))
    llm = _make(llm_server, timeout=0.2, max_retries=0)
    with pytest.raises(errors.ProviderTimeoutError):
        await llm.generate(USER)
    llm_server.reply(Fault.truncated(), Fault.not_json(), "whole")
    llm = _make(llm_server)
    assert (await llm.generate(USER)).text == "whole"
    await llm.aclose()


def test_config_url_and_registry():
    llm = AnthropicLLM.from_url(
        "anthropic://:sk-ant-1@localhost:8080?tls=false&model=claude-x&max_tokens=100"
    )
    assert llm.url == "http://localhost:8080/v1/messages" and llm.model == "claude-x"
    assert llm.config.max_tokens == 100
    assert llm.config.api_key is not None and llm.config.api_key.get_secret_value() == "sk-ant-1"
    assert "sk-ant-1" not in repr(llm.config)
    assert AnthropicLLM.from_url("anthropic://").url == "https://api.anthropic.com/v1/messages"
    assert AnthropicLLM(base_url="https://proxy.example/v1").url == "https://proxy.example/v1/messages"
    with pytest.raises(errors.ConfigurationError):
        AnthropicLLM.from_url("anthropic://host?nonsense=1")
    with pytest.raises(errors.ConfigurationError):
        AnthropicLLM(max_tokens=0)
    built = Registry().create("llm", {"provider": "anthropic", "config": {"model": "claude-y"}})
    assert isinstance(built, AnthropicLLM) and built.model == "claude-y"


async def test_concurrent_calls_overlap():
    with LLMServer(delay=0.2, default="hi") as server:
        llm = _make(server)
        t0 = time.monotonic()
        async with anyio.create_task_group() as tg:
            for _ in range(16):
                tg.start_soon(llm.generate, USER)
        assert time.monotonic() - t0 < 1.5
        assert llm.usage.calls == 16
        await llm.aclose()
