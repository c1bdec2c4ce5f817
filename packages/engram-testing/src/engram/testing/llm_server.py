"""A real HTTP server on 127.0.0.1 that stands in for remote LLM APIs in tests.

The machines engram's tests run on cannot reach OpenAI or Anthropic, and an httpx mock transport
would skip the parts that fail in production (sockets, timeouts, broken bodies, connection reuse).
:class:`LLMServer` is a stdlib ``ThreadingHTTPServer`` in a background thread, on a free port, that
speaks:

- OpenAI chat completions: ``POST .../chat/completions`` (``/v1/chat/completions``, and Azure's
  ``/openai/deployments/<name>/chat/completions?api-version=...``), streaming (``"stream": true``,
  server-sent events) included;
- OpenAI embeddings: ``POST .../embeddings`` (deterministic vectors per text, or scripted ones);
- Anthropic Messages: ``POST .../messages`` (``/v1/messages``), streaming included.

It answers from a **script**: a queue of entries, one per request, for chat requests (OpenAI and
Anthropic share it) and another for embeddings. An entry is a :class:`Reply` (text, JSON, tool
calls, vectors), a :class:`Fault` (an HTTP error, a 429 with ``Retry-After``, a hang, a truncated
or non-JSON body, a slow stream, a dropped connection), a plain ``str`` (a text reply), a ``dict``
or ``list`` (a JSON reply), or a callable ``(RecordedRequest) -> entry`` that decides per request.
When the queue is empty the server uses ``default`` (an entry or callable); without one, a chat
request gets HTTP 400 ``script_exhausted`` and embeddings get deterministic vectors. Every request is
recorded (:class:`RecordedRequest`: path, query, lower-cased headers, JSON body) for assertions.

Replies are rendered in the shape of the API that was called: a :meth:`Reply.json` is the message
content for OpenAI, and for Anthropic the ``input`` of a ``tool_use`` block when the request forced
a tool with ``tool_choice`` (how structured output works there), text otherwise. Token usage is
reported (estimated from the text as characters / 4, or as given).

Example::

    from engram.testing.llm_server import Fault, LLMServer, Reply

    with LLMServer() as server:
        server.reply(Fault.status(503), Fault.rate_limited(retry_after=0.1), Reply.json({"facts": []}))
        llm = OpenAILLM(base_url=server.openai_url, model="test")
        ...  # the third request gets the JSON
        assert server.requests[-1].body["response_format"] == {"type": "json_object"}

or, in a test module or ``conftest.py``, the ``llm_server`` pytest fixture::

    from engram.testing.llm_server import llm_server  # noqa: F401  (registers the fixture)

    async def test_something(llm_server):
        llm_server.reply("hello")
"""

from __future__ import annotations

import base64
import email.utils
import http
import json
import random
import socket
import struct
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import pytest

__all__ = ["Entry", "Fault", "LLMServer", "RecordedRequest", "Reply", "llm_server"]

Api = Literal["openai", "anthropic", "embeddings"]


@dataclass
class RecordedRequest:
    """One request the server received.

    Attributes:
        method: ``"POST"`` (or ``"GET"``).
        path: the path without the query, e.g. ``/v1/chat/completions``.
        query: the query parameters (last value of each).
        headers: the request headers, names lower-cased.
        body: the parsed JSON body (``None`` when it was not JSON).
        raw: the body bytes.
        api: ``"openai"``, ``"anthropic"``, ``"embeddings"``, or ``None`` for an unknown path.
        received: ``time.monotonic()`` when the request arrived.
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    raw: bytes
    api: Api | None
    received: float

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The body's ``messages`` (``[]`` when absent)."""
        return list(self.body.get("messages") or []) if isinstance(self.body, dict) else []


