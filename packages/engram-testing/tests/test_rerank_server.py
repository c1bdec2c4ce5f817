"""The local Cohere /v2/rerank server, driven over a real socket by the standard library's HTTP client
and by the cohere SDK itself (which parses its answers)."""

from __future__ import annotations

import http.client
import json
import time
from typing import Any

import anyio
import pytest
from cohere import AsyncClientV2
from cohere.core.api_error import ApiError
from engram.testing.llm_server import Fault
from engram.testing.rerank_server import RERANK_PATH, RerankRequest, RerankServer, main, rerank_server


@pytest.fixture
def server():
    """The module's own pytest fixture, used as an ordinary generator here."""
    yield from rerank_server.__wrapped__()  # type: ignore[attr-defined]


def post(
    server: RerankServer, body: Any, headers: dict[str, str] | None = None, path: str = RERANK_PATH
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        conn.request("POST", path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


REQUEST = {
    "model": "rerank-v3.5",
    "query": "red apple",
    "documents": ["a red apple", "a green pear", "apple"],
}


def test_lifecycle_and_addresses():
    s = RerankServer()
    with pytest.raises(RuntimeError):
        _ = s.port
    with s:
        assert s.base_url == f"http://127.0.0.1:{s.port}"
        assert s.url == s.base_url + "/v2/rerank"
    with pytest.raises(RuntimeError):
        _ = s.port


def test_score_formula():
    score = RerankServer.score
    assert score("", "anything") == 0.0 and score("cat", "") == 0.0
    assert score("cat", "dog") == 0.0
    # one query term, one occurrence in a 1-token document: 1 / (1 + 1.2 * (0.25 + 0.75 / 16))
    assert score("cat", "cat") == pytest.approx(1 / (1 + 1.2 * (0.25 + 0.75 / 16)))
    assert 0 < score("cat", "cat") < 1
    assert score("cat", "cat cat") > score("cat", "cat")  # more occurrences
    assert score("cat", "cat " + "x " * 30) < score("cat", "cat x")  # longer documents score lower
    assert score("red apple", "apple red") > score("red apple", "apple blue")  # more query terms covered
    assert score("Cat!", "the CAT.") == score("cat", "the cat")  # case and punctuation are ignored
    assert score("cat", "a b c cat", max_tokens=3) == 0.0  # truncated before the match


def test_ranking_is_per_document():
    docs = ["the cat", "cat cat cat", "no", "cat"]
    ranked = RerankServer.rank("cat", docs)
    assert [i for i, _ in ranked] == [1, 3, 0, 2]
    assert RerankServer.rank("cat", docs, top_n=2) == ranked[:2]
    # a document's score does not depend on the others in the request (as with a cross-encoder)
    assert dict(RerankServer.rank("cat", docs[:2]))[1] == dict(ranked)[1]
    assert RerankServer.rank("x", ["a", "b", "c"]) == [(0, 0.0), (1, 0.0), (2, 0.0)]  # ties by index


def test_answer_shape(server: RerankServer):
    status, headers, raw = post(server, dict(REQUEST, top_n=2))
    assert status == 200 and headers["content-type"] == "application/json"
    payload = json.loads(raw)
    assert set(payload) == {"id", "results", "meta"}
    assert payload["results"] == [
        {"index": i, "relevance_score": s} for i, s in RerankServer.rank("red apple", REQUEST["documents"], 2)
    ]
    assert payload["results"][0]["index"] == 0
    assert payload["meta"] == {
        "api_version": {"version": "2", "is_experimental": False},
        "billed_units": {"search_units": 1},
    }
    status, _, raw = post(server, dict(REQUEST, documents=["x"] * 201, top_n=None))
    assert status == 200 and json.loads(raw)["meta"]["billed_units"]["search_units"] == 3
    assert len(json.loads(raw)["results"]) == 201


def test_the_cohere_sdk_parses_the_answers():
    async def go(server: RerankServer) -> None:
        client = AsyncClientV2(api_key="k1", base_url=server.base_url)
        try:
            res = await client.rerank(model="m", query="red apple", documents=REQUEST["documents"], top_n=2)
            assert [(r.index, r.relevance_score) for r in res.results] == RerankServer.rank(
                "red apple", REQUEST["documents"], 2
            )
            assert res.meta is not None and res.meta.billed_units is not None
            assert res.meta.billed_units.search_units == 1
            assert res.id and res.meta.api_version is not None and res.meta.api_version.version == "2"
            bad = AsyncClientV2(api_key="wrong", base_url=server.base_url)
            with pytest.raises(ApiError) as info:
                await bad.rerank(model="m", query="q", documents=["d"], request_options={"max_retries": 0})
            assert info.value.status_code == 401 and info.value.body["message"] == "invalid api token"
        finally:
            await client._client_wrapper.httpx_client.httpx_client.aclose()

    with RerankServer(api_key="k1") as server:
        anyio.run(go, server)
        req = server.rerank_requests[0]
        assert req.bearer == "k1" and req.model == "m" and req.top_n == 2
        assert req.headers["user-agent"].startswith("cohere/")


def test_auth(server: RerankServer):
    server.api_key = "secret"
    status, _, raw = post(server, REQUEST)
    assert status == 401 and json.loads(raw)["message"] == "no api key supplied"
    status, _, raw = post(server, REQUEST, {"Authorization": "Bearer nope"})
    assert status == 401 and json.loads(raw)["message"] == "invalid api token"
    assert "id" in json.loads(raw)
    status, _, _ = post(server, REQUEST, {"Authorization": "Bearer secret"})
    assert status == 200


@pytest.mark.parametrize(
    ("change", "status", "words"),
    [
        ({"model": None}, 400, "model"),
        ({"query": ""}, 400, "query"),
        ({"documents": []}, 400, "documents"),
        ({"documents": ["ok", 1]}, 400, "document"),
        ({"top_n": 0}, 400, "top_n"),
        ({"max_tokens_per_doc": "3"}, 400, "max_tokens_per_doc"),
    ],
)
def test_refuses_malformed_requests(server: RerankServer, change: dict[str, Any], status: int, words: str):
    got, _, raw = post(server, dict(REQUEST, **change))
    assert got == status and words in json.loads(raw)["message"]


def test_not_json_and_unknown_routes(server: RerankServer):
    assert post(server, b"{nope")[0] == 400
    assert post(server, REQUEST, path="/v1/rerank")[0] == 404
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("GET", "/v2/rerank")
    assert conn.getresponse().status == 404
    conn.close()


def test_models_and_max_documents():
    with RerankServer(models=["rerank-v3.5"], max_documents=2) as s:
        status, _, raw = post(s, dict(REQUEST, model="other", documents=["a", "b"]))
        assert status == 404 and json.loads(raw)["message"] == "model 'other' not found"
        status, _, raw = post(s, REQUEST)
        assert status == 400 and "too many documents (3)" in json.loads(raw)["message"]
        assert post(s, dict(REQUEST, documents=["a", "b"]))[0] == 200


def test_max_tokens_per_doc_truncates(server: RerankServer):
    _, _, raw = post(server, dict(REQUEST, documents=["one two three apple", "apple"], max_tokens_per_doc=3))
    results = json.loads(raw)["results"]
    assert results[0]["index"] == 1 and results[1] == {"index": 0, "relevance_score": 0.0}


def test_records_requests(server: RerankServer):
    post(server, dict(REQUEST, top_n=1), {"X-Extra": "v"}, path=RERANK_PATH + "?trace=1")
    req = server.last
    assert isinstance(req, RerankRequest)
    assert (req.method, req.path, req.params) == ("POST", "/v2/rerank", {"trace": "1"})
    assert req.headers["x-extra"] == "v" and req.bearer is None
    assert req.query == "red apple" and req.documents == REQUEST["documents"] and req.top_n == 1
    assert req.max_tokens_per_doc is None
    server.clear()
    assert server.requests == []


def test_scripted_faults(server: RerankServer):
    server.reply(
        Fault.rate_limited(retry_after=3),
        Fault.status(503, "overloaded"),
        Fault.status(500, body={"custom": True}),
        Fault.not_json("<html>x</html>"),
        {"results": "weird"},
        None,
        lambda req: Fault.status(418) if req.top_n == 7 else None,
    )
    assert server.pending == 7
    status, headers, raw = post(server, REQUEST)
    assert status == 429 and headers["retry-after"] == "3" and "Rate limit" in json.loads(raw)["message"]
    status, _, raw = post(server, REQUEST)
    assert status == 503 and json.loads(raw)["message"] == "overloaded"
    assert post(server, REQUEST)[2] == b'{"custom": true}'
    status, headers, raw = post(server, REQUEST)
    assert status == 200 and raw == b"<html>x</html>" and headers["content-type"] == "text/html"
    assert json.loads(post(server, REQUEST)[2]) == {"results": "weird"}
    assert len(json.loads(post(server, REQUEST)[2])["results"]) == 3  # None: ranked
    assert post(server, dict(REQUEST, top_n=7))[0] == 418
    assert server.pending == 0
    assert post(server, REQUEST)[0] == 200  # an empty script ranks
    with pytest.raises(TypeError):
        server.reply(42)  # type: ignore[arg-type]


def test_broken_answers(server: RerankServer):
    server.reply(Fault.truncated(declare_full=False), Fault.truncated(), Fault.disconnect())
    status, _, raw = post(server, REQUEST)
    assert status == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(raw)
    with pytest.raises((http.client.IncompleteRead, ConnectionError)):
        post(server, REQUEST)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        post(server, REQUEST)


def test_hang_and_delay():
    with RerankServer(delay=0.2) as s:
        start = time.monotonic()
        assert post(s, REQUEST)[0] == 200
        assert time.monotonic() - start >= 0.2
        s.reply(Fault.hang(10))
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=0.3)
        conn.request(
            "POST", RERANK_PATH, body=json.dumps(REQUEST), headers={"Content-Type": "application/json"}
        )
        with pytest.raises(TimeoutError):
            conn.getresponse()
        conn.close()
        start = time.monotonic()
    assert time.monotonic() - start < 2  # stopping wakes the hanging request


def test_main_parses_its_arguments():
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
