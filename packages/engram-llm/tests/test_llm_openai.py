"""The ``openai`` LLM against a real HTTP server on 127.0.0.1 (:mod:`engram.testing.llm_server`)."""

from __future__ import annotations

import json
import socket
import time

import anyio
import pytest
from engram.core import Registry, errors
from engram.core._protocols import LLM
from engram.llm.openai import PRESETS, OpenAILLM
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


def _make(server: LLMServer, **kw) -> OpenAILLM:
    kw.setdefault("base_url", server.openai_url)
    kw.setdefault("model", "test-model")
    kw.setdefault("backoff_initial", 0.01)
    kw.setdefault("backoff_max", 0.05)
    kw.setdefault("timeout", 5.0)
    return OpenAILLM(**kw)


# -- success --------------------------------------------------------------------------------------


async def test_text_reply_request_shape_and_usage(llm_server):
    llm_server.reply(Reply.text("You live in Lisbon.", input_tokens=12, output_tokens=5), "Second.")
    async with _make(llm_server, temperature=0.2) as llm:
        assert isinstance(llm, LLM)
        assert llm.capabilities >= {"json", "tools", "remote"}
        out = await llm.generate([{"role": "system", "content": "Be brief."}, *USER], max_tokens=50)
        assert out.text == "You live in Lisbon." and out.tool_calls == []
        assert out.model == "test-model" and (out.input_tokens, out.output_tokens) == (12, 5)
        out2 = await llm.generate(USER, temperature=0.0)
        assert out2.text == "Second."
        assert llm.usage.calls == 2
        assert llm.usage.input_tokens == 12 + out2.input_tokens
        assert llm.usage.output_tokens == 5 + out2.output_tokens
    first, second = llm_server.requests
    assert first.path == "/v1/chat/completions"
    assert first.body == {
        "model": "test-model",
        "messages": [{"role": "system", "content": "Be brief."}, *USER],
        "temperature": 0.2,
        "max_tokens": 50,
    }
    assert second.body["temperature"] == 0.0 and "max_tokens" not in second.body
    assert "authorization" not in first.headers
    assert first.headers["content-type"] == "application/json"


async def test_json_mode(llm_server):
    llm_server.reply(Reply.json({"facts": ["lives in Lisbon"]}), Reply.text('```json\n{"facts": []}\n```'))
    llm = _make(llm_server)
    out = await llm.generate(USER, response_format={"type": "json_object"})
    assert json.loads(out.text) == {"facts": ["lives in Lisbon"]}
    req = llm_server.last
    assert req.body["response_format"] == {"type": "json_object"}
    # OpenAI requires the word JSON in the messages in JSON mode: the instruction is added.
    assert req.messages[0]["role"] == "system" and "JSON" in req.messages[0]["content"]
    out = await llm.generate(USER, response_format={"type": "json_object"})
    assert out.text == '{"facts": []}'  # code fences removed when JSON was asked for
    await llm.aclose()


async def test_structured_output(llm_server):
    llm_server.reply(Reply.json({"facts": ["a"]}), Reply.json({"facts": ["b"]}))
    llm = _make(llm_server)
    rf = {"type": "json_schema", "json_schema": {"name": "facts", "schema": SCHEMA, "strict": True}}
    out = await llm.generate(USER, response_format=rf)
    assert json.loads(out.text) == {"facts": ["a"]}
    assert llm_server.last.body["response_format"] == rf
    assert llm_server.last.messages == USER  # no prompt instruction needed
    out = await llm.generate(USER, response_format=SCHEMA)  # a bare schema
    assert json.loads(out.text) == {"facts": ["b"]}
    assert llm_server.last.body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": SCHEMA},
    }
    await llm.aclose()


