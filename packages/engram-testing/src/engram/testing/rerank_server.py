"""A real HTTP server on 127.0.0.1 that speaks Cohere's ``POST /v2/rerank`` protocol, for tests.

The machines engram's tests run on cannot reach Cohere, and a mocked transport would skip the parts
that fail in production (sockets, timeouts, broken bodies, status codes the client must translate).
:class:`RerankServer` is a stdlib ``ThreadingHTTPServer`` in a background thread, on a free port (or
a given one), that answers the requests ``cohere.AsyncClientV2.rerank`` sends:

- request: ``POST /v2/rerank`` with ``Authorization: Bearer <key>`` and the JSON body
  ``{"model", "query", "documents": [str, ...], "top_n"?, "max_tokens_per_doc"?}`` (the SDK leaves
  out the optional fields it is not given, and sends ``null`` for one given as ``None``);
- answer: ``{"id", "results": [{"index", "relevance_score"}, ...], "meta": {"api_version":
  {"version": "2", "is_experimental": false}, "billed_units": {"search_units"}}}``, results most
  relevant first, ``top_n`` of them when asked; one search unit per started 100 documents;
- errors: Cohere's shape, ``{"id", "message"}``, with its status (400 for a malformed request, 401
  for a missing or wrong key, 404 for an unknown model when :attr:`RerankServer.models` is set).

**It ranks for real.** :meth:`RerankServer.score` is a small deterministic lexical relevance in
``[0, 1)`` that, like a cross-encoder, depends on the query and one document only (never on the
other documents in the request), so rankings of parts of a list can be merged by score:

    relevance(q, d) = 1/|Q| · Σ_{t ∈ Q} tf(t, d) / (tf(t, d) + k1 · (1 − b + b · |d| / L))

where ``Q`` is the set of distinct query tokens, ``tf(t, d)`` the count of ``t`` in the document,
``|d|`` the document's length in tokens (after ``max_tokens_per_doc`` truncation), ``k1 = 1.2``,
``b = 0.75`` and ``L = 16``. It is BM25's term-frequency saturation and length normalisation
(Robertson & Zaragoza, "The Probabilistic Relevance Framework: BM25 and Beyond", 2009) without the
IDF factor (which would make a score depend on the other documents), averaged over the query terms.
Tokens are the lower-cased ``\\w+`` runs of the text. Ties are broken by the lower index.

**Scripted answers.** :meth:`RerankServer.reply` queues entries, one per rerank request: a
:class:`~engram.testing.llm_server.Fault` (an HTTP error with Cohere's error body, a 429 with
``Retry-After``, a hang, a truncated or non-JSON body, a slow body, a dropped connection; the same
class :mod:`engram.testing.llm_server` uses), a ``dict`` or ``list`` sent as the 200 body exactly as
given (for malformed answers), ``None`` (rank normally), or a callable ``(RerankRequest) -> entry``.
When the queue is empty the server ranks. Every request is recorded (:class:`RerankRequest`).

Example::

    from engram.testing.llm_server import Fault
    from engram.testing.rerank_server import RerankServer

    with RerankServer(api_key="test-key") as server:
        server.reply(Fault.rate_limited(retry_after=0.1))
        reranker = CohereReranker(base_url=server.base_url, api_key="test-key")
        ...  # the first request gets a 429, the retry is ranked
        assert server.last.documents == [...]

or, in a test module or ``conftest.py``, the ``rerank_server`` pytest fixture::

    from engram.testing.rerank_server import rerank_server  # noqa: F401  (registers the fixture)

From a shell (for trying a client by hand): ``python -m engram.testing.rerank_server --port 8099``.
"""

from __future__ import annotations

import argparse
import http
import json
import math
import re
import socket
import struct
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from .llm_server import Fault, _HTTPServer

__all__ = ["RERANK_PATH", "Fault", "RerankEntry", "RerankRequest", "RerankServer", "rerank_server"]

RERANK_PATH = "/v2/rerank"
"""The path ``cohere.AsyncClientV2.rerank`` posts to (appended to the client's base URL)."""

