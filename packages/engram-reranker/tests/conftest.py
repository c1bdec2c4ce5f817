"""The reranker's LLM in these tests is engram's ``openai`` provider talking to
:class:`engram.testing.llm_server.LLMServer`, a real OpenAI-compatible HTTP server on 127.0.0.1 (the
remote APIs cannot be reached from the test machines). The server reads the prompt the reranker
sent and answers with a deterministic ranking (:func:`word_overlap_ranking`), so the tests check
what the reranker does with a real reply over a real socket."""

from __future__ import annotations

import re
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from engram.testing.llm_server import (
    LLMServer,
    RecordedRequest,
    Reply,
    llm_server,  # noqa: F401  (registers the fixture)
)

FAST = {"timeout": 5.0, "total_timeout": 10.0, "max_retries": 0}

_PASSAGE = re.compile(r"^\[(\d+)\] (.*)$", re.MULTILINE)
_QUERY = re.compile(r"^Query: (.*)$", re.MULTILINE)
_WORD = re.compile(r"\w+")


def prompt_of(request: RecordedRequest) -> str:
    """The user message of a rerank request."""
    return next(m["content"] for m in request.messages if m["role"] == "user")


def passages_of(request: RecordedRequest) -> dict[int, str]:
    """``{number: text}`` of the passages listed in a rerank request's prompt."""
    return {int(n): text for n, text in _PASSAGE.findall(prompt_of(request))}


def word_overlap_ranking(request: RecordedRequest) -> Reply:
    """A stand-in for the model: the passages ordered by how many distinct query words each shares
    (ties by the lower number), answered as ``{"ranking": [...]}``."""
    prompt = prompt_of(request)
    query = set(_WORD.findall(_QUERY.search(prompt).group(1).lower()))  # type: ignore[union-attr]
    passages = passages_of(request)
    order = sorted(passages, key=lambda n: (-len(query & set(_WORD.findall(passages[n].lower()))), n))
    return Reply.json({"ranking": order})


def llm_spec(server: LLMServer) -> dict[str, Any]:
    """The ``llm`` config of a reranker whose LLM is ``openai`` on ``server``."""
    return {"provider": "openai", "config": {"base_url": server.openai_url, "model": "test-model", **FAST}}


@pytest.fixture
def ranking_server(llm_server: LLMServer) -> LLMServer:  # noqa: F811
    """The ``llm_server`` answering every chat request with :func:`word_overlap_ranking`."""
    llm_server.default = word_overlap_ranking
    return llm_server


@pytest.fixture(scope="module")
def shared_ranking_server() -> Iterator[LLMServer]:
    """One ranking server for a whole test module (the conformance suite makes many calls)."""
    with LLMServer(default=word_overlap_ranking) as server:
        yield server


@pytest.fixture
def helpers() -> SimpleNamespace:
    """This module's helpers, for the test modules (a conftest cannot be imported by name)."""
    return SimpleNamespace(
        prompt_of=prompt_of,
        passages_of=passages_of,
        llm_spec=llm_spec,
        FAST=FAST,
        word_overlap_ranking=word_overlap_ranking,
    )
