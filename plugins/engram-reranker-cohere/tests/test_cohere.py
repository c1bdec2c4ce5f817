"""CohereReranker over a real local Cohere /v2/rerank server (engram.testing.rerank_server) on 127.0.0.1."""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
from engram.core import Registry, Reranker
from engram.core.errors import ConfigurationError, InvalidInputError, ProviderError, ProviderTimeoutError
from engram.reranker.cohere import CohereAPIError, CohereReranker
from engram.testing.llm_server import Fault
from engram.testing.rerank_server import RerankServer

KEY = "co-test-0123456789-SECRET"

DOCS = [
    "Berlin is the capital of Germany.",
    "The cat sat on the mat while the other cat slept.",
    "Paris is the capital and largest city of France.",
    "Capital punishment was abolished in France in 1981.",
    "A mat for a cat.",
    "Nothing relevant at all here.",
]


@pytest.fixture
def server() -> Iterator[RerankServer]:
    with RerankServer(api_key=KEY) as s:
        yield s


def make(server: RerankServer, **fields: Any) -> CohereReranker:
    fields.setdefault("api_key", KEY)
    fields.setdefault("backoff_initial", 0.01)
    return CohereReranker(base_url=server.base_url, **fields)


@pytest.fixture
async def reranker(server: RerankServer):
    r = make(server)
    yield r
    await r.aclose()


@pytest.fixture
def no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CO_API_KEY", raising=False)
    monkeypatch.delenv("COHERE_API_KEY", raising=False)


def all_text(exc: BaseException) -> str:
    """The error, its repr and its whole printed chain (causes included)."""
    return str(exc) + repr(exc) + "".join(traceback.format_exception(exc))


# -- ranking --------------------------------------------------------------------------------------


async def test_ranks_best_first_with_the_servers_scores(reranker: CohereReranker, server: RerankServer):
    got = await reranker.rerank("capital of France", DOCS)
    # The Paris sentence holds all three query words; the punishment one two; Berlin's two.
    assert DOCS[got[0][0]] == "Paris is the capital and largest city of France."
    assert [i for i, _ in got] != list(range(len(DOCS)))
    assert sorted(i for i, _ in got) == list(range(len(DOCS)))
    scores = [s for _, s in got]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)
    for i, s in got:  # each score is the server's own for that document, so the index maps back
        assert s == pytest.approx(RerankServer.score("capital of France", DOCS[i]))
    assert got == RerankServer.rank("capital of France", DOCS)
    assert server.last.body == {"model": "rerank-v3.5", "query": "capital of France", "documents": DOCS}


async def test_indexes_refer_to_the_callers_list(reranker: CohereReranker):
    docs = ["zebra", "apple pie", "apple", "pie chart", "apple apple pie"]
    got = dict(await reranker.rerank("apple pie", docs))
    assert got[1] > got[2] and got[1] > got[3]  # both words beat one word
    assert got[0] == 0.0
    reordered = [docs[4], docs[0], docs[3], docs[1], docs[2]]
    again = dict(await reranker.rerank("apple pie", reordered))
    assert again[3] == got[1] and again[1] == got[0] and again[0] == got[4]


async def test_top_n(reranker: CohereReranker, server: RerankServer):
    full = await reranker.rerank("cat mat", DOCS)
    top = await reranker.rerank("cat mat", DOCS, top_n=2)
    assert top == full[:2]
    assert server.last.top_n == 2
    everything = await reranker.rerank("cat mat", DOCS, top_n=50)
    assert everything == full
    assert server.last.top_n == len(DOCS)  # never more than the documents sent


@pytest.mark.parametrize("top_n", [0, -1, True, 1.5, "2"])
async def test_bad_top_n_is_refused_before_any_request(
    reranker: CohereReranker, server: RerankServer, top_n: Any
):
    with pytest.raises(InvalidInputError, match="top_n"):
        await reranker.rerank("cat", DOCS, top_n=top_n)
    assert server.requests == []


@pytest.mark.parametrize(
    ("query", "documents"),
    [(None, DOCS), (b"cat", DOCS), ("cat", "one string"), ("cat", ["ok", 3]), ("cat", [None]), ("cat", 42)],
)
async def test_bad_input_is_refused_before_any_request(
    reranker: CohereReranker, server: RerankServer, query: Any, documents: Any
):
    with pytest.raises(InvalidInputError):
        await reranker.rerank(query, documents)
    assert server.requests == []


async def test_empty_documents_make_no_request(server: RerankServer, no_env_key: None):
    r = CohereReranker(base_url=server.base_url)  # no key anywhere: not needed without a request
    assert await r.rerank("anything", []) == []
    assert await r.rerank("anything", (), top_n=3) == []
    assert server.requests == []
    assert r._client is None


