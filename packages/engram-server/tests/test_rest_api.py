"""The REST API in process (Starlette's TestClient runs the app's lifespan): routes, mem0 shapes,
the error shape and codes, the body limit, no tracebacks to clients, telemetry spans."""

from __future__ import annotations

import json
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import anyio
import pytest
from engram.core import AsyncMemory
from engram.core.errors import InvalidInputError, ProviderError, ProviderTimeoutError
from engram.server.rest import CODES, create_app
from fastapi.testclient import TestClient


def _config(path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "embedder": "hash",
        "vector_store": {"provider": "sqlite", "config": {"path": str(path)}},
        **extra,
    }


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(_config(tmp_path / "engram.db")), raise_server_exceptions=False) as c:
        yield c


def _add(c: TestClient, text: str, **scope: str) -> str:
    r = c.post("/memories", json={"messages": [{"role": "user", "content": text}], "infer": False, **scope})
    assert r.status_code == 200, r.text
    return str(r.json()["results"][0]["id"])


def _error(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return dict(body["error"])


def test_health_and_openapi(client: TestClient) -> None:
    assert client.get("/health").json() == {
        "status": "ok",
        "version": client.get("/health").json()["version"],
        "auth": False,
    }
    doc = client.get("/openapi.json").json()
    assert {
        "/memories",
        "/memories/{memory_id}",
        "/memories/{memory_id}/history",
        "/search",
        "/reset",
        "/archive",
        "/graph",
        "/import",
        "/export",
        "/health",
    } <= set(doc["paths"])
    assert doc["paths"]["/memories"]["post"]["responses"]["404"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }
    assert "securitySchemes" not in doc.get("components", {})  # no keys: the document declares no auth


def test_crud_round_trip_in_mem0_shapes(client: TestClient) -> None:
    r = client.post(
        "/memories",
        json={
            "messages": "I drink green tea every morning",
            "user_id": "maya",
            "infer": False,
            "metadata": {"source": "chat"},
        },
    )
    assert r.status_code == 200
    (change,) = r.json()["results"]
    assert change["event"] == "ADD" and change["memory"] == "I drink green tea every morning"
    mid = change["id"]
    _add(client, "My sister lives in Lisbon", user_id="maya", run_id="s1")
    _add(client, "Someone else's note", user_id="other")

    listed = client.get("/memories", params={"user_id": "maya"}).json()["results"]
    assert {m["memory"] for m in listed} == {"I drink green tea every morning", "My sister lives in Lisbon"}
    assert client.get("/memories", params={"user_id": "maya", "top_k": 1}).json()["results"][0]["memory"] == (
        "My sister lives in Lisbon"  # newest first
    )
    one = client.get(f"/memories/{mid}").json()
    assert one["user_id"] == "maya" and one["metadata"]["source"] == "chat" and "agent_id" not in one

    found = client.post(
        "/search", json={"query": "what does maya drink", "user_id": "maya", "limit": 1}
    ).json()
    assert [h["id"] for h in found["results"]] == [mid] and 0 <= found["results"][0]["score"] <= 1
    # mem0's newer clients put the scope inside filters
    via_filters = client.post(
        "/search", json={"query": "tea", "filters": {"user_id": "other"}, "top_k": 5}
    ).json()
    assert [h["memory"] for h in via_filters["results"]] == ["Someone else's note"]

    up = client.put(f"/memories/{mid}", json={"text": "I drink black coffee now"}).json()
    assert up["event"] == "UPDATE" and up["previous_memory"] == "I drink green tea every morning"
    meta_only = client.put(f"/memories/{mid}", json={"metadata": {"mood": "awake"}}).json()
    assert meta_only["memory"] == "I drink black coffee now"
    assert client.get(f"/memories/{mid}").json()["metadata"] == {
        "source": "chat",
        "role": "user",
        "mood": "awake",
    }

    history = client.get(f"/memories/{mid}/history").json()
    assert [e["event"] for e in history] == ["ADD", "UPDATE", "UPDATE"]
    archived = client.get("/archive", params={"user_id": "maya"}).json()["results"]
    assert "I drink green tea every morning" in {a["memory"] for a in archived} and all(
        a["archived"] for a in archived
    )

    assert client.delete(f"/memories/{mid}").json()["event"] == "DELETE"
    _error(client.get(f"/memories/{mid}"), 404, "not_found")
    assert [e["event"] for e in client.get(f"/memories/{mid}/history").json()][-1] == "DELETE"

    gone = client.delete("/memories", params={"user_id": "maya"}).json()
    assert gone["deleted"] == 1
    assert client.get("/memories", params={"user_id": "maya"}).json()["results"] == []
    assert len(client.get("/memories").json()["results"]) == 1  # no scope, no keys: every scope
    assert client.post("/reset").json() == {"message": "All memories reset"}
    assert client.get("/memories").json()["results"] == []


def test_graph_needs_a_scope_and_answers_mem0_shape(tmp_path: Path) -> None:
    with TestClient(create_app(_config(tmp_path / "g.db", graph_store="memory"))) as c:
        _error(c.get("/graph"), 422, "invalid_input")
        assert c.get("/graph", params={"user_id": "maya"}).json() == {"entities": [], "relations": []}
        _error(c.get("/graph", params={"user_id": "maya", "at": "not a time"}), 422, "invalid_input")


def test_export_then_import_round_trips(tmp_path: Path) -> None:
    with TestClient(create_app(_config(tmp_path / "a.db"))) as a:
        ids = {_add(a, f"fact {i}", user_id="maya") for i in range(3)}
        _add(a, "bob's fact", user_id="bob")
        exported = a.get("/export", params={"user_id": "maya"})
        assert exported.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in exported.text.splitlines()]
        assert {d["id"] for d in lines} == ids and [d["memory"] for d in lines] == [
            "fact 0",
            "fact 1",
            "fact 2",
        ]
    with TestClient(create_app(_config(tmp_path / "b.db"))) as b:
        r = b.post("/import", json={"content": exported.text})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["format"] == "jsonl" and body["imported"] == 3 and body["skipped"] == 0
        assert {m["id"] for m in b.get("/memories", params={"user_id": "maya"}).json()["results"]} == ids
        assert b.get(f"/memories/{lines[0]['id']}/history").json()[0]["metadata"] == {"source": "import"}
        bad = b.post("/import", json={"content": "{not json", "format": "locomo"})
        _error(bad, 422, "invalid_input")
        locomo = {
            "sample_id": "c1",
            "conversation": {
                "speaker_a": "A",
                "speaker_b": "B",
                "session_1_date_time": "1:56 pm on 8 May, 2023",
                "session_1": [{"speaker": "A", "dia_id": "D1:1", "text": "hello there"}],
            },
        }
        r = b.post("/import", json={"content": json.dumps(locomo)})
        assert r.json()["format"] == "locomo" and r.json()["imported"] == 1
        assert b.get("/memories", params={"user_id": "c1"}).json()["results"][0]["memory"] == "hello there"