async def test_tool_calls(llm_server):
    llm_server.reply(
        Reply.tool_calls(
            [
                {"name": "add_memory", "arguments": {"text": "lives in Lisbon"}},
                {"name": "add_memory", "arguments": {"text": "likes tea"}},
            ]
        ),
        Reply.tool_call("add_memory", {"text": "x"}, text="Storing it."),
    )
    llm = _make(llm_server)
    out = await llm.generate(USER, tools=[TOOL])
    assert out.text == ""
    assert [(c["name"], c["arguments"]) for c in out.tool_calls] == [
        ("add_memory", {"text": "lives in Lisbon"}),
        ("add_memory", {"text": "likes tea"}),
    ]
    assert all(c["id"].startswith("call_") for c in out.tool_calls)
    assert llm_server.last.body["tools"] == [TOOL]
    # the short form {"name", "parameters"} is accepted and sent in OpenAI's form
    out = await llm.generate(USER, tools=[TOOL["function"]])
    assert out.text == "Storing it." and out.tool_calls[0]["arguments"] == {"text": "x"}
    assert llm_server.last.body["tools"] == [TOOL]
    await llm.aclose()


async def test_tool_arguments_that_are_not_json_are_kept_raw(llm_server):
    def broken(req):
        return Fault.status(
            200,
            body={
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "tool_calls",
                        "message": {
                            "role": "assistant",
                            "content": None,
                            "tool_calls": [
                                {
                                    "id": "c1",
                                    "type": "function",
                                    "function": {"name": "add_memory", "arguments": "{not json"},
                                }
                            ],
                        },
                    }
                ],
                "model": "m",
            },
        )

    llm_server.reply(broken)
    llm = _make(llm_server)
    out = await llm.generate(USER, tools=[TOOL])
    assert out.tool_calls == [
        {"name": "add_memory", "arguments": {}, "id": "c1", "raw_arguments": "{not json"}
    ]
    assert out.input_tokens is None  # no usage reported
    await llm.aclose()


# -- presets, URLs, headers -------------------------------------------------------------------


def test_preset_urls():
    assert OpenAILLM().url == "https://api.openai.com/v1/chat/completions"
    assert OpenAILLM().model == "gpt-4o-mini"
    expected = {
        "ollama": "http://localhost:11434/v1/chat/completions",
        "vllm": "http://localhost:8000/v1/chat/completions",
        "lmstudio": "http://localhost:1234/v1/chat/completions",
        "groq": "https://api.groq.com/openai/v1/chat/completions",
        "together": "https://api.together.xyz/v1/chat/completions",
        "deepseek": "https://api.deepseek.com/v1/chat/completions",
    }
    for preset, url in expected.items():
        assert OpenAILLM(preset=preset, model="m").url == url, preset
    assert set(PRESETS) == {"openai", "azure", *expected}
    assert OpenAILLM(preset="deepseek").model == "deepseek-chat"
    assert OpenAILLM(preset="deepseek").supports["json_schema"] is False  # known: JSON mode only
    assert (
        OpenAILLM(preset="ollama", base_url="http://gpu-box:11434/v1").url
        == "http://gpu-box:11434/v1/chat/completions"
    )
    with pytest.raises(errors.ConfigurationError, match="needs a model"):
        OpenAILLM(preset="vllm")
    with pytest.raises(errors.ConfigurationError, match="azure_endpoint"):
        OpenAILLM(preset="azure", model="gpt-4o")


async def test_bearer_auth_and_headers(llm_server):
    llm_server.api_key = "sk-test-123"
    llm_server.reply("ok")
    llm = _make(
        llm_server, api_key="sk-test-123", organization="org-1", project="proj-1", headers={"X-Extra": "yes"}
    )
    assert "sk-test-123" not in repr(llm.config) and "sk-test-123" not in repr(llm)
    assert (await llm.generate(USER)).text == "ok"
    h = llm_server.last.headers
    assert h["authorization"] == "Bearer sk-test-123"
    assert h["openai-organization"] == "org-1" and h["openai-project"] == "proj-1" and h["x-extra"] == "yes"
    await llm.aclose()


async def test_wrong_key_is_not_retried_and_keeps_the_message(llm_server):
    llm_server.api_key = "sk-right"
    llm = _make(llm_server, api_key="sk-wrong")
    with pytest.raises(
        errors.ProviderError, match=r"HTTP 401: Incorrect API key provided.*invalid_api_key"
    ) as info:
        await llm.generate(USER)
    assert info.value.provider == "openai"
    assert len(llm_server.requests) == 1
    await llm.aclose()