async def test_max_tokens_per_doc_is_sent(server: RerankServer):
    docs = ["one two three cat", "cat one two three"]
    async with make(server, max_tokens_per_doc=3) as r:
        got = await r.rerank("cat", docs)
    assert server.last.max_tokens_per_doc == 3
    assert got == [(1, pytest.approx(RerankServer.score("cat", docs[1], 3))), (0, 0.0)]


async def test_search_units_are_counted(reranker: CohereReranker):
    await reranker.rerank("cat", [f"doc {i}" for i in range(250)])
    assert reranker.search_units == 3.0  # one unit per started 100 documents
    await reranker.rerank("cat", ["cat"])
    assert reranker.search_units == 4.0


# -- batching -------------------------------------------------------------------------------------


def corpus(n: int) -> list[str]:
    words = ["apple", "pear", "plum", "fig", "kiwi", "lime", "date"]
    return [
        " ".join(words[(i * k) % len(words)] for k in range(1, 2 + i % 5)) + f" item{i}" for i in range(n)
    ]


async def test_long_lists_are_split_and_merged_by_score():
    docs = corpus(10)
    with RerankServer(api_key=KEY, max_documents=3) as server:  # the server refuses more than 3
        async with make(server, max_documents_per_request=3) as r:
            got = await r.rerank("apple plum fig", docs)
        sent = sorted((req.documents for req in server.rerank_requests), key=lambda part: docs.index(part[0]))
    assert sent == [docs[0:3], docs[3:6], docs[6:9], docs[9:10]]
    assert got == RerankServer.rank("apple plum fig", docs)  # the same as one request over all of them
    assert len({s for _, s in got}) > 3  # a real ordering, not ties


async def test_parts_ask_for_top_n_each(server: RerankServer):
    docs = corpus(7)
    async with make(server, max_documents_per_request=3) as r:
        top = await r.rerank("apple date", docs, top_n=2)
    assert top == RerankServer.rank("apple date", docs, top_n=2)
    assert sorted(req.top_n for req in server.rerank_requests) == [1, 2, 2]  # the last part has one document


async def test_parts_run_concurrently():
    with RerankServer(api_key=KEY, delay=0.3) as server:
        async with make(server, max_documents_per_request=2, max_concurrency=4) as r:
            start = time.monotonic()
            await r.rerank("apple", corpus(8))
            elapsed = time.monotonic() - start
        received = sorted(req.received for req in server.rerank_requests)
    assert len(received) == 4
    assert received[-1] - received[0] < 0.25  # all four were in flight together
    assert elapsed < 1.0


async def test_a_server_limit_without_batching_is_reported():
    with RerankServer(api_key=KEY, max_documents=3) as server:
        async with make(server) as r:
            with pytest.raises(CohereAPIError, match="too many documents") as info:
                await r.rerank("apple", corpus(5))
    assert info.value.status_code == 400
    assert len(server.requests) == 1  # a 400 is not retried


# -- the API key ----------------------------------------------------------------------------------


async def test_key_is_sent_as_bearer_with_the_client_headers(server: RerankServer):
    async with make(server, headers={"X-Proxy-Token": "p"}, client_name="my-app") as r:
        await r.rerank("cat", ["cat"])
    h = server.last.headers
    assert h["authorization"] == f"Bearer {KEY}"
    assert h["x-client-name"] == "my-app"
    assert h["x-proxy-token"] == "p"
    assert h["content-type"] == "application/json"
    assert server.last.path == "/v2/rerank"


async def test_key_never_shows_in_reprs_or_errors(server: RerankServer):
    r = make(server)
    assert KEY not in repr(r) + str(r.config) + repr(r.config) + repr(r.config.model_dump())
    wrong = make(server, api_key="wrong-" + KEY)
    with pytest.raises(CohereAPIError) as info:
        await wrong.rerank("cat", ["cat"])
    assert KEY not in all_text(info.value)
    server.reply(Fault.status(500, "boom"))
    with pytest.raises(CohereAPIError) as info:
        await make(server, max_retries=0).rerank("cat", ["cat"])
    assert KEY not in all_text(info.value)
    server.reply(Fault.hang(3))
    with pytest.raises(ProviderTimeoutError) as timeout:
        await make(server, timeout=0.2, max_retries=0).rerank("cat", ["cat"])
    assert KEY not in all_text(timeout.value)
    with pytest.raises(ConfigurationError) as bad:
        Registry().create("reranker", {"provider": "cohere", "config": {"api_key": KEY, "timeout": -1}})
    assert KEY not in all_text(bad.value)
    await r.aclose()
    await wrong.aclose()