def test_import_refuses_ids_the_other_routes_cannot_address(client: TestClient) -> None:
    from engram.server.rest._models import MAX_ID

    at_limit = json.dumps({"id": "i" * MAX_ID, "memory": "fits", "user_id": "u"})
    over = json.dumps({"id": "o" * (MAX_ID + 1), "memory": "too long an id", "user_id": "u"})
    r = client.post("/import", json={"content": at_limit + "\n" + over})
    assert f"at most {MAX_ID} characters" in _error(r, 422, "invalid_input")["message"]
    assert client.get("/memories", params={"user_id": "u"}).json()["results"] == []  # nothing stored
    assert client.post("/import", json={"content": at_limit}).json()["imported"] == 1
    assert client.get(f"/memories/{'i' * MAX_ID}").json()["memory"] == "fits"


@pytest.mark.parametrize(
    ("method", "path", "body", "code"),
    [
        (
            "post",
            "/memories",
            {"messages": "x", "user_id": "u", "expiration_date": "2030-01-01"},
            "invalid_input",
        ),
        ("post", "/memories", {"messages": "x"}, "invalid_input"),  # no scope
        ("post", "/memories", {"messages": [], "user_id": "u"}, "invalid_input"),
        ("post", "/memories", {"messages": "x", "user_id": "u", "infer": 0}, "invalid_input"),  # strict bool
        ("post", "/memories", {"messages": "x", "user_id": "u", "metadata": {"n": 2**70}}, "invalid_input"),
        ("post", "/search", {"query": "q", "user_id": "u", "filters": {"n": {"bogus": 1}}}, "invalid_filter"),
        ("post", "/search", {"query": "q", "user_id": "u", "limit": 2, "top_k": 3}, "invalid_input"),
        ("post", "/search", {"query": "q", "user_id": "u", "filters": {"user_id": "v"}}, "invalid_input"),
        ("put", "/memories/abc", {}, "invalid_input"),
    ],
)
def test_bad_input_is_422_in_the_error_shape(
    client: TestClient, method: str, path: str, body: Any, code: str
) -> None:
    before = client.get("/memories").json()["results"]
    err = _error(getattr(client, method)(path, json=body), 422, code)
    assert "Traceback" not in err["message"]
    assert client.get("/memories").json()["results"] == before  # nothing changed