K1 = 1.2
B = 0.75
AVERAGE_LENGTH = 16.0
"""The constants of :meth:`RerankServer.score` (``k1``, ``b`` and the reference length ``L``, tokens)."""

_TOKEN = re.compile(r"\w+")


@dataclass
class RerankRequest:
    """One request the server received.

    Attributes:
        method: ``"POST"`` (or ``"GET"``).
        path: the path without the query string, e.g. ``/v2/rerank``.
        params: the URL query parameters (last value of each).
        headers: the request headers, names lower-cased.
        body: the parsed JSON body (``None`` when it was not JSON).
        raw: the body bytes.
        received: ``time.monotonic()`` when the request arrived.
    """

    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    body: Any
    raw: bytes
    received: float

    def _field(self, name: str) -> Any:
        return self.body.get(name) if isinstance(self.body, dict) else None

    @property
    def model(self) -> Any:
        """The body's ``model``."""
        return self._field("model")

    @property
    def query(self) -> Any:
        """The body's ``query`` (the search query, not the URL's)."""
        return self._field("query")

    @property
    def documents(self) -> list[Any]:
        """The body's ``documents`` (``[]`` when absent)."""
        docs = self._field("documents")
        return list(docs) if isinstance(docs, list) else []

    @property
    def top_n(self) -> Any:
        """The body's ``top_n`` (``None`` when absent or null)."""
        return self._field("top_n")

    @property
    def max_tokens_per_doc(self) -> Any:
        """The body's ``max_tokens_per_doc`` (``None`` when absent or null)."""
        return self._field("max_tokens_per_doc")

    @property
    def bearer(self) -> str | None:
        """The token of an ``Authorization: Bearer <token>`` header, if any."""
        auth = self.headers.get("authorization") or ""
        return auth[7:] if auth.startswith("Bearer ") else None


RerankEntry = Fault | dict | list | None | Callable[[RerankRequest], Any]
"""What a script holds: a Fault, a JSON body to send as it is, ``None`` (rank), or a callable."""


