"""LLMReranker: one listwise call per rerank, the prompt, truncation, the cap, scores, bad replies,
LLM errors, bind_llm, the registry and the lifecycle. The LLM is ``openai`` on the local
OpenAI-compatible server (conftest.py), or ``scripted`` in-process where only the reranker's own
handling is under test."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from engram.core import LLMResponse, Registry
from engram.core.errors import ConfigurationError, ProviderError, ProviderTimeoutError
from engram.llm.openai import OpenAILLM
from engram.llm.scripted import ScriptedLLM
from engram.reranker.llm import SYSTEM_PROMPT, LLMReranker, parse_ranking
from engram.telemetry import current_llm_task
from engram.testing.llm_server import Fault, LLMServer, Reply

QUERY = "Which drink does the user like in the morning?"
DOCS = [
    "The user lives in Lisbon.",
    "The user's sister plays the piano.",
    "The user drinks green tea every morning.",
    "In the morning the user walks the dog.",
    "The user dislikes coffee.",
    "The user plays chess on Sundays.",
]


def chat(server: LLMServer) -> list[Any]:
    return server.requests_for("openai")


def scores_for(order: list[int], n: int) -> list[tuple[int, float]]:
    return [(i, 1.0 - p / n) for p, i in enumerate(order)]


# -- one call, the prompt ----------------------------------------------------------------------


async def test_one_llm_call_per_rerank_with_every_candidate_in_the_prompt(
    ranking_server: LLMServer, helpers: Any
) -> None:
    async with LLMReranker(llm=helpers.llm_spec(ranking_server)) as reranker:
        out = await reranker.rerank(QUERY, DOCS)
        assert len(chat(ranking_server)) == 1
        request = chat(ranking_server)[0]
        assert helpers.passages_of(request) == dict(enumerate(DOCS))
        assert f"Query: {QUERY}" in helpers.prompt_of(request)
        assert request.messages[0]["role"] == "system"
        assert request.messages[0]["content"].startswith(SYSTEM_PROMPT)  # openai may add a JSON reminder
        assert request.body["response_format"] == {"type": "json_object"}
        assert request.body["temperature"] == 0
        # the server's model ranks by shared words: "morning" and "the user" lift 2 and 3
        expected = helpers.word_overlap_ranking(request).value["ranking"]
        assert out == scores_for(expected, len(DOCS))
        assert out[0][0] in (2, 3)
        await reranker.rerank(QUERY, DOCS, top_n=2)
        await reranker.rerank("Where does the user live?", DOCS[:3])
        assert len(chat(ranking_server)) == 3


async def test_the_llm_order_is_kept_and_scored_by_position(llm_server: LLMServer, helpers: Any) -> None:
    llm_server.reply(Reply.json({"ranking": [4, 0, 2, 5, 1, 3]}))
    async with LLMReranker(llm=helpers.llm_spec(llm_server)) as reranker:
        out = await reranker.rerank(QUERY, DOCS)
    assert [i for i, _ in out] == [4, 0, 2, 5, 1, 3]
    assert [s for _, s in out] == pytest.approx([1.0, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6])


async def test_documents_are_cut_and_whitespace_collapsed(ranking_server: LLMServer, helpers: Any) -> None:
    long_doc = "tea " * 500
    query = "morning " * 100
    docs = ["short\n\tone", long_doc]
    async with LLMReranker(
        llm=helpers.llm_spec(ranking_server), max_document_chars=40, max_query_chars=30
    ) as reranker:
        await reranker.rerank(query, docs)
    request = chat(ranking_server)[0]
    passages = helpers.passages_of(request)
    assert passages[0] == "short one"
    assert len(passages[1]) == 40 and passages[1].endswith("…") and passages[1].startswith("tea tea")
    query_line = next(line for line in helpers.prompt_of(request).splitlines() if line.startswith("Query: "))
    assert len(query_line) == len("Query: ") + 30 and query_line.endswith("…")
    assert long_doc.strip() not in helpers.prompt_of(request)


async def test_top_n_cuts_the_same_ranking(llm_server: LLMServer, helpers: Any) -> None:
    llm_server.reply(Reply.json({"ranking": [3, 1, 0, 2, 5, 4]}), Reply.json({"ranking": [3, 1, 0, 2, 5, 4]}))
    async with LLMReranker(llm=helpers.llm_spec(llm_server)) as reranker:
        full = await reranker.rerank(QUERY, DOCS)
        top = await reranker.rerank(QUERY, DOCS, top_n=2)
        assert top == full[:2] == [(3, 1.0), (1, pytest.approx(5 / 6))]
    assert len(chat(llm_server)) == 2


async def test_documents_past_max_documents_are_not_sent_and_follow_in_order(
    llm_server: LLMServer, helpers: Any
) -> None:
    llm_server.reply(Reply.json({"ranking": [2, 1]}))
    async with LLMReranker(llm=helpers.llm_spec(llm_server), max_documents=3) as reranker:
        out = await reranker.rerank(QUERY, DOCS)
    (request,) = chat(llm_server)
    assert helpers.passages_of(request) == dict(enumerate(DOCS[:3]))
    for doc in DOCS[3:]:
        assert doc not in helpers.prompt_of(request)
    # ranked 2, 1; then shown-but-omitted 0; then the unshown 3, 4, 5 in input order
    assert out == scores_for([2, 1, 0, 3, 4, 5], len(DOCS))


async def test_fewer_than_two_documents_need_no_call(llm_server: LLMServer, helpers: Any) -> None:
    async with LLMReranker(llm=helpers.llm_spec(llm_server)) as reranker:
        assert await reranker.rerank(QUERY, []) == []
        assert await reranker.rerank(QUERY, ["only one"]) == [(0, 1.0)]
        assert await reranker.rerank(QUERY, ["only one"], top_n=3) == [(0, 1.0)]
    assert chat(llm_server) == []


# -- the reply ---------------------------------------------------------------------------------


async def test_omitted_invalid_and_repeated_entries(llm_server: LLMServer, helpers: Any) -> None:
    llm_server.reply(Reply.json({"ranking": [5, "1", 1, -1, 99, "x", True, 2.0, "[0]", None, 2.5]}))
    async with LLMReranker(llm=helpers.llm_spec(llm_server)) as reranker:
        out = await reranker.rerank(QUERY, DOCS)
        assert reranker.fallbacks == 0
    # 5, 1, 2, 0 ranked; 3 and 4 omitted: after them, in input order
    assert out == scores_for([5, 1, 2, 0, 3, 4], len(DOCS))


@pytest.mark.parametrize(
    "reply",
    [
        Reply.text("The second passage is the most relevant, then the third."),
        Reply.json({"answer": "tea"}),
        Reply.json({"ranking": "2, 3"}),
        Reply.json({"ranking": [17, -2, "none"]}),
        Reply.json({"ranking": []}),
        Reply.text(""),
    ],
    ids=["prose", "no-list", "string", "no-valid-index", "empty", "empty-text"],
)
async def test_an_unusable_reply_keeps_the_input_order_and_warns(
    llm_server: LLMServer, helpers: Any, caplog: pytest.LogCaptureFixture, reply: Reply
) -> None:
    llm_server.reply(reply)
    async with LLMReranker(llm=helpers.llm_spec(llm_server)) as reranker:
        with caplog.at_level(logging.WARNING, logger="engram.reranker"):
            out = await reranker.rerank(QUERY, DOCS, top_n=4)
        assert reranker.fallbacks == 1
    assert out == scores_for([0, 1, 2, 3], len(DOCS))
    assert len(chat(llm_server)) == 1, "no retry"
    assert any("no usable ranking" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"ranking": [2, 0, 1]}', [2, 0, 1]),
        ('```json\n{"ranking": [1, 0]}\n```', [1, 0]),
        ('Here you go: {"ranking": [1]} hope it helps', [1]),
        ('{"order": [2, 1]}', [2, 1]),
        ('{"order": [2, 1], "other": [0]}', []),
        ("[2, 1, 0]", [2, 1, 0]),
        ('{"ranking": ["[1]", " 2 ", "0"]}', [1, 2, 0]),
        ('{"ranking": [1.0, 1.5, Infinity]}', [1]),
        ("not json", []),
    ],
)
def test_parse_ranking(text: str, expected: list[int]) -> None:
    assert parse_ranking(text, 3) == expected
    assert parse_ranking(LLMResponse(text=text), 3) == expected


def test_parse_ranking_reads_tool_call_arguments() -> None:
    reply = LLMResponse(text="", tool_calls=[{"name": "rank", "arguments": {"ranking": [1, 0]}}])
    assert parse_ranking(reply, 2) == [1, 0]


# -- LLM failures ------------------------------------------------------------------------------


async def test_an_llm_server_error_propagates_as_provider_error(llm_server: LLMServer, helpers: Any) -> None:
    llm_server.reply(Fault.status(500))
    async with LLMReranker(llm=helpers.llm_spec(llm_server)) as reranker:
        with pytest.raises(ProviderError) as info:
            await reranker.rerank(QUERY, DOCS)
        assert reranker.fallbacks == 0
    assert info.value.provider == "openai"


async def test_a_foreign_exception_from_the_llm_becomes_provider_error() -> None:
    def respond(messages: list[dict[str, Any]], options: dict[str, Any]) -> str:
        raise RuntimeError("the model crashed")

    async with LLMReranker(llm=ScriptedLLM(respond=respond)) as reranker:
        with pytest.raises(ProviderError, match="RuntimeError: the model crashed") as info:
            await reranker.rerank(QUERY, DOCS)
    assert info.value.provider == "llm" and isinstance(info.value.__cause__, RuntimeError)


async def test_a_slow_llm_times_out(llm_server: LLMServer, helpers: Any) -> None:
    llm_server.reply(Reply.json({"ranking": [0, 1]}, delay=2.0))
    async with LLMReranker(llm=helpers.llm_spec(llm_server), timeout=0.2) as reranker:
        with pytest.raises(ProviderTimeoutError, match=r"0\.2 s"):
            await reranker.rerank(QUERY, DOCS)


async def test_the_call_is_named_rerank_for_telemetry() -> None:
    tasks: list[str | None] = []

    def respond(messages: list[dict[str, Any]], options: dict[str, Any]) -> str:
        tasks.append(current_llm_task())
        assert options["response_format"] == {"type": "json_object"}
        return '{"ranking": [1, 0]}'

    reranker = LLMReranker(llm=ScriptedLLM(respond=respond))
    assert await reranker.rerank(QUERY, DOCS[:2]) == [(1, 1.0), (0, 0.5)]
    assert tasks == ["rerank"]


async def test_json_mode_off_sends_no_response_format() -> None:
    llm = ScriptedLLM(replies=['{"ranking": [0, 1]}'])
    await LLMReranker(llm=llm, json_mode=False, temperature=None, max_tokens=64).rerank(QUERY, DOCS[:2])
    (call,) = llm.calls
    assert call["response_format"] is None and call["temperature"] is None and call["max_tokens"] == 64


# -- the LLM: none, bound, configured ----------------------------------------------------------


async def test_no_llm_is_a_configuration_error_naming_the_fix() -> None:
    reranker = LLMReranker()
    assert reranker.needs_llm
    with pytest.raises(ConfigurationError, match=r"bind_llm\(\)"):
        await reranker.rerank(QUERY, DOCS)
    assert await reranker.rerank(QUERY, []) == []  # nothing to rank needs no LLM


async def test_bind_llm_lends_an_llm_that_aclose_leaves_open(ranking_server: LLMServer, helpers: Any) -> None:
    reranker = Registry().create("reranker", "llm")
    assert isinstance(reranker, LLMReranker) and reranker.needs_llm
    llm = OpenAILLM(base_url=ranking_server.openai_url, model="test-model", **helpers.FAST)
    with pytest.raises(ConfigurationError, match="LLM instance"):
        reranker.bind_llm("openai")
    with pytest.raises(ConfigurationError):
        reranker.bind_llm(OpenAILLM)
    assert reranker.bind_llm(llm) is True
    assert not reranker.needs_llm
    assert reranker.bind_llm(ScriptedLLM(replies=['{"ranking": [0]}'])) is False, "the first LLM stays"
    assert len(await reranker.rerank(QUERY, DOCS)) == len(DOCS)
    await reranker.aclose()
    assert not reranker.needs_llm, "still bound after aclose"
    assert len(await reranker.rerank(QUERY, DOCS)) == len(DOCS)
    assert len(chat(ranking_server)) == 2
    reply = await llm.generate([{"role": "user", "content": "Query: x\n[0] y"}])  # the lender's LLM is open
    assert reply.text
    await llm.aclose()


async def test_a_configured_llm_is_not_replaced_by_bind_llm(ranking_server: LLMServer, helpers: Any) -> None:
    lent = ScriptedLLM(replies=[])
    async with LLMReranker(llm=helpers.llm_spec(ranking_server)) as reranker:
        assert not reranker.needs_llm
        assert reranker.bind_llm(lent) is False
        await reranker.rerank(QUERY, DOCS)
    assert lent.calls == [] and len(chat(ranking_server)) == 1


async def test_an_llm_built_from_a_spec_is_closed_and_rebuilt(
    ranking_server: LLMServer, helpers: Any
) -> None:
    reranker = LLMReranker(llm=helpers.llm_spec(ranking_server))
    await reranker.rerank(QUERY, DOCS)
    await reranker.aclose()
    await reranker.aclose()
    await reranker.rerank(QUERY, DOCS)
    await reranker.aclose()
    assert len(chat(ranking_server)) == 2


async def test_an_llm_instance_in_the_config_is_not_closed() -> None:
    closed: list[bool] = []

    class Tracked(ScriptedLLM):
        async def aclose(self) -> None:
            closed.append(True)

    llm = Tracked(replies=['{"ranking": [1, 0]}'])
    async with LLMReranker(LLMReranker.Config(llm=llm)) as reranker:
        assert await reranker.rerank(QUERY, DOCS[:2]) == [(1, 1.0), (0, 0.5)]
    assert closed == []


# -- the registry and the config ---------------------------------------------------------------


async def test_registry_builds_it_by_name_and_with_an_llm_spec(
    ranking_server: LLMServer, helpers: Any
) -> None:
    registry = Registry()
    assert "llm" in registry.names("reranker")
    assert registry.load("reranker", "llm") is LLMReranker
    reranker = registry.create(
        "reranker", {"provider": "llm", "config": {"llm": helpers.llm_spec(ranking_server)}}
    )
    assert isinstance(reranker, LLMReranker) and not reranker.needs_llm
    out = await reranker.rerank(QUERY, DOCS, top_n=3)
    await reranker.aclose()
    assert len(out) == 3 and len(chat(ranking_server)) == 1


async def test_an_llm_given_by_name_is_built_through_the_registry() -> None:
    # "scripted" built with its defaults has no replies: its own ProviderError reaches the caller
    reranker = Registry().create(
        "reranker", {"provider": "llm", "config": {"llm": "scripted", "max_documents": 5}}
    )
    with pytest.raises(ProviderError, match="no replies left"):
        await reranker.rerank(QUERY, DOCS)
    bad = Registry().create("reranker", {"provider": "llm", "config": {"llm": "no-such-llm"}})
    with pytest.raises(ConfigurationError, match="no-such-llm"):
        await bad.rerank(QUERY, DOCS)


@pytest.mark.parametrize(
    "config",
    [
        {"max_documents": 0},
        {"max_document_chars": 5},
        {"timeout": 0},
        {"unknown": 1},
        {"llm": 42},
        {"llm": ""},
        {"llm": ["openai"]},
    ],
)
def test_bad_config_is_refused(config: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        Registry().create("reranker", {"provider": "llm", "config": config})
    with pytest.raises(ConfigurationError):
        LLMReranker(**config)


def test_config_and_llm_arguments() -> None:
    llm = ScriptedLLM()
    with pytest.raises(ConfigurationError, match="not both"):
        LLMReranker(LLMReranker.Config(), max_documents=3)
    with pytest.raises(ConfigurationError, match="not both"):
        LLMReranker(LLMReranker.Config(llm="openai"), llm=llm)
    r = LLMReranker(LLMReranker.Config(max_documents=7), llm=llm)
    assert r.config.llm is llm and r.config.max_documents == 7


def test_repr_shows_no_secret() -> None:
    spec = {"provider": "openai", "config": {"api_key": "sk-very-secret"}}
    r = LLMReranker(llm=spec)
    assert "sk-very-secret" not in repr(r) and "sk-very-secret" not in repr(r.config)
    assert "openai" in repr(r)
    url = LLMReranker(llm="openai://:sk-very-secret@host/v1")
    assert "sk-very-secret" not in repr(url)