async def test_azure_preset(llm_server):
    llm_server.api_key = "azure-key"
    llm_server.reply("from azure")
    llm = OpenAILLM(
        preset="azure",
        azure_endpoint=llm_server.base_url,
        azure_deployment="gpt4o-prod",
        api_key="azure-key",
        api_version="2024-10-21",
        backoff_initial=0.01,
    )
    assert (await llm.generate(USER)).text == "from azure"
    req = llm_server.last
    assert req.path == "/openai/deployments/gpt4o-prod/chat/completions"
    assert req.query == {"api-version": "2024-10-21"}
    assert req.headers["api-key"] == "azure-key" and "authorization" not in req.headers
    await llm.aclose()
    # the deployment defaults to the model; an Entra ID token goes as a bearer token
    llm_server.api_key = "entra-token"
    llm_server.reply("again")
    llm = OpenAILLM(
        preset="azure", azure_endpoint=llm_server.base_url, model="gpt-4o", azure_ad_token="entra-token"
    )
    assert (await llm.generate(USER)).text == "again"
    assert llm_server.last.path == "/openai/deployments/gpt-4o/chat/completions"
    assert llm_server.last.headers["authorization"] == "Bearer entra-token"
    await llm.aclose()


def test_config_url_and_registry():
    llm = OpenAILLM.from_url(
        "openai://:sk-abc@localhost:8000/v1?model=qwen&tls=false&json_mode=off&preset=vllm"
    )
    assert llm.url == "http://localhost:8000/v1/chat/completions" and llm.model == "qwen"
    assert llm.config.api_key is not None and llm.config.api_key.get_secret_value() == "sk-abc"
    assert llm.config.json_mode == "off" and llm.supports["json_object"] is False
    assert OpenAILLM.from_url("openai://").url == "https://api.openai.com/v1/chat/completions"
    assert (
        OpenAILLM.from_url("openai://?preset=ollama&model=llama3.2").url
        == "http://localhost:11434/v1/chat/completions"
    )
    az = OpenAILLM.from_url("openai://:k@res.openai.azure.com?preset=azure&azure_deployment=d1")
    assert az.url == "https://res.openai.azure.com/openai/deployments/d1/chat/completions"
    with pytest.raises(errors.ConfigurationError):
        OpenAILLM.from_url("openai://host/v1?nonsense=1")
    with pytest.raises(errors.ConfigurationError):
        OpenAILLM(api_keyy="x")  # extra="forbid"
    with pytest.raises(errors.ConfigurationError):
        OpenAILLM(base_url="ftp://x")
    with pytest.raises(errors.ConfigurationError):
        OpenAILLM(OpenAILLM.Config(), model="x")
    reg = Registry()
    built = reg.create("llm", {"provider": "openai", "config": {"preset": "ollama", "model": "llama3.2"}})
    assert isinstance(built, OpenAILLM) and built.url.startswith("http://localhost:11434/")
    assert isinstance(reg.create("llm", "openai://localhost:1234/v1?tls=false&model=m"), OpenAILLM)


# -- fallbacks ----------------------------------------------------------------------------------


async def test_json_mode_fallback_when_the_server_refuses_response_format(llm_server):
    llm_server.reject = {"response_format"}
    llm_server.reply('Here you go:\n```json\n{"facts": ["x"]}\n```', '{"facts": []}')
    llm = _make(llm_server)
    out = await llm.generate(USER, response_format={"type": "json_object"})
    assert out.text == '{"facts": ["x"]}'
    refused, retried = llm_server.requests
    assert refused.body["response_format"] == {"type": "json_object"}
    assert "response_format" not in retried.body
    assert "JSON" in retried.messages[0]["content"]
    assert llm.supports["json_object"] is False  # remembered for this instance
    await llm.generate(USER, response_format={"type": "json_object"})
    assert len(llm_server.requests) == 3 and "response_format" not in llm_server.last.body
    await llm.aclose()