class RerankServer:
    """A Cohere ``/v2/rerank`` server on ``127.0.0.1`` that ranks lexically (see the module docstring).

    Args:
        api_key: when set, requests must carry ``Authorization: Bearer <api_key>`` or get HTTP 401.
        delay: seconds every answer waits before it is sent (a fault's own ``delay`` wins).
        models: when set, the model names the server knows; another gets HTTP 404.
        max_documents: when set, a request with more documents gets HTTP 400 (to check that a client
            splits its lists).
        port: the port to bind; ``0`` (the default) picks a free one.

    Use it as a context manager, or :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        delay: float = 0.0,
        models: Sequence[str] | None = None,
        max_documents: int | None = None,
        port: int = 0,
    ) -> None:
        self.api_key = api_key
        self.delay = delay
        self.models = set(models) if models is not None else None
        self.max_documents = max_documents
        self.requests: list[RerankRequest] = []
        self._bind_port = port
        self._script: deque[RerankEntry] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> RerankServer:
        """Bind the port on 127.0.0.1 and serve in a background thread."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        httpd = _HTTPServer(("127.0.0.1", self._bind_port), _Handler)
        httpd.owner = self  # type: ignore[attr-defined]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="engram-rerank-server",
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

    def __enter__(self) -> RerankServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses -----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the rerank server is not running")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``: the base URL to give a Cohere client (it adds ``/v2/rerank``)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The full rerank URL, ``<base_url>/v2/rerank``."""
        return self.base_url + RERANK_PATH

    # -- script and records ----------------------------------------------------------------------

    def reply(self, *entries: RerankEntry) -> RerankServer:
        """Queue entries, one per rerank request, in order (see the module docstring).

        Raises:
            TypeError: an entry of another type.
        """
        for entry in entries:
            if not (entry is None or isinstance(entry, Fault | dict | list) or callable(entry)):
                raise TypeError(
                    f"rerank_server: a script entry must be a Fault, dict, list, None or callable; got {entry!r}"
                )
        with self._lock:
            self._script.extend(entries)
        return self

    @property
    def pending(self) -> int:
        """Entries not used yet."""
        with self._lock:
            return len(self._script)

    def clear(self) -> None:
        """Forget the recorded requests and the script."""
        with self._lock:
            self.requests.clear()
            self._script.clear()

    @property
    def rerank_requests(self) -> list[RerankRequest]:
        """The recorded requests to ``/v2/rerank``."""
        with self._lock:
            return [r for r in self.requests if r.path.rstrip("/").endswith(RERANK_PATH)]

    @property
    def last(self) -> RerankRequest:
        """The most recent request."""
        with self._lock:
            return self.requests[-1]

    # -- scoring -------------------------------------------------------------------------------

    @staticmethod
    def tokens(text: str, max_tokens: int | None = None) -> list[str]:
        """The lower-cased ``\\w+`` tokens of ``text``, the first ``max_tokens`` of them when given."""
        found = _TOKEN.findall(text.lower())
        return found[:max_tokens] if max_tokens is not None else found

    @staticmethod
    def score(query: str, document: str, max_tokens: int | None = None) -> float:
        """The relevance of ``document`` to ``query`` in ``[0, 1)`` (formula in the module docstring);
        ``0.0`` when the query has no tokens. ``max_tokens`` truncates the document first, as
        ``max_tokens_per_doc`` does."""
        terms = set(RerankServer.tokens(query))
        doc = RerankServer.tokens(document, max_tokens)
        if not terms or not doc:
            return 0.0
        counts = Counter(doc)
        norm = K1 * (1.0 - B + B * len(doc) / AVERAGE_LENGTH)
        total = sum(counts[t] / (counts[t] + norm) for t in terms if counts[t])
        return total / len(terms)

    @staticmethod
    def rank(
        query: str, documents: Sequence[str], top_n: int | None = None, max_tokens_per_doc: int | None = None
    ) -> list[tuple[int, float]]:
        """``(index, relevance)`` of every document (or the best ``top_n``), most relevant first, ties
        by lower index: exactly what the server answers."""
        scored = [(i, RerankServer.score(query, d, max_tokens_per_doc)) for i, d in enumerate(documents)]
        scored.sort(key=lambda p: (-p[1], p[0]))
        return scored[:top_n] if top_n is not None else scored

    # -- internals -----------------------------------------------------------------------------

    def _record(self, req: RerankRequest) -> None:
        with self._lock:
            self.requests.append(req)

    def _next(self, req: RerankRequest) -> Any:
        with self._lock:
            entry = self._script.popleft() if self._script else None
        while callable(entry):
            entry = entry(req)
        return entry

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)


def _payload(ranked: list[tuple[int, float]], n_documents: int) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "results": [{"index": i, "relevance_score": s} for i, s in ranked],
        "meta": {
            "api_version": {"version": "2", "is_experimental": False},
            "billed_units": {"search_units": max(1, math.ceil(n_documents / 100))},
        },
    }