def test_validation_details_name_the_field(client: TestClient) -> None:
    err = _error(
        client.post("/memories", json={"messages": "x", "user_id": "u", "prompt": "p"}), 422, "invalid_input"
    )
    assert err["details"][0]["loc"] == ["body", "prompt"] and "prompt" in err["message"]
    err = _error(client.get("/memories", params={"filters": "{oops"}), 422, "invalid_filter")
    err = _error(
        client.post("/memories", content=b"{oops", headers={"content-type": "application/json"}),
        422,
        "invalid_input",
    )


def test_unknown_route_and_method(client: TestClient) -> None:
    _error(client.get("/nowhere"), 404, "not_found")
    r = client.patch("/memories")
    _error(r, 405, "method_not_allowed")
    assert r.headers["allow"] == "DELETE, GET, POST"


def test_body_limit_refuses_before_parsing(tmp_path: Path) -> None:
    with TestClient(create_app(_config(tmp_path / "l.db"), max_body_bytes=200)) as c:
        big = {"messages": "x" * 300, "user_id": "u", "infer": False}
        err = _error(c.post("/memories", json=big), 413, "payload_too_large")
        assert "200 bytes" in err["message"]
        assert c.get("/memories", params={"user_id": "u"}).json()["results"] == []
        ok = c.post("/memories", json={"messages": "short", "user_id": "u", "infer": False})
        assert ok.status_code == 200
        _error(c.post("/memories", content=b"{}", headers={"content-length": "abc"}), 422, "invalid_input")


async def test_body_limit_counts_a_streamed_body(tmp_path: Path) -> None:
    """A chunked body without Content-Length is cut off as soon as it passes the limit."""
    app = create_app(_config(tmp_path / "s.db"), max_body_bytes=1000)
    chunks = [b"x" * 400] * 10
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": chunks[pulled - 1], "more_body": pulled < len(chunks)}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/memories",
        "raw_path": b"/memories",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
        "scheme": "http",
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 1),
        "http_version": "1.1",
        "asgi": {"version": "3.0"},
    }
    await app(scope, receive, send)
    assert sent[0]["status"] == 413 and pulled == 3  # stopped reading at the third 400-byte chunk
    assert json.loads(sent[1]["body"])["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (RuntimeError("secret /etc/engram/credentials"), 500, "internal"),
        (ProviderError("connect to db-host-7.internal failed", provider="qdrant"), 502, "provider_error"),
        (ProviderTimeoutError("db-host-7.internal timed out", provider="qdrant"), 504, "timeout"),
        (ExceptionGroup("tg", [InvalidInputError("bad thing")]), 422, "invalid_input"),
        (ExceptionGroup("tg", [RuntimeError("secret"), InvalidInputError("bad")]), 500, "internal"),
    ],
)
def test_failures_never_show_internals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: BaseException, status: int, code: str
) -> None:
    memory = AsyncMemory(_config(tmp_path / "e.db"))

    async def boom(*_: Any, **__: Any) -> Any:
        raise exc

    monkeypatch.setattr(memory, "search", boom)
    with TestClient(create_app(memory), raise_server_exceptions=False) as c:
        r = c.post("/search", json={"query": "q", "user_id": "u"})
    err = _error(r, status, code)
    assert "secret" not in r.text and "db-host-7" not in r.text and "Traceback" not in r.text
    if code == "provider_error":
        assert "qdrant" in err["message"]