@dataclass
class Reply:
    """A successful answer. Build one with :meth:`text`, :meth:`json`, :meth:`tool_call`,
    :meth:`tool_calls` or :meth:`embeddings`.

    Attributes:
        content: the reply text (OpenAI ``message.content``, Anthropic ``text`` block).
        value: the JSON value of a :meth:`json` reply.
        calls: the tool calls, ``[{"name", "arguments": dict}]``.
        vectors: embedding vectors, for the embeddings endpoint.
        model: the ``model`` reported (default: the request's).
        input_tokens / output_tokens: the usage reported (default: estimated, characters / 4).
        delay: seconds to wait before answering (default: the server's ``delay``).
        headers: extra response headers.
    """

    content: str = ""
    value: Any = None
    calls: list[dict[str, Any]] = field(default_factory=list)
    vectors: list[list[float]] | None = None
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    delay: float | None = None
    headers: dict[str, str] = field(default_factory=dict)
    is_json: bool = False

    @classmethod
    def text(cls, text: str, **options: Any) -> Reply:
        """A plain text answer."""
        return cls(content=text, **options)

    @classmethod
    def json(cls, value: Any, **options: Any) -> Reply:
        """A JSON answer: OpenAI message content ``json.dumps(value)``; Anthropic a forced tool's
        ``input`` (``{"value": value}`` when not an object), or text when no tool was forced."""
        return cls(content=json.dumps(value, ensure_ascii=False), value=value, is_json=True, **options)

    @classmethod
    def tool_call(
        cls, name: str, arguments: dict[str, Any] | None = None, *, text: str = "", **options: Any
    ) -> Reply:
        """One tool call (OpenAI ``tool_calls``, Anthropic ``tool_use``), with optional text beside it."""
        return cls(content=text, calls=[{"name": name, "arguments": arguments or {}}], **options)

    @classmethod
    def tool_calls(cls, calls: list[dict[str, Any]], *, text: str = "", **options: Any) -> Reply:
        """Several tool calls, each ``{"name", "arguments"}``."""
        return cls(content=text, calls=[dict(c) for c in calls], **options)

    @classmethod
    def embeddings(cls, vectors: list[list[float]], **options: Any) -> Reply:
        """Exactly these vectors, in order, for an embeddings request."""
        return cls(vectors=[list(v) for v in vectors], **options)


FaultKind = Literal["status", "hang", "truncated", "not_json", "slow_stream", "disconnect"]


@dataclass
class Fault:
    """A failure the server produces for one request. Build one with the class methods.

    Attributes:
        kind: what goes wrong.
        code: the HTTP status (``status``, ``not_json``).
        message: the error message in the API's error body (``status``).
        headers: extra response headers (``Retry-After`` for :meth:`rate_limited`).
        body: a body that replaces the API-shaped error body (``status``), or the text (``not_json``).
        seconds: how long a :meth:`hang` lasts.
        fraction: the share of the body a :meth:`truncated` answer sends.
        declare_full: whether a truncated answer announces the full ``Content-Length``.
        chunks / interval: how a :meth:`slow_stream` is cut and paced.
        reply: the reply a truncated or slow body carries (default: the next default reply).
        delay: seconds to wait before acting (default: the server's ``delay``).
    """

    kind: FaultKind
    code: int = 500
    message: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    seconds: float = 0.0
    fraction: float = 0.5
    declare_full: bool = True
    chunks: int = 8
    interval: float = 0.05
    reply: Reply | None = None
    delay: float | None = None

    @classmethod
    def status(
        cls,
        status: int,
        message: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        body: Any = None,
        delay: float | None = None,
    ) -> Fault:
        """Answer with this HTTP status and an error body in the API's shape (OpenAI
        ``{"error": {"message", "type", "code"}}``, Anthropic ``{"type": "error", "error": {...}}``)."""
        return cls(
            "status", code=status, message=message, headers=dict(headers or {}), body=body, delay=delay
        )

    @classmethod
    def rate_limited(
        cls,
        retry_after: float | None = 1.0,
        *,
        retry_after_ms: float | None = None,
        http_date: bool = False,
        delay: float | None = None,
    ) -> Fault:
        """HTTP 429 with ``Retry-After: <seconds>`` (or an HTTP date with ``http_date=True``), and/or
        ``retry-after-ms``."""
        headers: dict[str, str] = {}
        if retry_after is not None:
            if http_date:
                headers["Retry-After"] = email.utils.formatdate(time.time() + retry_after, usegmt=True)
            else:
                headers["Retry-After"] = f"{retry_after:g}"
        if retry_after_ms is not None:
            headers["retry-after-ms"] = f"{retry_after_ms:g}"
        return cls(
            "status", code=429, message="Rate limit reached; please retry later", headers=headers, delay=delay
        )

    @classmethod
    def hang(cls, seconds: float) -> Fault:
        """Read the request, then say nothing for ``seconds`` (or until the server stops), then drop
        the connection."""
        return cls("hang", seconds=seconds)

    @classmethod
    def truncated(
        cls, fraction: float = 0.5, *, declare_full: bool = True, reply: Reply | None = None
    ) -> Fault:
        """Send a 200 whose JSON body stops after ``fraction`` of its bytes. With ``declare_full``
        (the default) the headers announce the full length and the connection is closed early (the
        client sees a broken transfer); without it, a complete HTTP answer whose JSON is cut."""
        return cls("truncated", fraction=fraction, declare_full=declare_full, reply=reply)

    @classmethod
    def not_json(cls, text: str = "<html><body>502 Bad Gateway</body></html>", *, status: int = 200) -> Fault:
        """Answer with a body that is not JSON (as a misconfigured proxy would)."""
        return cls("not_json", code=status, body=text)

    @classmethod
    def slow_stream(cls, chunks: int = 8, interval: float = 0.05, *, reply: Reply | None = None) -> Fault:
        """Send the answer slowly: ``chunks`` pieces ``interval`` seconds apart. A streaming request
        (``"stream": true``) gets server-sent events, one per piece; others a JSON body written in
        pieces."""
        return cls("slow_stream", chunks=max(1, chunks), interval=interval, reply=reply)

    @classmethod
    def disconnect(cls) -> Fault:
        """Close the connection without answering."""
        return cls("disconnect")


