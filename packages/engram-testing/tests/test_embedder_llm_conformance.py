"""EmbedderConformance and LLMConformance catch broken providers.

The real providers run the suites in their own packages (engram-embedding, engram-llm); here small
in-process providers pass them, and variants broken in one way each fail the check that covers it.
"""

from __future__ import annotations

import json
import re
import zlib
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from engram.core import LLMResponse
from engram.core.errors import InvalidInputError, ProviderError
from engram.testing import EmbedderConformance, LLMConformance, ScriptedReply, assert_embeddings
from engram.testing._requires import requirements_of

_WORDS = re.compile(r"\w+", re.UNICODE)


class WordEmbedder:
    """Each word adds a fixed random unit vector (seeded by its CRC-32); the sum is L2-normalised."""

    capabilities = frozenset()

    def __init__(self, config: dict[str, int] | None = None) -> None:
        self.config = config or {"dims": 32}

    @property
    def dims(self) -> int:
        return self.config["dims"]

    def _word(self, word: str) -> np.ndarray:
        v = np.random.default_rng(zlib.crc32(word.encode())).standard_normal(self.config["dims"])
        return v / np.linalg.norm(v)

    def _text(self, text: str) -> np.ndarray:
        v = sum((self._word(w) for w in _WORDS.findall(text.lower())), np.zeros(self.config["dims"]))
        n = np.linalg.norm(v)
        return v / n if n else v

    async def embed(self, texts: Sequence[str], *, kind: str = "document") -> np.ndarray:
        if isinstance(texts, str) or any(not isinstance(t, str) for t in texts):
            raise InvalidInputError("embed() takes a sequence of strings")
        self.calls = getattr(self, "calls", 0) + 1
        return np.array([self._text(t) for t in texts], dtype=np.float32).reshape(len(texts), self.config["dims"])

    async def aclose(self) -> None:
        return None


class TestWordEmbedder(EmbedderConformance):
    @pytest.fixture
    def embedder(self) -> WordEmbedder:
        return WordEmbedder()


class Unnormalised(WordEmbedder):
    def _text(self, text: str) -> np.ndarray:
        return super()._text(text) * 2


class Float64(WordEmbedder):
    async def embed(self, texts: Sequence[str], *, kind: str = "document") -> np.ndarray:
        return (await super().embed(texts)).astype(np.float64)


class BatchDependent(WordEmbedder):
    """Centres each batch (as a careless post-processing step would) before normalising."""

    async def embed(self, texts: Sequence[str], *, kind: str = "document") -> np.ndarray:
        out = await super().embed(texts)
        if len(out) > 1:
            out = out - out.mean(axis=0)
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out.astype(np.float32)


class EmptyIsOneRow(WordEmbedder):
    async def embed(self, texts: Sequence[str], *, kind: str = "document") -> np.ndarray:
        return await super().embed(list(texts) or [""])


class RefusesEmpty(WordEmbedder):
    async def embed(self, texts: Sequence[str], *, kind: str = "document") -> np.ndarray:
        if any(not t.strip() for t in texts):
            raise InvalidInputError("empty text")
        return await super().embed(texts)


class ChangingDims(WordEmbedder):
    """Reports one more dimension than it returns once it has been called twice."""

    @property
    def dims(self) -> int:
        return self.config["dims"] + (getattr(self, "calls", 0) >= 2)


EMBEDDER_BROKEN: list[tuple[type[WordEmbedder], str, dict[str, Any], type[BaseException]]] = [
    (Unnormalised, "test_embed_returns_unit_float32_rows", {"n": 3}, AssertionError),
    (Float64, "test_embed_returns_unit_float32_rows", {"n": 1}, AssertionError),
    (BatchDependent, "test_embed_row_does_not_depend_on_its_batch", {}, AssertionError),
    (EmptyIsOneRow, "test_embed_empty_batch", {}, AssertionError),
    (RefusesEmpty, "test_embed_accepts_awkward_texts", {}, InvalidInputError),
    (ChangingDims, "test_embed_dims_is_a_stable_int", {}, AssertionError),
]


@pytest.mark.parametrize(
    ("cls", "check", "args", "error"),
    EMBEDDER_BROKEN,
    ids=[f"{c.__name__}-{n.removeprefix('test_embed_')}" for c, n, *_ in EMBEDDER_BROKEN],
)
async def test_a_broken_embedder_fails_its_check(
    cls: type[WordEmbedder], check: str, args: dict[str, Any], error: type[BaseException]
) -> None:
    await getattr(TestWordEmbedder(), check)(WordEmbedder(), **args)  # the unbroken one passes
    with pytest.raises(error):
        await getattr(TestWordEmbedder(), check)(cls(), **args)


def test_assert_embeddings_allows_zero_rows_only_for_texts_without_words() -> None:
    rows = np.zeros((2, 4), dtype=np.float32)
    rows[0, 0] = 1.0
    assert_embeddings(rows, ["word", " ... "], 4)
    with pytest.raises(AssertionError, match="row 1"):
        assert_embeddings(rows, ["word", "another word"], 4)