async def test_schema_falls_back_to_json_mode_then_to_the_prompt(llm_server):
    llm_server.reply(
        Fault.status(400, "This response_format type is unavailable now"),
        Reply.json({"facts": ["a"]}),
        Fault.status(422, "json_object mode is not supported by this model"),
        Reply.json({"facts": ["b"]}),
    )
    llm = _make(llm_server)
    out = await llm.generate(USER, response_format=SCHEMA)
    assert json.loads(out.text) == {"facts": ["a"]}
    kinds = [r.body.get("response_format", {}).get("type") for r in llm_server.requests]
    assert kinds == ["json_schema", "json_object"]
    assert json.dumps(SCHEMA) in llm_server.last.messages[0]["content"]  # the schema goes into the prompt
    out = await llm.generate(USER, response_format=SCHEMA)
    assert json.loads(out.text) == {"facts": ["b"]}
    kinds = [r.body.get("response_format", {}).get("type") for r in llm_server.requests]
    assert kinds == ["json_schema", "json_object", "json_object", None]
    assert llm.supports == {"json_schema": False, "json_object": False, "tools": True}
    await llm.aclose()


async def test_json_mode_on_raises_and_off_never_sends(llm_server):
    llm_server.reject = {"response_format"}
    llm = _make(llm_server, json_mode="on")
    with pytest.raises(errors.ProviderError, match="response_format is not supported"):
        await llm.generate(USER, response_format={"type": "json_object"})
    assert len(llm_server.requests) == 1
    llm_server.reply('{"ok": true}')
    off = _make(llm_server, json_mode="off")
    assert (await off.generate(USER, response_format={"type": "json_object"})).text == '{"ok": true}'
    assert "response_format" not in llm_server.last.body
    await llm.aclose()
    await off.aclose()


async def test_tools_fallback(llm_server):
    llm_server.reject = {"tools"}
    llm_server.reply('{"tool": "add_memory", "arguments": {"text": "lives in Lisbon"}}', "Just text.")
    llm = _make(llm_server)
    out = await llm.generate(USER, tools=[TOOL])
    assert (
        out.tool_calls == [{"name": "add_memory", "arguments": {"text": "lives in Lisbon"}}]
        and out.text == ""
    )
    refused, retried = llm_server.requests
    assert "tools" in refused.body and "tools" not in retried.body
    assert "add_memory" in retried.messages[0]["content"]
    out = await llm.generate(USER, tools=[TOOL])
    assert out.tool_calls == [] and out.text == "Just text."
    assert len(llm_server.requests) == 3  # no second refusal: remembered
    await llm.aclose()


async def test_max_completion_tokens_switch(llm_server):
    llm_server.reply(
        Fault.status(
            400,
            "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead.",
        ),
        "ok",
    )
    llm = _make(llm_server, max_tokens=100)
    assert (await llm.generate(USER)).text == "ok"
    assert llm_server.last.body["max_completion_tokens"] == 100 and "max_tokens" not in llm_server.last.body
    await llm.aclose()


async def test_other_400s_are_raised_with_the_servers_message(llm_server):
    llm_server.reply(
        Fault.status(400, "The model `gpt-9` does not exist"), Fault.status(404, "no such deployment")
    )
    llm = _make(llm_server)
    with pytest.raises(errors.ProviderError, match=r"HTTP 400: The model `gpt-9` does not exist"):
        await llm.generate(USER, response_format={"type": "json_object"})
    with pytest.raises(errors.ProviderError, match="HTTP 404: no such deployment"):
        await llm.generate(USER)
    assert len(llm_server.requests) == 2  # neither retried
    await llm.aclose()


# -- retries, timeouts, broken answers -------------------------------------------------------------


async def test_retries_on_500_and_503(llm_server):
    llm_server.reply(Fault.status(500), Fault.status(503, "upstream overloaded"), "finally")
    llm = _make(llm_server)
    assert (await llm.generate(USER)).text == "finally"
    assert len(llm_server.requests) == 3
    await llm.aclose()


async def test_retries_exhausted_keep_the_servers_message(llm_server):
    llm_server.default = Fault.status(502, "bad gateway upstream")
    llm = _make(llm_server, max_retries=2)
    with pytest.raises(errors.ProviderError, match="after 3 attempts: HTTP 502: bad gateway upstream"):
        await llm.generate(USER)
    assert len(llm_server.requests) == 3
    await llm.aclose()