Entry = Reply | Fault | str | dict | list | Callable[[RecordedRequest], Any]
"""What a script holds: a Reply, a Fault, text, a JSON value, or a callable of the request."""


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # many concurrent clients connect at once in the concurrency tests
    allow_reuse_address = True


class LLMServer:
    """A scripted OpenAI / Anthropic / embeddings server on ``127.0.0.1`` (see the module docstring).

    Args:
        delay: seconds every answer waits before it is sent (a reply's own ``delay`` wins); use it
            to model a slow model in concurrency tests.
        api_key: when set, requests must carry it (``Authorization: Bearer``, ``api-key`` or
            ``x-api-key``) or get HTTP 401 in the API's shape.
        default: the entry (or callable) used when the chat script is empty.
        embedding_dims: the length of default embedding vectors (a request's ``dimensions`` wins).
        reject: request fields (e.g. ``{"response_format"}``, ``{"tools"}``) this server does not
            know: a request carrying one gets HTTP 400 naming it, as vLLM or an older server would,
            without using a script entry.
        validate: check requests as the real APIs would (Anthropic: ``anthropic-version`` header,
            ``max_tokens``, no ``system`` role in ``messages``; OpenAI: ``model`` and ``messages``)
            and answer HTTP 400 when they are wrong.

    Use it as a context manager, or :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self,
        *,
        delay: float = 0.0,
        api_key: str | None = None,
        default: Entry | None = None,
        embedding_dims: int = 16,
        reject: set[str] | frozenset[str] | tuple[str, ...] = (),
        validate: bool = True,
    ) -> None:
        self.delay = delay
        self.api_key = api_key
        self.default = default
        self.embedding_dims = embedding_dims
        self.reject = set(reject)
        self.validate = validate
        self.requests: list[RecordedRequest] = []
        self._chat: deque[Entry] = deque()
        self._embeddings: deque[Entry] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> LLMServer:
        """Bind a free port on 127.0.0.1 and serve in a background thread."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _HTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="engram-llm-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake hanging requests, and release the port."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> LLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses -----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the LLM server is not running")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``: Anthropic's base URL (``/v1/messages`` is added to it)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``: the OpenAI base URL (``/chat/completions``, ``/embeddings``)."""
        return f"{self.base_url}/v1"

    @property
    def anthropic_url(self) -> str:
        """Same as :attr:`base_url`."""
        return self.base_url

    # -- script -------------------------------------------------------------------------------

    def reply(self, *entries: Entry) -> LLMServer:
        """Queue entries for chat requests (OpenAI chat completions and Anthropic messages), one per
        request, in order."""
        _check_entries(entries)
        with self._lock:
            self._chat.extend(entries)
        return self

    def reply_embeddings(self, *entries: Entry) -> LLMServer:
        """Queue entries (a :meth:`Reply.embeddings` or a :class:`Fault`) for embeddings requests."""
        _check_entries(entries)
        with self._lock:
            self._embeddings.extend(entries)
        return self

    @property
    def pending(self) -> int:
        """Chat entries not used yet."""
        with self._lock:
            return len(self._chat)

    def clear(self) -> None:
        """Forget the recorded requests and both scripts."""
        with self._lock:
            self.requests.clear()
            self._chat.clear()
            self._embeddings.clear()

    def requests_for(self, api: Api) -> list[RecordedRequest]:
        """The recorded requests to one API."""
        with self._lock:
            return [r for r in self.requests if r.api == api]

    @property
    def last(self) -> RecordedRequest:
        """The most recent request."""
        with self._lock:
            return self.requests[-1]

    @staticmethod
    def embedding(text: str, dims: int) -> list[float]:
        """The default vector served for ``text``: deterministic, unnormalised (norm about 3·√dims)."""
        rng = random.Random(zlib.crc32(text.encode("utf-8")))
        return [rng.gauss(0.0, 3.0) for _ in range(dims)]

    # -- internals -----------------------------------------------------------------------------

    def _record(self, req: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(req)

    def _next(self, api: Api, req: RecordedRequest) -> Any:
        with self._lock:
            queue = self._embeddings if api == "embeddings" else self._chat
            entry = queue.popleft() if queue else (self.default if api != "embeddings" else None)
        while callable(entry) and not isinstance(entry, Reply | Fault):
            entry = entry(req)
        return entry

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)