async def test_the_environment_is_never_read(server: RerankServer, monkeypatch: pytest.MonkeyPatch):
    """Like every engram provider, the key comes from the config only (the application reads the
    environment at its edge): a Cohere key in the environment is not picked up."""
    monkeypatch.setenv("CO_API_KEY", KEY)
    monkeypatch.setenv("COHERE_API_KEY", KEY)
    r = CohereReranker(base_url=server.base_url)
    with pytest.raises(ConfigurationError, match="has no API key"):
        await r.rerank("cat", ["cat"])
    assert server.requests == []


async def test_no_key_anywhere_is_a_configuration_error(server: RerankServer, no_env_key: None):
    r = CohereReranker(base_url=server.base_url)
    with pytest.raises(ConfigurationError, match="set api_key in its config"):
        await r.rerank("cat", ["cat"])
    assert server.requests == []


# -- errors ---------------------------------------------------------------------------------------


async def test_401_is_refused_at_once(server: RerankServer):
    async with make(server, api_key="not-the-key", max_retries=3) as r:
        start = time.monotonic()
        with pytest.raises(CohereAPIError, match="HTTP 401: invalid api token") as info:
            await r.rerank("cat", ["cat"])
    assert time.monotonic() - start < 1.0
    assert info.value.status_code == 401
    assert info.value.server_message == "invalid api token"
    assert info.value.provider == "cohere"
    assert isinstance(info.value.__cause__, Exception)
    assert len(server.requests) == 1


async def test_unknown_model_is_a_404():
    with RerankServer(api_key=KEY, models=["rerank-v3.5"]) as server:
        async with make(server, model="rerank-nope") as r:
            with pytest.raises(CohereAPIError, match="model 'rerank-nope' not found") as info:
                await r.rerank("cat", ["cat"])
    assert info.value.status_code == 404


async def test_429_without_retries_reports_retry_after(server: RerankServer):
    server.reply(Fault.rate_limited(retry_after=7))
    async with make(server, max_retries=0) as r:
        start = time.monotonic()
        with pytest.raises(CohereAPIError, match="HTTP 429: Rate limit") as info:
            await r.rerank("cat", ["cat"])
    assert time.monotonic() - start < 1.0
    assert info.value.status_code == 429
    assert info.value.retry_after == 7.0


async def test_429_waits_exactly_retry_after_then_succeeds(server: RerankServer):
    server.reply(Fault.rate_limited(retry_after=None, retry_after_ms=300))
    async with make(server, max_retries=2) as r:
        got = await r.rerank("cat mat", DOCS)
    assert got == RerankServer.rank("cat mat", DOCS)
    first, second = server.rerank_requests
    assert 0.28 <= second.received - first.received < 1.0


async def test_retry_after_past_the_total_timeout_fails_at_once(server: RerankServer):
    server.reply(Fault.rate_limited(retry_after=30))
    async with make(server, max_retries=5, total_timeout=5) as r:
        start = time.monotonic()
        with pytest.raises(CohereAPIError, match="would pass total_timeout") as info:
            await r.rerank("cat", ["cat"])
    assert time.monotonic() - start < 1.0
    assert info.value.status_code == 429 and info.value.retry_after == 30.0


async def test_rate_limit_reset_header_is_honoured(server: RerankServer):
    reset = str(int(time.time()) + 40)
    server.reply(Fault.status(429, "slow down", headers={"X-RateLimit-Reset": reset}))
    async with make(server, max_retries=0) as r:
        with pytest.raises(CohereAPIError) as info:
            await r.rerank("cat", ["cat"])
    assert info.value.retry_after is not None and 35 < info.value.retry_after <= 40


async def test_500_keeps_the_servers_message(server: RerankServer):
    server.reply(Fault.status(500, "internal server error, this has been reported to our developers"))
    async with make(server, max_retries=0) as r:
        with pytest.raises(CohereAPIError, match="HTTP 500: internal server error, this has been") as info:
            await r.rerank("cat", ["cat"])
    assert info.value.status_code == 500
    assert not isinstance(info.value, ProviderTimeoutError)


async def test_5xx_is_retried_with_backoff(server: RerankServer):
    server.reply(Fault.status(503, "busy"), Fault.not_json("<html>502 Bad Gateway</html>", status=502))
    async with make(server, max_retries=2) as r:
        got = await r.rerank("cat mat", DOCS)
    assert got == RerankServer.rank("cat mat", DOCS)
    assert len(server.rerank_requests) == 3