def test_codes_table_is_stable() -> None:
    assert CODES == {
        "invalid_input": 422,
        "invalid_filter": 422,
        "unauthorized": 401,
        "forbidden": 403,
        "not_found": 404,
        "method_not_allowed": 405,
        "payload_too_large": 413,
        "internal": 500,
        "provider_error": 502,
        "configuration_error": 503,
        "timeout": 504,
    }


def test_procedural_without_llm_is_the_requests_error(client: TestClient) -> None:
    r = client.post(
        "/memories", json={"messages": "ran tests", "agent_id": "bot", "memory_type": "procedural"}
    )
    _error(r, 422, "invalid_input")


def test_lifespan_closes_the_memory_and_restarts_fresh(tmp_path: Path) -> None:
    app = create_app(_config(tmp_path / "r.db"))
    with TestClient(app) as c:
        _add(c, "kept across restarts", user_id="u")
        first = app.state.memory
    with TestClient(app) as c:  # a second lifespan: a new memory on the same configuration
        assert app.state.memory is not first
        assert [m["memory"] for m in c.get("/memories", params={"user_id": "u"}).json()["results"]] == [
            "kept across restarts"
        ]
    given = AsyncMemory(_config(tmp_path / "k.db"))
    with TestClient(create_app(given, own_memory=False)) as c:
        _add(c, "still open", user_id="u")
    assert anyio.run(lambda: given.count(user_id="u")) == 1  # the caller's memory was left open
    anyio.run(given.aclose)


def test_a_restart_keeps_the_memorys_telemetry_providers(tmp_path: Path) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = create_app(AsyncMemory(_config(tmp_path / "p.db"), tracer_provider=provider))
    for run in range(2):  # the second lifespan builds a new memory: its spans still go to provider
        with TestClient(app) as c:
            exporter.clear()
            c.get("/memories", params={"user_id": "u"})
            assert "engram.get_all" in [s.name for s in exporter.get_finished_spans()], run
    provider.shutdown()


def test_list_refuses_two_different_limits(client: TestClient) -> None:
    for i in range(3):
        _add(client, f"m{i}", user_id="u")
    _error(client.get("/memories", params={"user_id": "u", "limit": 1, "top_k": 2}), 422, "invalid_input")
    r = client.get("/memories", params={"user_id": "u", "limit": 2, "top_k": 2})
    assert r.status_code == 200 and len(r.json()["results"]) == 2


def test_bad_max_body_bytes() -> None:
    with pytest.raises(ValueError, match="max_body_bytes"):
        create_app(None, max_body_bytes=0)


# -- telemetry ------------------------------------------------------------------------------------


@pytest.fixture
def spans() -> Iterator[Any]:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):  # the first SDK provider of this process wins
        trace.set_tracer_provider(TracerProvider())
        provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    yield exporter
    processor.shutdown()


def _server_spans(exporter: Any) -> list[Any]:
    from opentelemetry import trace

    return [s for s in exporter.get_finished_spans() if s.kind == trace.SpanKind.SERVER]


