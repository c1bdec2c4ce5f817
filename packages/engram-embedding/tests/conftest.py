"""Fixtures for engram-embedding's tests.

``embeddings_server``: a real HTTP server on 127.0.0.1 (stdlib ``http.server`` in a thread, a real
socket) that speaks the OpenAI embeddings API at ``POST /v1/embeddings``. It returns deterministic,
deliberately *unnormalised* vectors (so re-normalisation is tested) in *reverse* order (so sorting
by ``index`` is tested), records every request, and plays a script of faults, one per request:

- ``("status", code, body, headers)``: answer with that status, JSON body and headers;
- ``("hang", seconds)``: accept the request and say nothing for that long;
- ``("count", k)``: answer with only ``k`` embeddings;
- ``("raw", code, text)``: answer a non-JSON body.
"""

from __future__ import annotations

import base64
import json
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest


def fake_vector(text: str, dims: int) -> np.ndarray:
    """The unnormalised vector the server returns for ``text`` (norm about 3 * sqrt(dims))."""
    rng = np.random.default_rng(zlib.crc32(text.encode("utf-8")))
    return (rng.standard_normal(dims) * 3.0).astype(np.float32)


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class EmbeddingsServer:
    base_url: str
    default_dims: int = 16
    require_key: str | None = None
    script: list[tuple[Any, ...]] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @staticmethod
    def vector(text: str, dims: int) -> np.ndarray:
        """The unnormalised vector served for ``text``."""
        return fake_vector(text, dims)

    def next_action(self) -> tuple[Any, ...] | None:
        with self.lock:
            return self.script.pop(0) if self.script else None


def _make_handler(state: EmbeddingsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

        def _send(self, code: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw)
            except ValueError:
                body = {}
            with state.lock:
                state.requests.append(Recorded(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            if self.path != "/v1/embeddings":
                self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                return
            if state.require_key is not None and self.headers.get("Authorization") != f"Bearer {state.require_key}":
                self._send(
                    401,
                    {"error": {"message": "Incorrect API key provided: sk-w***", "type": "invalid_request_error",
                               "code": "invalid_api_key"}},
                )
                return
            action = state.next_action()
            if action is not None:
                if action[0] == "status":
                    _, code, payload, headers = action
                    self._send(code, payload, headers)
                    return
                if action[0] == "hang":
                    state.release.wait(action[1])
                    try:
                        self._send(500, {"error": {"message": "woke up too late"}})
                    except OSError:
                        pass
                    return
                if action[0] == "raw":
                    _, code, text = action
                    self._send(code, text.encode())
                    return
            inputs = body.get("input")
            if isinstance(inputs, str):
                inputs = [inputs]
            if not isinstance(inputs, list) or not inputs or any(not isinstance(t, str) or not t for t in inputs):
                self._send(400, {"error": {"message": "'$.input' is invalid.", "type": "invalid_request_error"}})
                return
            dims = int(body.get("dimensions") or state.default_dims)
            b64 = body.get("encoding_format") == "base64"
            data = []
            for i, text in enumerate(inputs):
                v = fake_vector(text, dims)
                emb: Any = base64.b64encode(v.astype("<f4").tobytes()).decode() if b64 else [float(x) for x in v]
                data.append({"object": "embedding", "index": i, "embedding": emb})
            if action is not None and action[0] == "count":
                data = data[: action[1]]
            data.reverse()
            tokens = sum(len(t.split()) for t in inputs)
            self._send(
                200,
                {"object": "list", "data": data, "model": body.get("model"),
                 "usage": {"prompt_tokens": tokens, "total_tokens": tokens}},
            )

    return Handler


@pytest.fixture
def embeddings_server() -> Iterator[EmbeddingsServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(None))  # type: ignore[arg-type]
    httpd.daemon_threads = True
    host, port = httpd.server_address[:2]
    state = EmbeddingsServer(base_url=f"http://{host}:{port}/v1")
    httpd.RequestHandlerClass = _make_handler(state)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