def _estimate_tokens(value: Any) -> int:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return max(1, len(text) // 4)


def _check_entries(entries: tuple[Any, ...]) -> None:
    for entry in entries:
        if not (isinstance(entry, Reply | Fault | str | dict | list) or callable(entry)):
            raise TypeError(
                f"llm_server: a script entry must be a Reply, Fault, str, dict, list or callable; got {entry!r}"
            )


def _coerce(entry: Any) -> Reply | Fault | None:
    if entry is None or isinstance(entry, Reply | Fault):
        return entry
    if isinstance(entry, str):
        return Reply(content=entry)
    if isinstance(entry, dict | list | int | float | bool):
        return Reply.json(entry)
    raise TypeError(
        f"llm_server: a script entry must be a Reply, Fault, str, JSON value or callable; got {entry!r}"
    )


def _make_handler(server: LLMServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "engram-llm-server/0.1"

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

        # -- plumbing --

        def _send(
            self,
            code: int,
            payload: Any,
            headers: dict[str, str] | None = None,
            content_type: str = "application/json",
        ) -> None:
            data = payload if isinstance(payload, bytes) else json.dumps(payload, ensure_ascii=False).encode()
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()

        def _drop(self) -> None:
            """Close the connection at once (RST where the platform allows it)."""
            self.close_connection = True
            try:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        def _error(
            self,
            api: Api | None,
            code: int,
            message: str,
            kind: str | None = None,
            headers: dict[str, str] | None = None,
        ) -> None:
            kind = kind or _error_type(code)
            if api == "anthropic":
                body: Any = {"type": "error", "error": {"type": kind, "message": message}}
            else:
                body = {"error": {"message": message, "type": kind, "param": None, "code": kind}}
            self._send(code, body, headers)

        # -- requests --

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if parts.path.rstrip("/").endswith("/models"):
                self._send(200, {"object": "list", "data": [{"id": "test-model", "object": "model"}]})
                return
            self._error(None, 404, f"no route GET {parts.path}", "not_found_error")

        def do_POST(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            path = parts.path.rstrip("/")
            api: Api | None = (
                "openai"
                if path.endswith("/chat/completions")
                else "embeddings"
                if path.endswith("/embeddings")
                else "anthropic"
                if path.endswith("/messages")
                else None
            )
            req = RecordedRequest(
                method="POST",
                path=parts.path,
                query={k: v[-1] for k, v in parse_qs(parts.query).items()},
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
                raw=raw,
                api=api,
                received=time.monotonic(),
            )
            server._record(req)
            if api is None:
                self._error(None, 404, f"no route POST {parts.path}", "not_found_error")
                return
            if server.api_key is not None and not self._authorised(api):
                message = (
                    "invalid x-api-key"
                    if api == "anthropic"
                    else "Incorrect API key provided. You can find your API key in your account settings."
                )
                self._error(
                    api, 401, message, "authentication_error" if api == "anthropic" else "invalid_api_key"
                )
                return
            if not isinstance(body, dict):
                self._error(api, 400, "the request body is not a JSON object", "invalid_request_error")
                return
            problem = self._invalid(api, body, req)
            if problem:
                self._error(api, 400, problem, "invalid_request_error")
                return
            for key in sorted(server.reject):
                if key in body:
                    self._error(
                        api,
                        400,
                        f"Unrecognized request argument supplied: {key} ({key} is not supported by this "
                        "server)",
                        "invalid_request_error",
                    )
                    return
            try:
                entry = _coerce(server._next(api, req))
            except Exception as exc:  # a bug in a test's responder: say so instead of dropping the connection
                self._error(api, 500, f"llm_server: the script entry raised {type(exc).__name__}: {exc}")
                return
            if entry is None:
                if api == "embeddings":
                    entry = Reply()
                else:
                    self._error(
                        api,
                        400,
                        f"llm_server: no scripted reply left for POST {parts.path}",
                        "script_exhausted",
                    )
                    return
            delay = entry.delay if entry.delay is not None else server.delay
            server._sleep(delay)
            try:
                if isinstance(entry, Fault):
                    self._fault(api, entry, body)
                else:
                    self._reply(api, entry, body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def _authorised(self, api: Api) -> bool:
            key = server.api_key
            got = {self.headers.get("x-api-key"), self.headers.get("api-key")}
            auth = self.headers.get("Authorization") or ""
            if auth.startswith("Bearer "):
                got.add(auth[7:])
            return key in got

        def _invalid(self, api: Api, body: dict[str, Any], req: RecordedRequest) -> str | None:
            if not server.validate:
                return None
            if api == "anthropic":
                if "anthropic-version" not in req.headers:
                    return "anthropic-version: header is required"
                if not isinstance(body.get("max_tokens"), int):
                    return "max_tokens: Field required"
                if not isinstance(body.get("model"), str):
                    return "model: Field required"
                msgs = body.get("messages")
                if not isinstance(msgs, list) or not msgs:
                    return "messages: Field required (at least one message)"
                for i, m in enumerate(msgs):
                    role = m.get("role") if isinstance(m, dict) else None
                    if role not in ("user", "assistant"):
                        return (
                            f'messages.{i}.role: Input should be "user" or "assistant" (got {role!r}); use the '
                            'top-level "system" parameter for system prompts'
                        )
                choice = body.get("tool_choice")
                if isinstance(choice, dict) and choice.get("type") == "tool":
                    names = {t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)}
                    if choice.get("name") not in names:
                        return f"tool_choice: tool {choice.get('name')!r} is not in tools"
            elif api == "openai":
                if not isinstance(body.get("model"), str) and "/deployments/" not in req.path:
                    return "you must provide a model parameter"
                if not isinstance(body.get("messages"), list) or not body["messages"]:
                    return "'messages' is a required property"
            elif api == "embeddings":
                inputs = body.get("input")
                if isinstance(inputs, str):
                    inputs = [inputs]
                if (
                    not isinstance(inputs, list)
                    or not inputs
                    or any(not isinstance(t, str) or not t for t in inputs)
                ):
                    return "'$.input' is invalid. Please check the API reference."
            return None

        # -- rendering --

        def _payload(self, api: Api, reply: Reply, body: dict[str, Any]) -> dict[str, Any]:
            if api == "embeddings":
                return _embeddings_payload(server, reply, body)
            if api == "anthropic":
                return _anthropic_payload(reply, body)
            return _openai_payload(reply, body)

        def _reply(self, api: Api, reply: Reply, body: dict[str, Any]) -> None:
            if body.get("stream") and api != "embeddings":
                self._stream(api, reply, body, chunks=1, interval=0.0)
                return
            self._send(200, self._payload(api, reply, body), reply.headers)

        def _fault(self, api: Api, fault: Fault, body: dict[str, Any]) -> None:
            if fault.kind == "status":
                if fault.body is not None:
                    self._send(
                        fault.code,
                        fault.body
                        if isinstance(fault.body, bytes | dict | list)
                        else str(fault.body).encode(),
                        fault.headers,
                    )
                    return
                message = fault.message or f"{http.HTTPStatus(fault.code).phrase} (injected by llm_server)"
                self._error(api, fault.code, message, None, fault.headers)
                return
            if fault.kind == "hang":
                server._sleep(fault.seconds)
                self._drop()
                return
            if fault.kind == "disconnect":
                self._drop()
                return
            if fault.kind == "not_json":
                text = fault.body if isinstance(fault.body, str) else "not json"
                self._send(fault.code, text.encode(), content_type="text/html")
                return
            reply = fault.reply if fault.reply is not None else self._default_reply(api, body)
            if fault.kind == "slow_stream" and body.get("stream") and api != "embeddings":
                self._stream(api, reply, body, chunks=fault.chunks, interval=fault.interval)
                return
            data = json.dumps(self._payload(api, reply, body), ensure_ascii=False).encode()
            if fault.kind == "truncated":
                cut = data[: max(1, min(len(data) - 1, int(len(data) * fault.fraction)))]
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data) if fault.declare_full else len(cut)))
                self.end_headers()
                self.wfile.write(cut)
                self.wfile.flush()
                if fault.declare_full:
                    self._drop()
                return
            # slow_stream of a non-streaming request: the JSON body, in pieces.
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            step = max(1, -(-len(data) // fault.chunks))
            for i in range(0, len(data), step):
                if i:
                    server._sleep(fault.interval)
                self.wfile.write(data[i : i + step])
                self.wfile.flush()

        def _default_reply(self, api: Api, body: dict[str, Any]) -> Reply:
            if api == "embeddings":
                return Reply()
            return Reply(content="ok")

        def _stream(
            self, api: Api, reply: Reply, body: dict[str, Any], *, chunks: int, interval: float
        ) -> None:
            events = (
                _anthropic_events(reply, body, chunks)
                if api == "anthropic"
                else _openai_events(reply, body, chunks)
            )
            self.close_connection = True
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            for i, event in enumerate(events):
                if i and interval:
                    server._sleep(interval)
                self.wfile.write(event.encode())
                self.wfile.flush()

    return Handler


def _error_type(code: int) -> str:
    return {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        413: "request_too_large",
        429: "rate_limit_error",
        500: "api_error",
        529: "overloaded_error",
    }.get(code, "api_error" if code >= 500 else "invalid_request_error")


def _split_text(text: str, n: int) -> list[str]:
    if n <= 1 or len(text) <= 1:
        return [text]
    step = max(1, -(-len(text) // n))
    return [text[i : i + step] for i in range(0, len(text), step)]


def _usage_counts(reply: Reply, body: dict[str, Any]) -> tuple[int, int]:
    prompt = body.get("messages", body.get("input", ""))
    if body.get("system"):
        prompt = [body["system"], prompt]
    out = reply.content
    if reply.calls:
        out += json.dumps([c.get("arguments") for c in reply.calls])
    inp = reply.input_tokens if reply.input_tokens is not None else _estimate_tokens(prompt)
    outp = reply.output_tokens if reply.output_tokens is not None else _estimate_tokens(out or "")
    return inp, outp


def _openai_payload(reply: Reply, body: dict[str, Any]) -> dict[str, Any]:
    inp, outp = _usage_counts(reply, body)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": reply.content if (reply.content or not reply.calls) else None,
    }
    if reply.calls:
        message["tool_calls"] = [
            {
                "id": f"call_{uuid.uuid4().hex[:24]}",
                "type": "function",
                "function": {
                    "name": c["name"],
                    "arguments": json.dumps(c.get("arguments") or {}, ensure_ascii=False),
                },
            }
            for c in reply.calls
        ]
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": reply.model or body.get("model") or "test-model",
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "tool_calls" if reply.calls else "stop",
            }
        ],
        "usage": {"prompt_tokens": inp, "completion_tokens": outp, "total_tokens": inp + outp},
    }


