from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from engram.core import LLMResponse
from engram.core.errors import ConfigurationError, InvalidInputError, ProviderError
from pydantic import Field, SecretStr, model_validator

from .._common import (
    HTTPSettings,
    RetryingClient,
    TokenUsage,
    check_messages,
    extract_json,
    response_format_spec,
    url_fields,
)
from .._common import ResponseFormat as _Format

JSON_TOOL = "json_response"
"""The name of the tool that carries a ``{"type": "json_object"}`` answer."""

_ANY_OBJECT: dict[str, Any] = {"type": "object", "additionalProperties": True}


class AnthropicLLM:
    """A Claude model through Anthropic's native Messages API, ``POST {base_url}/v1/messages``.

    System messages are taken out of the message list and sent as ``system``; consecutive messages
    of one role are merged; OpenAI-style assistant ``tool_calls`` and ``tool`` messages become
    ``tool_use`` / ``tool_result`` blocks. OpenAI-style ``tools`` are translated to Anthropic's
    ``{"name", "description", "input_schema"}``.

    **Structured output through tool use.** When ``response_format`` asks for JSON, the request
    defines one extra tool whose ``input_schema`` is the caller's schema (for ``json_object``, any
    object) and forces it with ``tool_choice``; the tool's ``input`` comes back as the reply's JSON
    ``text`` *and* as a tool call. A schema whose top level is not an object is wrapped as
    ``{"value": schema}`` on the way out and unwrapped on the way back.

    **Retries and time.** See :class:`engram.llm._common.HTTPSettings` (``timeout`` per attempt,
    ``total_timeout`` per call, ``max_retries``, backoff with full jitter, ``Retry-After`` /
    ``retry-after-ms`` honoured, 529 "overloaded" retried).

    **Usage.** ``input_tokens`` is ``usage.input_tokens`` plus the prompt-cache reads and writes;
    ``output_tokens`` is ``usage.output_tokens``; :attr:`usage` keeps the running totals.

    URL form: ``anthropic://[:KEY@]host[:port][/path]?model=...`` (``tls=false`` for ``http://``);
    ``anthropic://`` alone is api.anthropic.com.

    Args:
        config: an :class:`AnthropicLLM.Config`; or pass its fields as keyword arguments.
    """

    class Config(HTTPSettings):
        """Attributes:
        base_url: the API root; ``/v1/messages`` is appended.
        model: the model name.
        api_key: sent as ``x-api-key``.
        anthropic_version: the ``anthropic-version`` header.
        beta: ``anthropic-beta`` feature names (sent comma-separated when any).
        max_tokens: the default completion length limit (the API requires one).
        temperature: the default sampling temperature (``None``: the server's default).
        extra_body: extra JSON fields for every request (``top_k``, ``metadata``, ...).
        (timeouts, retries, ``max_connections``, ``headers``: see ``HTTPSettings``.)
        """

        base_url: str = "https://api.anthropic.com"
        model: str = "claude-sonnet-4-5"
        api_key: SecretStr | None = None
        anthropic_version: str = "2023-06-01"
        beta: list[str] = Field(default_factory=list)
        max_tokens: int = Field(4096, ge=1)
        temperature: float | None = None
        extra_body: dict[str, Any] = Field(default_factory=dict)

        @model_validator(mode="after")
        def _check(self) -> AnthropicLLM.Config:
            if not self.base_url.startswith(("http://", "https://")):
                raise ValueError(f"base_url must start with http:// or https://, got {self.base_url!r}")
            return self

    capabilities = frozenset({"json", "tools", "remote"})

    def __init__(self, config: Config | None = None, **kwargs: Any) -> None:
        if config is not None and kwargs:
            raise ConfigurationError("pass either an AnthropicLLM.Config or keyword fields, not both")
        try:
            self.config = config or self.Config(**kwargs)
        except ValueError as exc:  # pydantic.ValidationError
            raise ConfigurationError(f"invalid config for LLM 'anthropic':\n{exc}") from exc
        c = self.config
        base = c.base_url.rstrip("/")
        self.url = base + ("/messages" if base.endswith("/v1") else "/v1/messages")
        self.model = c.model
        headers = {"anthropic-version": c.anthropic_version}
        if c.api_key is not None:
            headers["x-api-key"] = c.api_key.get_secret_value()
        if c.beta:
            headers["anthropic-beta"] = ",".join(c.beta)
        self._http = RetryingClient("anthropic", c, headers)
        self.usage = TokenUsage()
        """Running token totals over this instance's successful calls."""

    @classmethod
    def from_url(cls, url: str) -> AnthropicLLM:
        """Build from ``anthropic://[:KEY@]host[:port][/path]?field=value&...``.

        Raises:
            ConfigurationError: a field the config does not have or a bad value.
        """
        try:
            return cls(cls.Config(**url_fields(url)))
        except ValueError as exc:  # pydantic.ValidationError
            raise ConfigurationError(f"bad anthropic LLM URL {url!r}: {exc}") from exc

    async def generate(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        response_format: Mapping[str, Any] | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> LLMResponse:
        """Answer a list of ``{"role", "content"}`` messages.

        Args:
            messages: chat messages; ``system`` ones become the system prompt.
            response_format: ``{"type": "json_object"}``, ``{"type": "json_schema", "json_schema":
                {"name", "schema"}}`` or a bare JSON schema; answered through a forced tool.
            tools: OpenAI function tools or Anthropic tools (``input_schema``).
            temperature, max_tokens: override the config's defaults for this call.

        Returns:
            The reply: ``text`` (the JSON text when JSON was asked for), ``tool_calls`` as
            ``[{"name", "arguments": dict, "id"}]``, the answering ``model`` and the token counts.

        Raises:
            InvalidInputError: a message that is not a mapping with a ``role``.
            ConfigurationError: an unsupported ``response_format``.
            ProviderError: the server refused the request (its message is kept) or kept failing.
            ProviderTimeoutError: the call ran past ``total_timeout``, or its last attempt timed out.
        """
        c = self.config
        system, msgs = _split(messages)
        fmt = response_format_spec(response_format)
        tool_defs = [_tool(t) for t in tools] if tools else []
        body: dict[str, Any] = {
            **c.extra_body,
            "model": self.model,
            "max_tokens": c.max_tokens if max_tokens is None else max_tokens,
            "messages": msgs,
        }
        if system:
            body["system"] = system
        temperature = c.temperature if temperature is None else temperature
        if temperature is not None:
            body["temperature"] = temperature
        out_tool, wrapped = _output_tool(fmt) if fmt is not None else (None, False)
        if out_tool is not None:
            tool_defs = [t for t in tool_defs if t["name"] != out_tool["name"]] + [out_tool]
            body["tool_choice"] = {"type": "tool", "name": out_tool["name"]}
        if tool_defs:
            body["tools"] = tool_defs
        payload = await self._http.post_json(self.url, body, deadline=self._http.deadline())
        return self._parse(payload, out_tool["name"] if out_tool else None, wrapped, fmt)

    def _parse(
        self, payload: dict[str, Any], out_name: str | None, wrapped: bool, fmt: _Format | None
    ) -> LLMResponse:
        def bad(why: str) -> ProviderError:
            return ProviderError(
                f"invalid Messages API response from {self.url}: {why}", provider="anthropic"
            )

        content = payload.get("content")
        if not isinstance(content, list):
            raise bad("no 'content' list")
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        json_text: str | None = None
        for block in content:
            if not isinstance(block, dict):
                raise bad(f"malformed content block {block!r}")
            kind = block.get("type")
            if kind == "text" and isinstance(block.get("text"), str):
                texts.append(block["text"])
            elif kind == "tool_use":
                name, args = block.get("name"), block.get("input")
                if not isinstance(name, str) or not isinstance(args, dict):
                    raise bad(f"malformed tool_use block {block!r}")
                call: dict[str, Any] = {"name": name, "arguments": args}
                if block.get("id"):
                    call["id"] = block["id"]
                calls.append(call)
                if name == out_name and json_text is None:
                    value = args.get("value") if wrapped else args
                    json_text = json.dumps(value, ensure_ascii=False)
        text = "".join(texts)
        if json_text is not None:
            text = json_text
        elif fmt is not None and text:
            text = extract_json(text) or text
        raw_usage = payload.get("usage")
        usage: dict[str, Any] = raw_usage if isinstance(raw_usage, dict) else {}
        input_tokens = _int(usage.get("input_tokens"))
        if input_tokens is not None:
            input_tokens += (_int(usage.get("cache_creation_input_tokens")) or 0) + (
                _int(usage.get("cache_read_input_tokens")) or 0
            )
        output_tokens = _int(usage.get("output_tokens"))
        self.usage.add(input_tokens, output_tokens)
        model = payload.get("model")
        return LLMResponse(
            text=text,
            tool_calls=calls,
            model=model if isinstance(model, str) and model else self.model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
        )

    async def aclose(self) -> None:
        """Close the HTTP client (a later call opens a new one)."""
        await self._http.aclose()

    async def __aenter__(self) -> AnthropicLLM:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AnthropicLLM(model={self.model!r}, url={self.url!r})"


def _blocks(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if isinstance(content, list):
        out = []
        for part in content:
            if isinstance(part, str):
                out.append({"type": "text", "text": part})
            elif isinstance(part, Mapping):
                out.append(dict(part))
        return out
    return [{"type": "text", "text": str(content)}]


def _split(messages: Sequence[Mapping[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """``(system prompt, Anthropic messages)``: system messages joined, roles merged, tool calls
    and results translated."""
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for m in check_messages(messages):
        role = m["role"]
        if role in ("system", "developer"):
            text = "".join(b.get("text", "") for b in _blocks(m.get("content")) if b.get("type") == "text")
            if text:
                system.append(text)
            continue
        if role == "tool":
            role = "user"
            blocks = [
                {
                    "type": "tool_result",
                    "tool_use_id": str(m.get("tool_call_id", "")),
                    "content": _blocks(m.get("content")) or [{"type": "text", "text": ""}],
                }
            ]
        elif role in ("user", "assistant"):
            blocks = _blocks(m.get("content"))
            for tc in (m.get("tool_calls") or []) if role == "assistant" else []:
                fn = tc.get("function", {}) if isinstance(tc, Mapping) else {}
                args = fn.get("arguments", {})
                if isinstance(args, str):
                    try:
                        args = json.loads(args) if args.strip() else {}
                    except ValueError:
                        args = {}
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": str(tc.get("id", "")),
                        "name": fn.get("name", ""),
                        "input": args if isinstance(args, dict) else {},
                    }
                )
        else:
            raise InvalidInputError(f"unknown message role {role!r}")
        if not blocks:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    if not out:  # only a system prompt: ask it as the user
        return "", [{"role": "user", "content": "\n\n".join(system) or " "}]
    for m in out:  # plain text turns go out as strings, the common form
        if (
            len(m["content"]) == 1
            and m["content"][0].get("type") == "text"
            and set(m["content"][0]) == {"type", "text"}
        ):
            m["content"] = m["content"][0]["text"]
    return "\n\n".join(system), out


def _tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    if tool.get("type") == "function" and isinstance(tool.get("function"), Mapping):
        tool = tool["function"]
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"a tool needs a 'name'; got {dict(tool)!r}")
    out: dict[str, Any] = {"name": name}
    if tool.get("description"):
        out["description"] = tool["description"]
    out["input_schema"] = (
        tool.get("input_schema") or tool.get("parameters") or {"type": "object", "properties": {}}
    )
    return out


def _output_tool(fmt: _Format) -> tuple[dict[str, Any], bool]:
    """The tool that carries a structured answer, and whether the schema was wrapped in ``value``."""
    if fmt.kind == "json_object" or fmt.schema is None:
        return {
            "name": JSON_TOOL,
            "description": "Give the answer as a JSON object.",
            "input_schema": _ANY_OBJECT,
        }, False
    schema = fmt.schema
    name = fmt.name if fmt.name != "response" else JSON_TOOL
    description = "Give the answer; its input must match the schema."
    if schema.get("type") == "object" or ("properties" in schema and "type" not in schema):
        return {"name": name, "description": description, "input_schema": {"type": "object", **schema}}, False
    wrapped = {"type": "object", "properties": {"value": schema}, "required": ["value"]}
    return {"name": name, "description": description, "input_schema": wrapped}, True


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