async def test_5xx_until_retries_run_out(server: RerankServer):
    server.reply(*[Fault.status(502, "bad gateway")] * 3)
    async with make(server, max_retries=2) as r:
        with pytest.raises(CohereAPIError, match="after 3 attempts: HTTP 502: bad gateway") as info:
            await r.rerank("cat", ["cat"])
    assert info.value.status_code == 502
    assert len(server.rerank_requests) == 3


async def test_501_is_not_retried(server: RerankServer):
    server.reply(Fault.status(501, "not here"))
    async with make(server, max_retries=3) as r:
        with pytest.raises(CohereAPIError, match="refused: HTTP 501"):
            await r.rerank("cat", ["cat"])
    assert len(server.rerank_requests) == 1


async def test_timeout_is_a_provider_timeout(server: RerankServer):
    server.reply(Fault.hang(5))
    async with make(server, timeout=0.3, max_retries=0) as r:
        start = time.monotonic()
        with pytest.raises(ProviderTimeoutError, match=r"0\.3 s") as info:
            await r.rerank("cat", ["cat"])
    assert time.monotonic() - start < 1.5
    assert isinstance(info.value, TimeoutError) and isinstance(info.value, ProviderError)


async def test_a_slow_body_counts_against_the_attempt(server: RerankServer):
    server.reply(Fault.slow_stream(chunks=6, interval=0.2))  # 1 s in all, each piece well within 0.4 s
    async with make(server, timeout=0.4, max_retries=0) as r:
        start = time.monotonic()
        with pytest.raises(ProviderTimeoutError):
            await r.rerank("cat", ["cat"])
    assert time.monotonic() - start < 0.9


async def test_total_timeout_bounds_the_retries(server: RerankServer):
    server.reply(*[Fault.hang(5)] * 10)
    async with make(server, timeout=0.25, total_timeout=0.8, max_retries=10) as r:
        start = time.monotonic()
        with pytest.raises(ProviderTimeoutError):
            await r.rerank("cat", ["cat"])
    assert time.monotonic() - start < 1.6
    assert 2 <= len(server.rerank_requests) <= 4


async def test_a_timeout_is_retried(server: RerankServer):
    server.reply(Fault.hang(5))
    async with make(server, timeout=0.3, max_retries=1) as r:
        assert await r.rerank("cat", ["dog", "cat"]) == [
            (1, pytest.approx(RerankServer.score("cat", "cat"))),
            (0, 0.0),
        ]


async def test_not_json_answer(server: RerankServer):
    server.reply(Fault.not_json("<html>oops</html>"))
    async with make(server, max_retries=0) as r:
        with pytest.raises(CohereAPIError, match=r"not valid JSON.*oops") as info:
            await r.rerank("cat", ["cat"])
    assert info.value.status_code == 200


async def test_not_json_answer_is_retried(server: RerankServer):
    server.reply(Fault.not_json(), Fault.truncated(declare_full=False))
    async with make(server, max_retries=2) as r:
        assert await r.rerank("cat mat", DOCS) == RerankServer.rank("cat mat", DOCS)
    assert len(server.rerank_requests) == 3


async def test_broken_transfers(server: RerankServer):
    server.reply(Fault.truncated(), Fault.disconnect())
    async with make(server, max_retries=0) as r:
        with pytest.raises(CohereAPIError, match="broke off"):
            await r.rerank("cat", ["cat"])
        with pytest.raises(CohereAPIError, match="failed after 1 attempt"):
            await r.rerank("cat", ["cat"])


async def test_connection_refused(no_env_key: None):
    with RerankServer() as gone:
        url = gone.base_url
    async with CohereReranker(base_url=url, api_key=KEY, max_retries=1, backoff_initial=0.01) as r:
        with pytest.raises(CohereAPIError, match=r"connection failed.*ConnectError") as info:
            await r.rerank("cat", ["cat"])
    assert isinstance(info.value.__cause__, httpx.ConnectError)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"id": "x"}, "no 'results' list"),
        ({"results": [{"index": 0, "relevance_score": 0.5}]}, "1 results for 2 documents"),
        (
            {"results": [{"index": 0, "relevance_score": 0.5}, {"index": 0, "relevance_score": 0.4}]},
            "index 0",
        ),
        (
            {"results": [{"index": 0, "relevance_score": 0.5}, {"index": 2, "relevance_score": 0.4}]},
            "index 2",
        ),
        (
            {"results": [{"index": 0, "relevance_score": 0.5}, {"index": "x", "relevance_score": 0.4}]},
            "index 'x'",
        ),
        ({"results": [{"index": 0, "relevance_score": 0.5}, {"index": 1}]}, "relevance_score None"),
        (
            {"results": [{"index": 0, "relevance_score": float("nan")}, {"index": 1, "relevance_score": 0}]},
            "nan",
        ),
        ([1, 2], "not a JSON object"),
    ],
)
async def test_malformed_answers(server: RerankServer, body: Any, why: str):
    server.reply(body)
    async with make(server, max_retries=3) as r:
        with pytest.raises(CohereAPIError, match="invalid rerank answer") as info:
            await r.rerank("cat", ["cat", "dog"])
    assert why in str(info.value)
    assert len(server.rerank_requests) == 1  # a well-formed but wrong answer is not retried