async def test_429_honours_retry_after(llm_server):
    llm_server.reply(
        Fault.rate_limited(retry_after=0.3),
        "after seconds",
        Fault.rate_limited(retry_after=None, retry_after_ms=200),
        "after ms",
    )
    llm = _make(llm_server, backoff_initial=0.001, backoff_max=0.001)
    t0 = time.monotonic()
    assert (await llm.generate(USER)).text == "after seconds"
    assert time.monotonic() - t0 >= 0.3
    t0 = time.monotonic()
    assert (await llm.generate(USER)).text == "after ms"
    assert 0.2 <= time.monotonic() - t0 < 1.0
    gaps = [
        b.received - a.received for a, b in zip(llm_server.requests, llm_server.requests[1:], strict=False)
    ]
    assert gaps[0] >= 0.3 and gaps[2] >= 0.2
    await llm.aclose()


async def test_retry_after_past_the_budget_fails_fast(llm_server):
    llm_server.reply(Fault.rate_limited(retry_after=30))
    llm = _make(llm_server, total_timeout=2.0)
    t0 = time.monotonic()
    with pytest.raises(errors.ProviderError, match=r"HTTP 429.*would pass total_timeout"):
        await llm.generate(USER)
    assert time.monotonic() - t0 < 1.0
    await llm.aclose()


async def test_connection_refused_is_retried_then_translated():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    llm = OpenAILLM(base_url=f"http://127.0.0.1:{port}/v1", model="m", max_retries=2, backoff_initial=0.01)
    with pytest.raises(errors.ProviderError, match="after 3 attempts: connection failed") as info:
        await llm.generate(USER)
    assert info.value.__cause__ is not None
    await llm.aclose()


async def test_hang_past_the_timeout(llm_server):
    llm_server.reply(Fault.hang(5))
    llm = _make(llm_server, timeout=0.2, max_retries=0)
    t0 = time.monotonic()
    with pytest.raises(errors.ProviderTimeoutError, match=r"answer within 0\.2 s") as info:
        await llm.generate(USER)
    assert isinstance(info.value, TimeoutError)
    assert time.monotonic() - t0 < 1.0
    # with retries, a hang is retried and the next answer is used
    llm_server.reply(Fault.hang(5), "woke")
    llm2 = _make(llm_server, timeout=0.2)
    assert (await llm2.generate(USER)).text == "woke"
    await llm.aclose()
    await llm2.aclose()


async def test_slow_body_counts_against_the_attempt_timeout(llm_server):
    llm_server.reply(Fault.slow_stream(chunks=6, interval=0.1, reply=Reply.text("slow")))
    llm = _make(llm_server, timeout=0.25, max_retries=0)
    with pytest.raises(errors.ProviderTimeoutError):
        await llm.generate(USER)
    llm_server.reply(Fault.slow_stream(chunks=4, interval=0.05, reply=Reply.text("slow but fine")))
    llm = _make(llm_server, timeout=2.0)
    assert (await llm.generate(USER)).text == "slow but fine"
    await llm.aclose()


async def test_truncated_and_non_json_bodies(llm_server):
    llm_server.reply(Fault.truncated(), Fault.truncated(declare_full=False), "whole")
    llm = _make(llm_server)
    assert (await llm.generate(USER)).text == "whole"  # both retried as server faults
    assert len(llm_server.requests) == 3
    # a server that keeps breaking its bodies: retried twice at most, even with more retries left
    llm_server.clear()
    llm_server.default = Fault.truncated(declare_full=False)
    llm = _make(llm_server, max_retries=6)
    with pytest.raises(errors.ProviderError, match="not valid JSON"):
        await llm.generate(USER)
    assert len(llm_server.requests) == 3
    llm_server.clear()
    llm_server.default = Fault.not_json()
    with pytest.raises(errors.ProviderError, match="502 Bad Gateway"):
        await llm.generate(USER)
    llm_server.clear()
    llm_server.default = Fault.truncated()
    with pytest.raises(errors.ProviderError, match="broke off"):
        await llm.generate(USER)
    await llm.aclose()


