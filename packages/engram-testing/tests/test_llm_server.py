"""The scripted LLM server itself, driven with the standard library's HTTP client over a real socket."""

from __future__ import annotations

import base64
import email.utils
import http.client
import json
import socket
import struct
import threading
import time
from typing import Any

import pytest
from engram.testing import LLMServer as ExportedServer
from engram.testing.llm_server import Fault, LLMServer, RecordedRequest, Reply, llm_server


@pytest.fixture
def server():
    """The module's own pytest fixture, used as an ordinary generator here."""
    yield from llm_server.__wrapped__()  # type: ignore[attr-defined]


OPENAI = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
ANTHROPIC = {"model": "claude-test", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01", "x-api-key": "k"}


def post(
    server: LLMServer, path: str, body: Any, headers: dict[str, str] | None = None, timeout: float = 5.0
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        conn.request("POST", path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def post_json(
    server: LLMServer, path: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    status, _, raw = post(server, path, body, headers)
    return status, json.loads(raw)


def test_exported_from_engram_testing():
    assert ExportedServer is LLMServer


def test_lifecycle_and_addresses():
    server = LLMServer()
    with pytest.raises(RuntimeError):
        _ = server.port
    with server:
        port = server.port
        assert server.base_url == f"http://127.0.0.1:{server.port}"
        assert server.openai_url == server.base_url + "/v1" and server.anthropic_url == server.base_url
        assert post_json(server, "/v1/chat/completions", OPENAI)[0] == 400  # empty script
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
    server.stop()  # idempotent


def test_openai_text_json_and_tool_calls(server):
    server.reply(
        "hello",
        Reply.json({"a": 1}),
        Reply.tool_call("f", {"x": 1}),
        Reply.text("t", model="m2", input_tokens=3, output_tokens=4),
    )
    status, out = post_json(server, "/v1/chat/completions", OPENAI)
    assert status == 200 and out["object"] == "chat.completion" and out["model"] == "gpt-test"
    choice = out["choices"][0]
    assert (
        choice["message"] == {"role": "assistant", "content": "hello"} and choice["finish_reason"] == "stop"
    )
    assert set(out["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}
    _, out = post_json(server, "/v1/chat/completions", OPENAI)
    assert json.loads(out["choices"][0]["message"]["content"]) == {"a": 1}
    _, out = post_json(server, "/v1/chat/completions", OPENAI)
    msg = out["choices"][0]["message"]
    assert msg["content"] is None and out["choices"][0]["finish_reason"] == "tool_calls"
    (tc,) = msg["tool_calls"]
    assert tc["type"] == "function" and tc["function"]["name"] == "f"
    assert json.loads(tc["function"]["arguments"]) == {"x": 1}
    _, out = post_json(server, "/v1/chat/completions", OPENAI)
    assert out["model"] == "m2" and out["usage"] == {
        "prompt_tokens": 3,
        "completion_tokens": 4,
        "total_tokens": 7,
    }
    assert server.pending == 0


def test_anthropic_shapes(server):
    forced = {
        **ANTHROPIC,
        "tools": [{"name": "out", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "out"},
    }
    server.reply(
        "hello",
        Reply.json({"a": 1}),
        Reply.json([1, 2]),
        Reply.json({"b": 2}),
        Reply.tool_call("f", {"x": 1}, text="calling"),
    )
    status, out = post_json(server, "/v1/messages", ANTHROPIC, ANTHROPIC_HEADERS)
    assert status == 200 and out["type"] == "message" and out["role"] == "assistant"
    assert out["content"] == [{"type": "text", "text": "hello"}] and out["stop_reason"] == "end_turn"
    assert set(out["usage"]) == {"input_tokens", "output_tokens"}
    _, out = post_json(server, "/v1/messages", forced, ANTHROPIC_HEADERS)
    (block,) = out["content"]
    assert block["type"] == "tool_use" and block["name"] == "out" and block["input"] == {"a": 1}
    assert out["stop_reason"] == "tool_use"
    _, out = post_json(server, "/v1/messages", forced, ANTHROPIC_HEADERS)
    assert out["content"][0]["input"] == {"value": [1, 2]}
    _, out = post_json(server, "/v1/messages", ANTHROPIC, ANTHROPIC_HEADERS)  # JSON, but no tool forced
    assert out["content"] == [{"type": "text", "text": '{"b": 2}'}]
    _, out = post_json(server, "/v1/messages", ANTHROPIC, ANTHROPIC_HEADERS)
    assert out["content"][0] == {"type": "text", "text": "calling"}
    assert out["content"][1]["type"] == "tool_use" and out["content"][1]["input"] == {"x": 1}


def test_anthropic_requests_are_validated(server):
    status, out = post_json(server, "/v1/messages", ANTHROPIC)  # no anthropic-version header
    assert status == 400 and out["type"] == "error" and "anthropic-version" in out["error"]["message"]
    status, out = post_json(
        server,
        "/v1/messages",
        {**ANTHROPIC, "messages": [{"role": "system", "content": "x"}, {"role": "user", "content": "hi"}]},
        ANTHROPIC_HEADERS,
    )
    assert status == 400 and "system" in out["error"]["message"]
    no_max = {k: v for k, v in ANTHROPIC.items() if k != "max_tokens"}
    assert post_json(server, "/v1/messages", no_max, ANTHROPIC_HEADERS)[0] == 400
    bad_choice = {**ANTHROPIC, "tool_choice": {"type": "tool", "name": "missing"}}
    assert post_json(server, "/v1/messages", bad_choice, ANTHROPIC_HEADERS)[0] == 400
    assert post_json(server, "/v1/chat/completions", {"model": "m"})[0] == 400
    assert post(server, "/v1/chat/completions", b"{not json")[0] == 400
    status, out = post_json(server, "/v2/unknown", {})
    assert status == 404 and "no route" in out["error"]["message"]
    assert server.pending == 0 and len(server.requests) == 7  # all recorded, no entry used
    lax = LLMServer(validate=False, default="ok")
    with lax:
        assert post_json(lax, "/v1/messages", {"messages": []})[0] == 200


def test_requests_are_recorded(server):
    server.reply("a")
    post(
        server,
        "/openai/deployments/dep1/chat/completions?api-version=2024-10-21",
        {"messages": [{"role": "user", "content": "q"}]},
        {"api-key": "secret", "X-Trace": "t1"},
    )
    req = server.last
    assert isinstance(req, RecordedRequest)
    assert req.method == "POST" and req.api == "openai"
    assert req.path == "/openai/deployments/dep1/chat/completions"
    assert req.query == {"api-version": "2024-10-21"}
    assert req.headers["api-key"] == "secret" and req.headers["x-trace"] == "t1"
    assert req.messages == [{"role": "user", "content": "q"}] and json.loads(req.raw) == req.body
    assert server.requests_for("openai") == [req] and server.requests_for("anthropic") == []
    server.clear()
    assert server.requests == []


def test_callables_and_default(server):
    server.reply(lambda req: f"echo {req.messages[-1]['content']}", lambda req: Fault.status(503))
    assert (
        post_json(server, "/v1/chat/completions", OPENAI)[1]["choices"][0]["message"]["content"] == "echo hi"
    )
    assert post_json(server, "/v1/chat/completions", OPENAI)[0] == 503
    server.default = lambda req: {"n": len(server.requests)}
    out = post_json(server, "/v1/chat/completions", OPENAI)[1]
    assert json.loads(out["choices"][0]["message"]["content"]) == {"n": 3}
    server.default = None
    status, out = post_json(server, "/v1/chat/completions", OPENAI)
    assert status == 400 and out["error"]["code"] == "script_exhausted"
    with pytest.raises(TypeError):
        server.reply(object())  # refused when queued, not when a request comes

    def broken(req: RecordedRequest) -> str:
        raise RuntimeError("bug in the test's responder")

    server.reply(broken)
    status, out = post_json(server, "/v1/chat/completions", OPENAI)
    assert status == 500 and "bug in the test's responder" in out["error"]["message"]


def test_embeddings(server):
    status, out = post_json(server, "/v1/embeddings", {"model": "e", "input": ["a", "b"]})
    assert status == 200 and out["object"] == "list" and [d["index"] for d in out["data"]] == [0, 1]
    assert out["data"][0]["embedding"] == pytest.approx(LLMServer.embedding("a", 16))
    _, out = post_json(
        server,
        "/v1/embeddings",
        {"model": "e", "input": "c", "dimensions": 4, "encoding_format": "base64"},
    )
    vec = struct.unpack("<4f", base64.b64decode(out["data"][0]["embedding"]))
    assert vec == pytest.approx(LLMServer.embedding("c", 4), rel=1e-5)
    server.reply_embeddings(Reply.embeddings([[1.0, 0.0]]), Fault.status(500))
    assert post_json(server, "/v1/embeddings", {"input": ["x"]})[1]["data"][0]["embedding"] == [1.0, 0.0]
    assert post_json(server, "/v1/embeddings", {"input": ["x"]})[0] == 500
    assert post_json(server, "/v1/embeddings", {"input": [""]})[0] == 400  # OpenAI rejects empty strings
    assert server.pending == 0  # embeddings have their own script


def test_auth(server):
    server.api_key = "sk-1"
    server.default = "ok"
    assert post(server, "/v1/chat/completions", OPENAI)[0] == 401
    assert post(server, "/v1/chat/completions", OPENAI, {"Authorization": "Bearer sk-1"})[0] == 200
    assert post(server, "/v1/chat/completions", OPENAI, {"api-key": "sk-1"})[0] == 200
    status, out = post_json(server, "/v1/messages", ANTHROPIC, {"anthropic-version": "2023-06-01"})
    assert status == 401 and out["error"]["type"] == "authentication_error"
    assert post(server, "/v1/messages", ANTHROPIC, {**ANTHROPIC_HEADERS, "x-api-key": "sk-1"})[0] == 200


def test_reject_names_the_field(server):
    server.reject = {"response_format"}
    server.reply("ok")
    status, out = post_json(
        server, "/v1/chat/completions", {**OPENAI, "response_format": {"type": "json_object"}}
    )
    assert status == 400 and "response_format" in out["error"]["message"]
    assert server.pending == 1  # the script entry is kept for the retry
    assert post(server, "/v1/chat/completions", OPENAI)[0] == 200


def test_status_faults(server):
    server.reply(
        Fault.status(503),
        Fault.status(400, "bad thing", headers={"X-Req": "1"}),
        Fault.status(502, body=b"<html>gateway</html>"),
        Fault.rate_limited(retry_after=2),
        Fault.rate_limited(retry_after=3, http_date=True, retry_after_ms=1500),
    )
    status, _, raw = post(server, "/v1/chat/completions", OPENAI)
    assert status == 503 and "Service Unavailable" in json.loads(raw)["error"]["message"]
    status, headers, raw = post(server, "/v1/chat/completions", OPENAI)
    assert (status, json.loads(raw)["error"]["message"], headers["x-req"]) == (400, "bad thing", "1")
    assert post(server, "/v1/chat/completions", OPENAI)[2] == b"<html>gateway</html>"
    status, headers, _ = post(server, "/v1/chat/completions", OPENAI)
    assert status == 429 and headers["retry-after"] == "2"
    status, headers, _ = post(server, "/v1/chat/completions", OPENAI)
    when = email.utils.parsedate_to_datetime(headers["retry-after"]).timestamp()
    assert status == 429 and 1 <= when - time.time() <= 4 and headers["retry-after-ms"] == "1500"
    server.reply(Fault.status(529, "Overloaded"))
    status, out = post_json(server, "/v1/messages", ANTHROPIC, ANTHROPIC_HEADERS)
    assert status == 529 and out == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }


def test_hang_and_disconnect(server):
    server.reply(Fault.hang(5), Fault.disconnect())
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        post(server, "/v1/chat/completions", OPENAI, timeout=0.3)
    assert time.monotonic() - t0 < 1.0
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        post(server, "/v1/chat/completions", OPENAI)


def test_stop_wakes_a_hanging_request():
    server = LLMServer().start()
    server.reply(Fault.hang(30))
    errors: list[BaseException] = []

    def client() -> None:
        try:
            post(server, "/v1/chat/completions", OPENAI, timeout=10)
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=client)
    t.start()
    while not server.requests:
        time.sleep(0.01)
    t0 = time.monotonic()
    server.stop()
    t.join(5)
    assert not t.is_alive() and errors and time.monotonic() - t0 < 3


def test_truncated_and_not_json(server):
    server.reply(
        Fault.truncated(),
        Fault.truncated(0.3, declare_full=False, reply=Reply.json({"k": "v" * 50})),
        Fault.not_json(),
    )
    with pytest.raises(http.client.IncompleteRead):
        post(server, "/v1/chat/completions", OPENAI)
    status, headers, raw = post(server, "/v1/chat/completions", OPENAI)
    assert status == 200 and int(headers["content-length"]) == len(raw)
    with pytest.raises(ValueError):
        json.loads(raw)
    status, headers, raw = post(server, "/v1/chat/completions", OPENAI)
    assert status == 200 and raw.startswith(b"<html>") and headers["content-type"] == "text/html"


def test_slow_stream_of_a_json_body(server):
    server.reply(Fault.slow_stream(chunks=4, interval=0.1, reply=Reply.text("slowly")))
    t0 = time.monotonic()
    status, _, raw = post(server, "/v1/chat/completions", OPENAI)
    assert status == 200 and json.loads(raw)["choices"][0]["message"]["content"] == "slowly"
    assert time.monotonic() - t0 >= 0.3


def _events(raw: bytes) -> list[Any]:
    out = []
    for chunk in raw.decode().split("\n\n"):
        for line in chunk.splitlines():
            if line.startswith("data: "):
                data = line[6:]
                out.append(data if data == "[DONE]" else json.loads(data))
    return out


def test_streaming_openai_and_anthropic(server):
    server.reply(
        Fault.slow_stream(chunks=3, interval=0.05, reply=Reply.text("abcdef")),
        Reply.text("whole"),
        Fault.slow_stream(chunks=2, interval=0.05, reply=Reply.text("hello")),
        Reply.json({"a": 1}),
    )
    t0 = time.monotonic()
    status, headers, raw = post(
        server,
        "/v1/chat/completions",
        {**OPENAI, "stream": True, "stream_options": {"include_usage": True}},
    )
    assert status == 200 and headers["content-type"] == "text/event-stream"
    assert time.monotonic() - t0 >= 0.1
    events = _events(raw)
    assert events[-1] == "[DONE]" and events[-2]["usage"]["completion_tokens"] >= 1
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-2] if e["choices"])
    assert text == "abcdef"
    assert events[-3]["choices"][0]["finish_reason"] == "stop"
    events = _events(post(server, "/v1/chat/completions", {**OPENAI, "stream": True})[2])
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1]) == "whole"
    events = _events(post(server, "/v1/messages", {**ANTHROPIC, "stream": True}, ANTHROPIC_HEADERS)[2])
    kinds = [e["type"] for e in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta") == "hello"
    forced = {
        **ANTHROPIC,
        "stream": True,
        "tools": [{"name": "out", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "out"},
    }
    events = _events(post(server, "/v1/messages", forced, ANTHROPIC_HEADERS)[2])
    partial = "".join(e["delta"]["partial_json"] for e in events if e["type"] == "content_block_delta")
    assert json.loads(partial) == {"a": 1}


def test_delay_and_concurrency():
    with LLMServer(delay=0.2, default="ok") as server:
        server.reply(Reply.text("fast", delay=0.0))
        t0 = time.monotonic()
        post(server, "/v1/chat/completions", OPENAI)
        assert time.monotonic() - t0 < 0.15
        statuses: list[int] = []
        lock = threading.Lock()

        def one() -> None:
            status = post(server, "/v1/chat/completions", OPENAI)[0]
            with lock:
                statuses.append(status)

        threads = [threading.Thread(target=one) for _ in range(16)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(5)
        elapsed = time.monotonic() - t0
        assert statuses == [200] * 16
        assert 0.2 <= elapsed < 1.0  # answered side by side, not one after another