def _problem(server: RerankServer, body: dict[str, Any]) -> tuple[int, str] | None:
    """``(status, message)`` for a request the real API would refuse, else ``None``."""
    model, query, docs = body.get("model"), body.get("query"), body.get("documents")
    if not isinstance(model, str) or not model:
        return 400, "invalid request: model must be a non-empty string"
    if not isinstance(query, str) or not query.strip():
        return 400, "invalid request: query must be a non-empty string"
    if not isinstance(docs, list) or not docs:
        return 400, "invalid request: documents must be a non-empty list of strings"
    if any(not isinstance(d, str) for d in docs):
        return 400, "invalid request: every document must be a string"
    for name in ("top_n", "max_tokens_per_doc"):
        value = body.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            return 400, f"invalid request: {name} must be a positive integer"
    if server.max_documents is not None and len(docs) > server.max_documents:
        return (
            400,
            f"invalid request: too many documents ({len(docs)}), at most {server.max_documents} per request",
        )
    if server.models is not None and model not in server.models:
        return 404, f"model '{model}' not found"
    return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "engram-rerank-server/0.1"

    @property
    def owner(self) -> RerankServer:
        return self.server.owner  # type: ignore[attr-defined,no-any-return]

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def _send(
        self, code: int, payload: Any, headers: dict[str, str] | None = None, ctype: str = "application/json"
    ) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _error(self, code: int, message: str, headers: dict[str, str] | None = None) -> None:
        self._send(code, {"id": str(uuid.uuid4()), "message": message}, headers)

    def _abort(self) -> None:
        """Close the connection at once, with a reset where the platform allows it."""
        self.close_connection = True
        for call in (
            lambda: self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)),
            lambda: self.connection.shutdown(socket.SHUT_RDWR),
        ):
            try:
                call()
            except OSError:
                pass

    def _request(self, method: str) -> tuple[RerankRequest, str]:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        req = RerankRequest(
            method=method,
            path=parts.path,
            params={k: v[-1] for k, v in parse_qs(parts.query).items()},
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            raw=raw,
            received=time.monotonic(),
        )
        self.owner._record(req)
        return req, parts.path.rstrip("/")

    def do_GET(self) -> None:
        _, path = self._request("GET")
        self._error(404, f"no route GET {path}")

    def do_POST(self) -> None:
        server = self.owner
        req, path = self._request("POST")
        if not path.endswith(RERANK_PATH):
            self._error(404, f"no route POST {path}")
            return
        if server.api_key is not None and req.bearer != server.api_key:
            self._error(401, "no api key supplied" if req.bearer is None else "invalid api token")
            return
        if not isinstance(req.body, dict):
            self._error(400, "invalid request: the body is not a JSON object")
            return
        problem = _problem(server, req.body)
        if problem:
            self._error(*problem)
            return
        try:
            entry = server._next(req)
        except Exception as exc:  # a bug in a test's responder: say so instead of dropping the connection
            self._error(500, f"rerank_server: the script entry raised {type(exc).__name__}: {exc}")
            return
        delay = entry.delay if isinstance(entry, Fault) and entry.delay is not None else server.delay
        server._sleep(delay)
        try:
            if isinstance(entry, Fault):
                self._fault(entry, req)
            elif entry is not None:
                self._send(200, entry)
            else:
                self._send(200, self._ranking(req))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _ranking(self, req: RerankRequest) -> dict[str, Any]:
        ranked = RerankServer.rank(req.query, req.documents, req.top_n, req.max_tokens_per_doc)
        return _payload(ranked, len(req.documents))

    def _fault(self, fault: Fault, req: RerankRequest) -> None:
        server = self.owner
        if fault.kind == "status":
            if fault.body is not None:
                body = fault.body if isinstance(fault.body, bytes | dict | list) else str(fault.body).encode()
                self._send(fault.code, body, fault.headers)
            else:
                message = fault.message or f"{http.HTTPStatus(fault.code).phrase} (injected by rerank_server)"
                self._error(fault.code, message, fault.headers)
        elif fault.kind == "hang":
            server._sleep(fault.seconds)
            self._abort()
        elif fault.kind == "disconnect":
            self._abort()
        elif fault.kind == "not_json":
            text = fault.body if isinstance(fault.body, str) else "not json"
            self._send(fault.code, text.encode(), ctype="text/html")
        else:  # truncated, slow_stream: the real ranking, cut or paced
            data = json.dumps(self._ranking(req)).encode()
            if fault.kind == "truncated":
                cut = data[: max(1, min(len(data) - 1, int(len(data) * fault.fraction)))]
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data) if fault.declare_full else len(cut)))
                self.end_headers()
                self.wfile.write(cut)
                self.wfile.flush()
                if fault.declare_full:
                    self._abort()
                return
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


@pytest.fixture
def rerank_server() -> Iterator[RerankServer]:
    """A running :class:`RerankServer` (no key check) for one test (import this name into a test
    module or ``conftest.py`` to use it)."""
    with RerankServer() as server:
        yield server


def main(argv: Sequence[str] | None = None) -> None:
    """Serve until interrupted: ``python -m engram.testing.rerank_server [--port N] [--api-key KEY]``."""
    parser = argparse.ArgumentParser(description="A local Cohere /v2/rerank server that ranks lexically.")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--api-key", default=None, help="require this bearer token")
    args = parser.parse_args(argv)
    with RerankServer(api_key=args.api_key, port=args.port) as server:
        print(f"serving Cohere /v2/rerank at {server.url}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