async def test_results_are_sorted_whatever_the_server_order(server: RerankServer):
    server.reply({"results": [{"index": 0, "relevance_score": 0.1}, {"index": 1, "relevance_score": 0.9}]})
    async with make(server) as r:
        assert await r.rerank("q", ["a", "b"]) == [(1, 0.9), (0, 0.1)]


# -- registry, config, lifecycle ------------------------------------------------------------------


async def test_registry_by_name(server: RerankServer):
    registry = Registry()
    assert registry.load("reranker", "cohere") is CohereReranker
    r = registry.create(
        "reranker",
        {"provider": "cohere", "config": {"base_url": server.base_url, "api_key": KEY, "model": "m1"}},
    )
    assert isinstance(r, CohereReranker) and isinstance(r, Reranker)
    assert r.capabilities == frozenset({"remote"})
    async with r:
        assert await r.rerank("cat", ["dog", "cat"], top_n=1) == [
            (1, pytest.approx(RerankServer.score("cat", "cat")))
        ]
    assert server.last.model == "m1"
    with pytest.raises(ConfigurationError, match="bogus"):
        registry.create("reranker", {"provider": "cohere", "config": {"bogus": 1}})


async def test_registry_by_url(server: RerankServer):
    r = Registry().create(
        "reranker", f"cohere://:{KEY}@127.0.0.1:{server.port}?tls=false&model=m2&max_retries=0"
    )
    assert r.config.base_url == server.base_url
    assert r.config.model == "m2" and r.config.max_retries == 0
    assert r.config.api_key.get_secret_value() == KEY
    async with r:
        await r.rerank("cat", ["cat"])
    assert server.last.bearer == KEY
    default = CohereReranker.from_url("cohere://")
    assert default.config.base_url == "https://api.cohere.com" and default.config.api_key is None
    with pytest.raises(ConfigurationError):
        CohereReranker.from_url("cohere://host?nope=1")


def test_config_checks():
    assert (
        CohereReranker(base_url="https://proxy.example/cohere/v2/").config.base_url
        == "https://proxy.example/cohere"
    )
    assert CohereReranker(base_url="https://api.cohere.com/v1").config.base_url == "https://api.cohere.com"
    bad: dict[str, Any]
    for bad in (
        {"base_url": "api.cohere.com"},
        {"timeout": 0},
        {"max_documents_per_request": 0},
        {"model": ""},
    ):
        with pytest.raises(ConfigurationError):
            CohereReranker(**bad)
    with pytest.raises(ConfigurationError, match="not both"):
        CohereReranker(CohereReranker.Config(), model="x")
    r = CohereReranker(base_url="https://user:pw@proxy.example:8443/co")
    assert r.url == "https://proxy.example:8443/co/v2/rerank"
    assert "pw" not in repr(r)


async def test_nothing_connects_before_the_first_call(no_env_key: None):
    r = CohereReranker(base_url="http://127.0.0.1:9", max_retries=0)  # no key, nothing listening
    assert r._client is None and r._http is None
    await r.aclose()  # closing an unused reranker is fine


async def test_aclose_closes_the_transport_and_a_later_call_reopens(server: RerankServer):
    r = make(server)
    await r.rerank("cat", ["cat"])
    http = r._http
    assert http is not None and not http.is_closed
    await r.aclose()
    assert http.is_closed and r._client is None
    await r.aclose()
    assert await r.rerank("cat", ["cat", "dog"]) == RerankServer.rank("cat", ["cat", "dog"])
    second = r._http
    assert second is not None and second is not http
    async with r:
        pass
    assert second.is_closed


def test_usable_from_one_event_loop_after_another(server: RerankServer):
    r = make(server)

    async def once() -> list[tuple[int, float]]:
        return await r.rerank("cat", ["dog", "cat"])

    first = anyio.run(once)
    assert anyio.run(once) == first  # the second loop gets its own connections
    anyio.run(r.aclose)
    assert len(server.rerank_requests) == 2