async def test_total_timeout_bounds_the_call(llm_server):
    llm_server.default = Fault.status(503)
    llm = _make(llm_server, total_timeout=0.5, max_retries=20, backoff_initial=0.05, backoff_max=0.1)
    t0 = time.monotonic()
    with pytest.raises(errors.ProviderError):
        await llm.generate(USER)
    assert time.monotonic() - t0 < 0.8
    llm_server.default = Fault.hang(5)
    llm = _make(llm_server, total_timeout=0.4, timeout=5.0)
    t0 = time.monotonic()
    with pytest.raises(errors.ProviderTimeoutError):
        await llm.generate(USER)
    assert time.monotonic() - t0 < 0.8
    await llm.aclose()


async def test_200_with_an_error_object_and_malformed_completions(llm_server):
    llm_server.reply(
        Fault.status(200, body={"error": {"message": "model overloaded", "code": "overloaded"}}),
        Fault.status(200, body={"choices": []}),
    )
    llm = _make(llm_server)
    with pytest.raises(errors.ProviderError, match="model overloaded"):
        await llm.generate(USER)
    with pytest.raises(errors.ProviderError, match="no 'choices'"):
        await llm.generate(USER)
    await llm.aclose()


async def test_bad_input():
    llm = OpenAILLM(model="m")
    with pytest.raises(errors.InvalidInputError):
        await llm.generate("hello")  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidInputError):
        await llm.generate([{"content": "no role"}])
    with pytest.raises(errors.ConfigurationError):
        await llm.generate(USER, response_format={"type": "xml"})


# -- concurrency ---------------------------------------------------------------------------------


async def test_concurrent_calls_overlap():
    with LLMServer(delay=0.2, default=lambda req: Reply.text(req.messages[-1]["content"])) as server:
        llm = _make(server)
        t0 = time.monotonic()
        await llm.generate([{"role": "user", "content": "warm-up"}])
        one = time.monotonic() - t0
        results: dict[int, str] = {}

        async def call(i: int) -> None:
            results[i] = (await llm.generate([{"role": "user", "content": f"q{i}"}])).text

        t0 = time.monotonic()
        async with anyio.create_task_group() as tg:
            for i in range(16):
                tg.start_soon(call, i)
        elapsed = time.monotonic() - t0
        assert results == {i: f"q{i}" for i in range(16)}
        assert elapsed < 1.5 and elapsed < 16 * 0.2 / 2, (one, elapsed)
        assert llm.usage.calls == 17
        await llm.aclose()


async def test_temperature_dropped_when_refused(llm_server):
    llm_server.reply(
        Fault.status(400, "Unsupported value: 'temperature' does not support 0.2 with this model."),
        "ok",
        "again",
    )
    llm = _make(llm_server, temperature=0.2)
    assert (await llm.generate(USER)).text == "ok"
    assert "temperature" in llm_server.requests[0].body and "temperature" not in llm_server.requests[1].body
    await llm.generate(USER)
    assert "temperature" not in llm_server.last.body and len(llm_server.requests) == 3
    await llm.aclose()


async def test_a_refusal_about_a_message_is_not_a_missing_feature(llm_server):
    llm_server.reply(
        Fault.status(
            400, "Invalid parameter: messages[2] with role 'tool' must be a response to 'tool_calls'."
        )
    )
    llm = _make(llm_server)
    with pytest.raises(errors.ProviderError, match=r"messages\[2\]"):
        await llm.generate(USER, tools=[TOOL], response_format={"type": "json_object"})
    assert len(llm_server.requests) == 1
    assert llm.supports == {"json_schema": True, "json_object": True, "tools": True}
    await llm.aclose()


def test_one_instance_across_event_loops(llm_server):
    llm_server.reply("first", "second")
    llm = _make(llm_server)
    assert anyio.run(llm.generate, USER).text == "first"
    assert anyio.run(llm.generate, USER).text == "second"  # a new loop: a new connection pool
    anyio.run(llm.aclose)


async def test_a_structured_output_refusal_is_the_text(llm_server):
    llm_server.reply(
        Fault.status(
            200,
            body={
                "model": "m",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {
                            "role": "assistant",
                            "content": None,
                            "refusal": "I can't help with that.",
                        },
                    }
                ],
            },
        )
    )
    llm = _make(llm_server)
    out = await llm.generate(USER, response_format=SCHEMA)
    assert out.text == "I can't help with that." and out.tool_calls == []
    await llm.aclose()
