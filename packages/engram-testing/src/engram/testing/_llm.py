"""The LLM conformance suite: a pytest mixin every LLM provider's tests inherit."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import anyio
import pytest
from engram.core import LLMResponse
from engram.core.errors import InvalidInputError, ProviderError, ProviderTimeoutError

from ._requires import ProviderSuite, requires, skip_unless_capable

if TYPE_CHECKING:
    from .llm_server import Fault, LLMServer, Reply

__all__ = ["LLMConformance", "ScriptedReply", "script_llm_server"]

ReplyKind = Literal["text", "json", "tool_calls", "error", "timeout"]


@dataclass(frozen=True)
class ScriptedReply:
    """What the model says (or how it fails) for one call, scripted by :meth:`LLMConformance.script`.

    Build one with :meth:`text`, :meth:`json`, :meth:`tool_calls`, :meth:`error` or
    :meth:`timeout`. A test double turns it into its own form: :meth:`to_llm_server` for
    :class:`~engram.testing.llm_server.LLMServer`, :meth:`respond` for an in-process double.

    Attributes:
        kind: ``"text"``, ``"json"``, ``"tool_calls"``, ``"error"`` (the server fails with
            ``status``) or ``"timeout"`` (the server does not answer in time).
        content: the reply text (``text``; the text beside ``tool_calls``).
        value: the JSON object of a ``json`` reply.
        calls: ``[{"name": str, "arguments": dict}]`` of a ``tool_calls`` reply.
        status: the HTTP status of an ``error``.
        input_tokens / output_tokens: the usage the model reports (``None``: the double's default).
    """

    kind: ReplyKind
    content: str = ""
    value: dict[str, Any] | None = None
    calls: tuple[dict[str, Any], ...] = field(default=())
    status: int = 500
    input_tokens: int | None = None
    output_tokens: int | None = None

    @classmethod
    def text(cls, text: str, *, input_tokens: int | None = None, output_tokens: int | None = None) -> ScriptedReply:
        """A plain text answer."""
        return cls("text", content=text, input_tokens=input_tokens, output_tokens=output_tokens)

    @classmethod
    def json(cls, value: dict[str, Any]) -> ScriptedReply:
        """A JSON object answer (to a call with ``response_format={"type": "json_object"}``)."""
        return cls("json", content=json.dumps(value, ensure_ascii=False), value=value)

    @classmethod
    def tool_calls(cls, calls: Sequence[dict[str, Any]], *, text: str = "") -> ScriptedReply:
        """Tool calls, each ``{"name": str, "arguments": dict}``, with optional text beside them."""
        return cls("tool_calls", content=text, calls=tuple({"name": c["name"], "arguments": dict(c["arguments"])}
                                                         for c in calls))

    @classmethod
    def error(cls, status: int = 500) -> ScriptedReply:
        """The server fails with this HTTP status (the provider must raise ``ProviderError``)."""
        return cls("error", status=status)

    @classmethod
    def timeout(cls) -> ScriptedReply:
        """The server says nothing (the provider must raise ``ProviderTimeoutError`` at its deadline)."""
        return cls("timeout")

    def to_llm_server(self, *, hang: float = 10.0) -> Reply | Fault:
        """The :class:`~engram.testing.llm_server.LLMServer` script entry for this reply.

        Args:
            hang: how long a ``timeout`` keeps the request waiting, in seconds (longer than the
                provider's timeout; stopping the server ends it early).
        """
        from .llm_server import Fault, Reply

        usage = {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens}
        if self.kind == "text":
            return Reply.text(self.content, **usage)
        if self.kind == "json":
            return Reply.json(self.value, **usage)
        if self.kind == "tool_calls":
            return Reply.tool_calls([dict(c) for c in self.calls], text=self.content, **usage)
        if self.kind == "error":
            return Fault.status(self.status)
        return Fault.hang(hang)

    def respond(self, model: str | None = None) -> LLMResponse:
        """The :class:`~engram.core.LLMResponse` an in-process double returns for this reply.

        Raises:
            ProviderError: for ``error``.
            ProviderTimeoutError: for ``timeout``.
        """
        if self.kind == "error":
            raise ProviderError(f"scripted server error (HTTP {self.status})", provider="scripted")
        if self.kind == "timeout":
            raise ProviderTimeoutError("scripted timeout", provider="scripted")
        return LLMResponse(
            text=self.content,
            tool_calls=[{"name": c["name"], "arguments": dict(c["arguments"])} for c in self.calls],
            model=model,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
        )


def script_llm_server(server: LLMServer, replies: Sequence[ScriptedReply], *, hang: float = 10.0) -> None:
    """Queue ``replies`` on an :class:`~engram.testing.llm_server.LLMServer`, one per chat request.

    When the last reply is a failure it also becomes the server's ``default``, so a provider that
    retries meets the same failure on every attempt; otherwise ``default`` is cleared.
    """
    entries = [r.to_llm_server(hang=hang) for r in replies]
    server.reply(*entries)
    server.default = entries[-1] if replies and replies[-1].kind in ("error", "timeout") else None


USER = [{"role": "user", "content": "Where does the user live?"}]

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "add_memory",
            "description": "Store a fact about the user",
            "parameters": {
                "type": "object",
                "properties": {"text": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}},
                               "confidence": {"type": "number"}},
                "required": ["text"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "delete_memory",
            "description": "Forget a fact by its id",
            "parameters": {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]},
        },
    },
]


class LLMConformance(ProviderSuite):
    """Checks every :class:`~engram.core.LLM` must pass. Inherit it in a pytest class, give the
    provider as the ``llm`` fixture, and implement :meth:`script` for its test double::

        class TestMyLLM(LLMConformance):
            @pytest.fixture
            async def llm(self, llm_server):   # a real local server (engram.testing.llm_server)
                self.server = llm_server
                client = MyLLM(base_url=llm_server.openai_url, model="m", timeout=0.5, max_retries=0)
                yield client
                await client.aclose()

            async def script(self, llm, replies):
                script_llm_server(self.server, replies)

    The rules checked, beyond the :class:`~engram.core.LLM` protocol's docstring:

    - ``generate`` returns an :class:`~engram.core.LLMResponse` whose ``text`` is the model's text
      exactly (``""`` when the reply is only tool calls); ``model`` is a non-empty ``str`` or ``None``.
    - ``system``, ``user`` and ``assistant`` messages are accepted in one conversation; a message
      that is not a mapping with a ``role`` raises :class:`~engram.core.errors.InvalidInputError`.
    - ``input_tokens`` / ``output_tokens`` are ``None`` (the provider does not report usage) or
      exactly the counts the model reported.
    - Concurrent calls are all answered, each with one reply.
    - ``aclose()`` may be called twice, and before any use.
    - ``"json"``: with ``response_format={"type": "json_object"}``, ``text`` parses as the JSON
      object the model gave.
    - ``"tools"``: tool calls come back as ``tool_calls`` ``[{"name", "arguments": dict, ...}]``
      (extra keys such as ``id`` allowed), in the model's order.
    - ``"remote"``: a server error raises :class:`~engram.core.errors.ProviderError` (not a
      timeout) and the next call works again; no answer raises
      :class:`~engram.core.errors.ProviderTimeoutError` (also a ``TimeoutError``).

    Each check scripts the replies it needs, in order, before calling ``generate``: one reply per
    call. Configure a remote provider for the suite with a short timeout (about a second) so the
    timeout check stays fast; :func:`script_llm_server` repeats a final failure for providers that
    retry.
    """

    @pytest.fixture(autouse=True)
    def _engram_llm_requirements(self, request: pytest.FixtureRequest, llm: Any) -> None:
        skip_unless_capable(request, llm)

    async def script(self, llm: Any, replies: list[ScriptedReply]) -> None:
        """Make the next ``len(replies)`` calls of ``llm`` get these replies, in order.

        The test class implements it for its provider's test double (for example with
        :func:`script_llm_server`, or :meth:`ScriptedReply.respond` in an in-process double).
        """
        pytest.fail(
            f"{type(self).__name__} must define `async def script(self, llm, replies)` that makes the "
            f"next calls of {type(llm).__name__} get these replies (see LLMConformance)"
        )

    async def test_llm_text_round_trip(self, llm: Any) -> None:
        text = "The user lives in Lisbon.\nSecond line: ünïcode ✓ 🍵 \"quotes\" and {braces}"
        await self.script(llm, [ScriptedReply.text(text)])
        out = await llm.generate(USER)
        assert isinstance(out, LLMResponse), f"generate returned a {type(out).__name__}, expected an LLMResponse"
        assert out.text == text, f"text {out.text!r} != {text!r}"
        assert out.tool_calls == [], f"unexpected tool calls {out.tool_calls!r}"
        assert out.model is None or (isinstance(out.model, str) and out.model), f"model is {out.model!r}"

    async def test_llm_accepts_system_user_and_assistant_roles(self, llm: Any) -> None:
        await self.script(llm, [ScriptedReply.text("You said Lisbon.")])
        out = await llm.generate(
            [
                {"role": "system", "content": "You are a memory assistant. Be brief."},
                {"role": "user", "content": "I moved to Lisbon."},
                {"role": "assistant", "content": "Noted: you live in Lisbon."},
                {"role": "user", "content": "Where do I live?"},
            ],
            temperature=0.0,
            max_tokens=64,
        )
        assert out.text == "You said Lisbon."

    async def test_llm_rejects_malformed_messages(self, llm: Any) -> None:
        for bad in ("just a string", [{"content": "no role"}], ["not a mapping"]):
            with pytest.raises(InvalidInputError):
                await llm.generate(bad)

    async def test_llm_usage_is_reported_as_given(self, llm: Any) -> None:
        await self.script(llm, [ScriptedReply.text("Counted.", input_tokens=17, output_tokens=5)])
        out = await llm.generate(USER)
        usage = (out.input_tokens, out.output_tokens)
        assert usage in ((None, None), (17, 5)), f"token counts {usage}, expected (17, 5) or not reported"

    @requires("json")
    async def test_llm_json_object(self, llm: Any) -> None:
        value = {"facts": ["Likes green tea 🍵", "Lives in Lisbon"], "count": 2, "sure": True, "note": None}
        await self.script(llm, [ScriptedReply.json(value)])
        out = await llm.generate(USER, response_format={"type": "json_object"})
        try:
            got = json.loads(out.text)
        except ValueError as exc:
            raise AssertionError(f"text is not JSON: {out.text!r}") from exc
        assert got == value, f"JSON {got!r} != {value!r}"

    @requires("tools")
    async def test_llm_tool_calls_are_parsed(self, llm: Any) -> None:
        calls = [
            {"name": "add_memory", "arguments": {"text": "Likes green tea 🍵", "tags": ["drink"], "confidence": 0.9}},
            {"name": "delete_memory", "arguments": {"id": "7"}},
        ]
        await self.script(llm, [ScriptedReply.tool_calls(calls)])
        out = await llm.generate(USER, tools=TOOLS)
        assert out.text == "", f"text {out.text!r} beside tool calls only"
        got = [(c.get("name"), c.get("arguments")) for c in out.tool_calls]
        assert got == [(c["name"], c["arguments"]) for c in calls], f"tool calls {out.tool_calls!r}"
        assert all(isinstance(c["arguments"], dict) for c in out.tool_calls)

    async def test_llm_concurrent_calls_are_all_answered(self, llm: Any) -> None:
        n = 8
        replies = [f"answer {i}" for i in range(n)]
        await self.script(llm, [ScriptedReply.text(r) for r in replies])
        answers: list[str] = []

        async def ask(i: int) -> None:
            out = await llm.generate([{"role": "user", "content": f"question {i}"}])
            answers.append(out.text)

        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(ask, i)
        assert sorted(answers) == sorted(replies), f"answers {sorted(answers)}"

    @requires("remote")
    async def test_llm_server_error_is_a_provider_error(self, llm: Any) -> None:
        for status in (500, 400):
            await self.script(llm, [ScriptedReply.error(status)])
            with pytest.raises(ProviderError) as info:
                await llm.generate(USER)
            assert not isinstance(info.value, ProviderTimeoutError), f"HTTP {status} raised a timeout error"
            assert str(info.value), "the error has no message"
        await self.script(llm, [ScriptedReply.text("Back again.")])
        assert (await llm.generate(USER)).text == "Back again.", "the call after an error failed"

    @requires("remote")
    async def test_llm_no_answer_is_a_timeout(self, llm: Any) -> None:
        await self.script(llm, [ScriptedReply.timeout()])
        with pytest.raises(ProviderTimeoutError) as info:
            await llm.generate(USER)
        assert isinstance(info.value, TimeoutError)

    async def test_llm_aclose_is_idempotent(self, llm: Any) -> None:
        await self.script(llm, [ScriptedReply.text("Before closing.")])
        assert (await llm.generate(USER)).text == "Before closing."
        await llm.aclose()
        await llm.aclose()

    async def test_llm_aclose_before_use_is_harmless(self, llm: Any) -> None:
        await llm.aclose()
        await llm.aclose()