# -- LLMs --------------------------------------------------------------------------------------------


class QueueLLM:
    """An in-process double that answers from the replies scripted for it, failing as they say."""

    capabilities = frozenset({"json", "tools", "remote"})

    def __init__(self) -> None:
        self.queue: deque[ScriptedReply] = deque()

    async def generate(self, messages: Sequence[dict[str, Any]], **options: Any) -> LLMResponse:
        if isinstance(messages, str) or any(not isinstance(m, dict) or "role" not in m for m in messages):
            raise InvalidInputError("messages must be role/content mappings")
        return self.queue.popleft().respond("queue")

    async def aclose(self) -> None:
        return None


class TestQueueLLM(LLMConformance):
    @pytest.fixture
    def llm(self) -> QueueLLM:
        return QueueLLM()

    async def script(self, llm: QueueLLM, replies: list[ScriptedReply]) -> None:
        llm.queue.extend(replies)


class StringArguments(QueueLLM):
    async def generate(self, messages: Sequence[dict[str, Any]], **options: Any) -> LLMResponse:
        out = await super().generate(messages, **options)
        out.tool_calls = [dict(c, arguments=json.dumps(c["arguments"])) for c in out.tool_calls]
        return out


class TimeoutAsPlainError(QueueLLM):
    async def generate(self, messages: Sequence[dict[str, Any]], **options: Any) -> LLMResponse:
        try:
            return await super().generate(messages, **options)
        except TimeoutError as exc:
            raise ProviderError("failed") from exc


class GuessedUsage(QueueLLM):
    async def generate(self, messages: Sequence[dict[str, Any]], **options: Any) -> LLMResponse:
        out = await super().generate(messages, **options)
        out.input_tokens, out.output_tokens = 1, 1
        return out


class StrippedText(QueueLLM):
    async def generate(self, messages: Sequence[dict[str, Any]], **options: Any) -> LLMResponse:
        out = await super().generate(messages, **options)
        out.text = out.text.strip().splitlines()[0] if out.text.strip() else out.text
        return out


class CodeFencedJSON(QueueLLM):
    async def generate(self, messages: Sequence[dict[str, Any]], **options: Any) -> LLMResponse:
        out = await super().generate(messages, **options)
        out.text = f"```json\n{out.text}\n```"
        return out


LLM_BROKEN: list[tuple[type[QueueLLM], str, type[BaseException]]] = [
    (StringArguments, "test_llm_tool_calls_are_parsed", AssertionError),
    (TimeoutAsPlainError, "test_llm_no_answer_is_a_timeout", ProviderError),
    (GuessedUsage, "test_llm_usage_is_reported_as_given", AssertionError),
    (StrippedText, "test_llm_text_round_trip", AssertionError),
    (CodeFencedJSON, "test_llm_json_object", AssertionError),
]


@pytest.mark.parametrize(
    ("cls", "check", "error"), LLM_BROKEN, ids=[f"{c.__name__}-{n.removeprefix('test_llm_')}" for c, n, _ in LLM_BROKEN]
)
async def test_a_broken_llm_fails_its_check(cls: type[QueueLLM], check: str, error: type[BaseException]) -> None:
    await getattr(TestQueueLLM(), check)(QueueLLM())  # the unbroken one passes
    with pytest.raises(error):
        await getattr(TestQueueLLM(), check)(cls())


async def test_without_a_script_hook_the_suite_says_what_to_write() -> None:
    class NoHook(LLMConformance):
        pass

    with pytest.raises(pytest.fail.Exception, match=r"must define `async def script\(self, llm, replies\)`"):
        await NoHook().test_llm_text_round_trip(QueueLLM())


def test_scripted_reply_forms() -> None:
    calls = ScriptedReply.tool_calls([{"name": "f", "arguments": {"a": 1}}], text="calling")
    entry = calls.to_llm_server()
    assert entry.calls == [{"name": "f", "arguments": {"a": 1}}] and entry.content == "calling"
    assert ScriptedReply.json({"x": "ü"}).to_llm_server().value == {"x": "ü"}
    fault = ScriptedReply.error(503).to_llm_server()
    assert (fault.kind, fault.code) == ("status", 503)
    assert ScriptedReply.timeout().to_llm_server(hang=2.0).seconds == 2.0
    out = ScriptedReply.text("hi", input_tokens=3, output_tokens=1).respond("m")
    assert (out.text, out.model, out.input_tokens, out.output_tokens) == ("hi", "m", 3, 1)
    with pytest.raises(TimeoutError):
        ScriptedReply.timeout().respond()


def test_llm_checks_are_marked() -> None:
    assert requirements_of(LLMConformance.test_llm_json_object) == {"json"}
    assert requirements_of(LLMConformance.test_llm_tool_calls_are_parsed) == {"tools"}
    assert requirements_of(LLMConformance.test_llm_no_answer_is_a_timeout) == {"remote"}
    assert requirements_of(LLMConformance.test_llm_text_round_trip) == frozenset()