def test_one_server_span_per_request_honouring_traceparent(client: TestClient, spans: Any) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent = "00f067aa0ba902b7"
    mid = _add(client, "traced", user_id="u")
    spans.clear()
    r = client.get(f"/memories/{mid}", headers={"traceparent": f"00-{trace_id}-{parent}-01"})
    assert r.status_code == 200
    client.get("/memories/missing-id")
    server = _server_spans(spans)
    assert [s.name for s in server] == ["GET /memories/{memory_id}", "GET /memories/{memory_id}"]
    ok, missing = server
    assert format(ok.context.trace_id, "032x") == trace_id and format(ok.parent.span_id, "016x") == parent
    assert ok.attributes["http.route"] == "/memories/{memory_id}"
    assert dict(ok.attributes) == {
        "http.request.method": "GET",
        "http.route": "/memories/{memory_id}",
        "http.response.status_code": 200,
    }
    assert missing.attributes["http.response.status_code"] == 404
    # the engine's engram.get span (engram-telemetry) descends from the request's SERVER span
    by_id = {s.context.span_id: s for s in spans.get_finished_spans()}
    (op,) = [
        s
        for s in spans.get_finished_spans()
        if s.name == "engram.get" and s.context.trace_id == ok.context.trace_id
    ]
    node = op
    while node.parent is not None and node.parent.span_id in by_id:
        node = by_id[node.parent.span_id]
    assert node is ok


def test_server_error_span_is_marked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spans: Any) -> None:
    from opentelemetry import trace

    memory = AsyncMemory(_config(tmp_path / "t.db"))

    async def boom(*_: Any, **__: Any) -> Any:
        raise RuntimeError("x")

    monkeypatch.setattr(memory, "search", boom)
    with TestClient(create_app(memory), raise_server_exceptions=False) as c:
        c.post("/search", json={"query": "q", "user_id": "u"})
    (span,) = _server_spans(spans)
    assert span.name == "POST /search" and span.status.status_code == trace.StatusCode.ERROR
    assert span.attributes["http.response.status_code"] == 500


def test_spans_never_record_ids_or_filter_values(client: TestClient, spans: Any) -> None:
    """FastAPI's own request span records ``url.query``; it is off, and engram's records no path,
    query, header or body: not the scope ids, memory ids or filter values."""
    secrets = ("alice@example.com", "Maya-secret-value", "topsecret-agent")
    mid = _add(client, "private", user_id="alice@example.com", agent_id="topsecret-agent")
    spans.clear()
    params = {
        "user_id": "alice@example.com",
        "agent_id": "topsecret-agent",
        "filters": json.dumps({"speaker": "Maya-secret-value"}),
        "limit": 5,
    }
    assert client.get("/memories", params=params).status_code == 200
    assert client.get(f"/memories/{mid}", params={"user_id": "alice@example.com"}).status_code == 200
    assert client.get("/memories", params={**params, "limit": 0}).status_code == 422  # a failed validation
    finished = spans.get_finished_spans()
    assert len(_server_spans(spans)) == 3 and {s.instrumentation_scope.name for s in finished} == {"engram"}
    for span in finished:
        values = [span.name, *(str(k) + "=" + str(v) for k, v in (span.attributes or {}).items())]
        values += [str(a) for e in span.events for a in (e.attributes or {}).values()]
        for text in values:
            assert not any(s in text for s in (*secrets, mid)), (span.name, text)


def test_own_middleware_on_a_bare_app(spans: Any) -> None:
    """The Telemetry middleware alone: names, attributes, traceparent and a 5xx."""
    from engram.server.rest._middleware import Telemetry
    from fastapi import FastAPI
    from opentelemetry import trace

    app = FastAPI(telemetry={"tracing": False})

    @app.get("/items/{item_id}")
    async def item(item_id: str) -> dict[str, str]:
        return {"id": item_id}

    @app.get("/fail")
    async def fail() -> None:
        raise RuntimeError("x")

    app.add_middleware(Telemetry)  # type: ignore[arg-type]
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    with TestClient(app, raise_server_exceptions=False) as c:
        c.get("/items/7", headers={"traceparent": f"00-{trace_id}-b7ad6b7169203331-01"})
        c.get("/fail")
    ok, failed = _server_spans(spans)
    assert ok.name == "GET /items/{item_id}" and format(ok.context.trace_id, "032x") == trace_id
    assert dict(ok.attributes) == {
        "http.request.method": "GET",
        "http.route": "/items/{item_id}",
        "http.response.status_code": 200,
    }
    assert failed.status.status_code == trace.StatusCode.ERROR and failed.attributes["error.type"] == "500"