def _anthropic_blocks(reply: Reply, body: dict[str, Any]) -> list[dict[str, Any]]:
    choice = body.get("tool_choice")
    forced = choice.get("name") if isinstance(choice, dict) and choice.get("type") == "tool" else None
    blocks: list[dict[str, Any]] = []
    if reply.is_json and forced:
        value = reply.value
        if not isinstance(value, dict):
            value = {"value": value}
        return [{"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:24]}", "name": forced, "input": value}]
    if reply.content:
        blocks.append({"type": "text", "text": reply.content})
    for c in reply.calls:
        blocks.append(
            {
                "type": "tool_use",
                "id": f"toolu_{uuid.uuid4().hex[:24]}",
                "name": c["name"],
                "input": c.get("arguments") or {},
            }
        )
    return blocks


def _anthropic_payload(reply: Reply, body: dict[str, Any]) -> dict[str, Any]:
    inp, outp = _usage_counts(reply, body)
    blocks = _anthropic_blocks(reply, body)
    return {
        "id": f"msg_{uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": reply.model or body.get("model") or "test-model",
        "content": blocks,
        "stop_reason": "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": inp, "output_tokens": outp},
    }


def _embeddings_payload(server: LLMServer, reply: Reply, body: dict[str, Any]) -> dict[str, Any]:
    inputs = body.get("input")
    if isinstance(inputs, str):
        inputs = [inputs]
    inputs = [str(t) for t in inputs or []]
    dims = int(body.get("dimensions") or server.embedding_dims)
    vectors = reply.vectors if reply.vectors is not None else [server.embedding(t, dims) for t in inputs]
    b64 = body.get("encoding_format") == "base64"
    data = []
    for i, v in enumerate(vectors):
        emb: Any = base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode() if b64 else [float(x) for x in v]
        data.append({"object": "embedding", "index": i, "embedding": emb})
    tokens = reply.input_tokens if reply.input_tokens is not None else sum(len(t.split()) for t in inputs)
    return {
        "object": "list",
        "data": data,
        "model": reply.model or body.get("model") or "test-embed",
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _sse(data: Any, event: str | None = None) -> str:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"


def _openai_events(reply: Reply, body: dict[str, Any], chunks: int) -> list[str]:
    full = _openai_payload(reply, body)
    base = {k: full[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
    events = [
        _sse(
            base
            | {
                "choices": [
                    {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
                ]
            }
        )
    ]
    for piece in _split_text(reply.content, chunks) if reply.content else []:
        events.append(
            _sse(base | {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
        )
    for i, tc in enumerate(full["choices"][0]["message"].get("tool_calls") or []):
        events.append(
            _sse(
                base
                | {
                    "choices": [
                        {"index": 0, "delta": {"tool_calls": [dict(tc, index=i)]}, "finish_reason": None}
                    ]
                }
            )
        )
    events.append(
        _sse(
            base
            | {"choices": [{"index": 0, "delta": {}, "finish_reason": full["choices"][0]["finish_reason"]}]}
        )
    )
    if (body.get("stream_options") or {}).get("include_usage"):
        events.append(_sse(base | {"choices": [], "usage": full["usage"]}))
    events.append(_sse("[DONE]"))
    return events


def _anthropic_events(reply: Reply, body: dict[str, Any], chunks: int) -> list[str]:
    full = _anthropic_payload(reply, body)
    start = dict(
        full,
        content=[],
        stop_reason=None,
        usage={"input_tokens": full["usage"]["input_tokens"], "output_tokens": 0},
    )
    events = [_sse({"type": "message_start", "message": start}, "message_start")]
    for i, block in enumerate(full["content"]):
        if block["type"] == "text":
            events.append(
                _sse(
                    {
                        "type": "content_block_start",
                        "index": i,
                        "content_block": {"type": "text", "text": ""},
                    },
                    "content_block_start",
                )
            )
            for piece in _split_text(block["text"], chunks):
                events.append(
                    _sse(
                        {
                            "type": "content_block_delta",
                            "index": i,
                            "delta": {"type": "text_delta", "text": piece},
                        },
                        "content_block_delta",
                    )
                )
        else:
            events.append(
                _sse(
                    {"type": "content_block_start", "index": i, "content_block": dict(block, input={})},
                    "content_block_start",
                )
            )
            for piece in _split_text(json.dumps(block["input"], ensure_ascii=False), chunks):
                events.append(
                    _sse(
                        {
                            "type": "content_block_delta",
                            "index": i,
                            "delta": {"type": "input_json_delta", "partial_json": piece},
                        },
                        "content_block_delta",
                    )
                )
        events.append(_sse({"type": "content_block_stop", "index": i}, "content_block_stop"))
    events.append(
        _sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": full["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": full["usage"]["output_tokens"]},
            },
            "message_delta",
        )
    )
    events.append(_sse({"type": "message_stop"}, "message_stop"))
    return events


@pytest.fixture
def llm_server() -> Iterator[LLMServer]:
    """A running :class:`LLMServer` for one test (import this name into a test module or
    ``conftest.py`` to use it)."""
    with LLMServer() as server:
        yield server
