from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from engram.core import LLMResponse
from engram.core.errors import ConfigurationError, InvalidInputError, ProviderError
from pydantic import Field, SecretStr, model_validator

from .._common import (
    HTTPSettings,
    RequestRefused,
    RetryingClient,
    TokenUsage,
    check_messages,
    extract_json,
    response_format_spec,
    url_fields,
)
from .._common import ResponseFormat as _Format

PresetName = Literal["openai", "azure", "ollama", "vllm", "lmstudio", "groq", "together", "deepseek"]
Switch = Literal["auto", "on", "off"]


@dataclass(frozen=True)
class Preset:
    """What a preset name sets.

    Attributes:
        base_url: the API root (``/chat/completions`` is appended); ``None`` for Azure, whose URL is
            built from ``azure_endpoint`` and ``azure_deployment``.
        model: the model used when the config names none (``None``: the config must name one).
        auth: ``"bearer"`` (``Authorization: Bearer <key>``) or ``"api-key"`` (Azure's ``api-key``).
        json_schema: whether the server is known to take ``response_format`` ``json_schema``
            (when not, JSON-schema requests start at ``json_object`` mode with the schema in the prompt).
    """

    base_url: str | None
    model: str | None
    auth: Literal["bearer", "api-key"] = "bearer"
    json_schema: bool = True


PRESETS: dict[str, Preset] = {
    "openai": Preset("https://api.openai.com/v1", "gpt-4o-mini"),
    "azure": Preset(None, None, auth="api-key"),
    "ollama": Preset("http://localhost:11434/v1", "llama3.2"),
    "vllm": Preset("http://localhost:8000/v1", None),
    "lmstudio": Preset("http://localhost:1234/v1", None),
    "groq": Preset("https://api.groq.com/openai/v1", "llama-3.3-70b-versatile"),
    "together": Preset("https://api.together.xyz/v1", "meta-llama/Llama-3.3-70B-Instruct-Turbo"),
    "deepseek": Preset("https://api.deepseek.com/v1", "deepseek-chat", json_schema=False),
}
"""The named presets: base URL, default model and auth style of each OpenAI-compatible service."""

_JSON_WORDS = (
    "response_format",
    "json_schema",
    "json_object",
    "json mode",
    "structured output",
    "guided_json",
)
_TOOL_WORDS = (
    "tools",
    "tool_choice",
    "tool choice",
    "tool call",
    "function call",
    "function_call",
    "support tool",
)
_MESSAGE_PROBLEM = ("messages[", "messages.", "'messages'")
"""A refusal that points at a message is about the conversation, not about a feature to drop."""


class OpenAILLM:
    """A chat model behind any OpenAI-compatible ``POST {base_url}/chat/completions`` server: OpenAI,
    Azure OpenAI, Ollama, vLLM, LM Studio, Groq, Together, DeepSeek (named :data:`PRESETS`), or any
    other server given by ``base_url``.

    **Structured output.** ``response_format={"type": "json_object"}`` is sent as JSON mode;
    ``{"type": "json_schema", "json_schema": {...}}`` (or a bare JSON schema) as structured output.
    With ``json_mode="auto"`` (the default), a server that refuses either (HTTP 400 / 422 naming
    ``response_format``) gets the request again one step down (schema → JSON mode → a plain request
    whose system prompt asks for one JSON object matching the schema), and the instance remembers
    the step for later calls. Whenever JSON was asked for, a reply that wraps its JSON in code fences
    or prose is cut down to the JSON. ``json_mode="on"`` never falls back (the refusal is raised);
    ``"off"`` never sends ``response_format`` and always asks in the prompt.

    **Tools.** ``tools`` (OpenAI function tools) are sent as they are and the reply's
    ``tool_calls[].function.arguments`` JSON is parsed into dicts. ``tools="auto"`` falls back the
    same way when the server refuses tools: the tools are described in the system prompt, the model
    is asked for ``{"tool": name, "arguments": {...}}``, and such a reply becomes a tool call.

    **Retries and time.** See :class:`engram.llm._common.HTTPSettings` (``timeout`` per attempt,
    ``total_timeout`` per call, ``max_retries``, backoff with full jitter, ``Retry-After`` honoured).

    **Usage.** Each :class:`LLMResponse` carries ``usage.prompt_tokens`` / ``completion_tokens``;
    :attr:`usage` keeps the running totals.

    URL form: ``openai://[:KEY@]host[:port]/path?model=...&preset=...`` for ``https://host[:port]/path``
    (``tls=false`` for ``http://``); ``openai://`` alone is the preset's (by default OpenAI's) URL;
    with ``preset=azure`` the host is the Azure endpoint.

    Args:
        config: an :class:`OpenAILLM.Config`; or pass its fields as keyword arguments.

    Raises:
        ConfigurationError: a preset that needs a model or an Azure endpoint and got none.
    """

    class Config(HTTPSettings):
        """Attributes:
        preset: a named service (:data:`PRESETS`) that sets ``base_url``, the default model and the
            auth style; ``base_url`` overrides its URL.
        base_url: the API root, e.g. ``http://localhost:8000/v1``; ``/chat/completions`` is appended.
        model: the model name sent to the server (for Azure, the deployment when
            ``azure_deployment`` is not set).
        api_key: ``Authorization: Bearer <key>`` (Azure: the ``api-key`` header).
        organization / project: OpenAI's ``OpenAI-Organization`` / ``OpenAI-Project`` headers.
        azure_endpoint: ``https://<resource>.openai.azure.com`` (preset ``azure``).
        azure_deployment: the deployment name (preset ``azure``; defaults to ``model``).
        api_version: Azure's ``api-version`` query parameter.
        azure_ad_token: an Entra ID bearer token instead of an API key (preset ``azure``).
        json_mode: ``"auto"`` | ``"on"`` | ``"off"``: send ``response_format`` and fall back when
            refused / always send it / never send it (see the class docstring).
        tools: ``"auto"`` | ``"on"`` | ``"off"``: the same for ``tools``.
        temperature: the default sampling temperature (``None``: the server's default).
        max_tokens: the default completion length limit (``None``: the server's default).
        max_tokens_field: ``"max_tokens"`` or ``"max_completion_tokens"`` (OpenAI's reasoning models);
            a server that refuses ``max_tokens`` and names ``max_completion_tokens`` is switched over
            automatically (and one that refuses ``temperature`` stops getting it).
        extra_body: extra JSON fields for every request (e.g. ``{"top_p": 0.9}`` or a server's own
            options).
        (timeouts, retries, ``max_connections``, ``headers``: see ``HTTPSettings``.)
        """

        preset: PresetName = "openai"
        base_url: str | None = None
        model: str | None = None
        api_key: SecretStr | None = None
        organization: str | None = None
        project: str | None = None
        azure_endpoint: str | None = None
        azure_deployment: str | None = None
        api_version: str = "2024-10-21"
        azure_ad_token: SecretStr | None = None
        json_mode: Switch = "auto"
        tools: Switch = "auto"
        temperature: float | None = None
        max_tokens: int | None = None
        max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
        extra_body: dict[str, Any] = Field(default_factory=dict)

        @model_validator(mode="after")
        def _check(self) -> OpenAILLM.Config:
            for name in ("base_url", "azure_endpoint"):
                value = getattr(self, name)
                if value is not None and not value.startswith(("http://", "https://")):
                    raise ValueError(f"{name} must start with http:// or https://, got {value!r}")
            if self.max_tokens is not None and self.max_tokens < 1:
                raise ValueError("max_tokens must be at least 1")
            return self

    capabilities = frozenset({"json", "tools", "remote"})

    def __init__(self, config: Config | None = None, **kwargs: Any) -> None:
        if config is not None and kwargs:
            raise ConfigurationError("pass either an OpenAILLM.Config or keyword fields, not both")
        try:
            self.config = config or self.Config(**kwargs)
        except ValueError as exc:  # pydantic.ValidationError
            raise ConfigurationError(f"invalid config for LLM 'openai':\n{exc}") from exc
        c = self.config
        preset = PRESETS[c.preset]
        self.preset = preset
        model = c.model or preset.model
        params: dict[str, str] | None = None
        if c.preset == "azure" and c.base_url is None:
            deployment = c.azure_deployment or c.model
            if not c.azure_endpoint or not deployment:
                raise ConfigurationError(
                    "preset 'azure' needs azure_endpoint (https://<resource>.openai.azure.com) and "
                    "azure_deployment (or model), or a base_url"
                )
            self.url = f"{c.azure_endpoint.rstrip('/')}/openai/deployments/{deployment}/chat/completions"
            params = {"api-version": c.api_version}
            model = model or deployment
        else:
            base = c.base_url or preset.base_url
            assert base is not None
            self.url = base.rstrip("/") + "/chat/completions"
        if not model:
            raise ConfigurationError(f"LLM 'openai' with preset {c.preset!r} needs a model name (model=...)")
        self.model: str = model
        self._params = params
        headers: dict[str, str] = {}
        if c.azure_ad_token is not None:
            headers["Authorization"] = f"Bearer {c.azure_ad_token.get_secret_value()}"
        if c.api_key is not None:
            if preset.auth == "api-key" and c.base_url is None:
                headers["api-key"] = c.api_key.get_secret_value()
            else:
                headers["Authorization"] = f"Bearer {c.api_key.get_secret_value()}"
        if c.organization:
            headers["OpenAI-Organization"] = c.organization
        if c.project:
            headers["OpenAI-Project"] = c.project
        self._http = RetryingClient("openai", c, headers)
        # What this server has refused so far (learned with json_mode / tools = "auto").
        self._no_json_schema = not preset.json_schema
        self._no_json_object = False
        self._no_tools = False
        self._no_temperature = False
        self._max_tokens_field: str = c.max_tokens_field
        self.usage = TokenUsage()
        """Running token totals over this instance's successful calls."""

    @classmethod
    def from_url(cls, url: str) -> OpenAILLM:
        """Build from ``openai://[:KEY@]host[:port]/path?field=value&...`` (see the class docstring).

        Raises:
            ConfigurationError: a field the config does not have or a bad value.
        """
        preset = parse_qs(urlsplit(url).query).get("preset", [""])[-1]
        fields = url_fields(url, path_field="azure_endpoint" if preset == "azure" else "base_url")
        try:
            return cls(cls.Config(**fields))
        except ValueError as exc:  # pydantic.ValidationError
            raise ConfigurationError(f"bad openai LLM URL {url!r}: {exc}") from exc

    @property
    def supports(self) -> dict[str, bool]:
        """What this instance currently sends: ``json_schema``, ``json_object`` and ``tools``
        (``False`` once the server refused it, or when the config turns it off)."""
        c = self.config
        return {
            "json_schema": c.json_mode == "on" or (c.json_mode == "auto" and not self._no_json_schema),
            "json_object": c.json_mode == "on" or (c.json_mode == "auto" and not self._no_json_object),
            "tools": c.tools == "on" or (c.tools == "auto" and not self._no_tools),
        }

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
            messages: OpenAI chat messages (``system`` / ``user`` / ``assistant`` / ``tool``).
            response_format: ``{"type": "json_object"}``, ``{"type": "json_schema", "json_schema":
                {"name", "schema", "strict"}}`` or a bare JSON schema; ``None`` for text.
            tools: OpenAI function tools (``{"type": "function", "function": {"name", "description",
                "parameters"}}``; ``{"name", "description", "parameters"}`` is accepted too).
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
        msgs = check_messages(messages)
        fmt = response_format_spec(response_format)
        tool_defs = [_tool(t) for t in tools] if tools else []
        c = self.config
        temperature = c.temperature if temperature is None else temperature
        max_tokens = c.max_tokens if max_tokens is None else max_tokens
        deadline = self._http.deadline()
        while True:
            body, sent = self._body(msgs, fmt, tool_defs, temperature, max_tokens)
            try:
                payload = await self._http.post_json(self.url, body, deadline=deadline, params=self._params)
            except RequestRefused as exc:
                if exc.status_code in (400, 404, 415, 422) and self._learn(exc.server_message, sent):
                    continue
                raise
            return self._parse(payload, fmt, tool_defs, sent)

    def _body(
        self,
        msgs: list[dict[str, Any]],
        fmt: _Format | None,
        tool_defs: list[dict[str, Any]],
        temperature: float | None,
        max_tokens: int | None,
    ) -> tuple[dict[str, Any], set[str]]:
        c = self.config
        sup = self.supports
        sent: set[str] = set()
        instructions: list[str] = []
        body: dict[str, Any] = {**c.extra_body, "model": self.model}
        if fmt is not None:
            if fmt.kind == "json_schema" and sup["json_schema"]:
                spec: dict[str, Any] = {"name": fmt.name, "schema": fmt.schema}
                if fmt.strict is not None:
                    spec["strict"] = fmt.strict
                body["response_format"] = {"type": "json_schema", "json_schema": spec}
                sent.add("json_schema")
            elif sup["json_object"]:
                body["response_format"] = {"type": "json_object"}
                sent.add("json_object")
                instructions.append(_json_instruction(fmt))
            else:
                instructions.append(_json_instruction(fmt))
        if tool_defs:
            if sup["tools"]:
                body["tools"] = tool_defs
                sent.add("tools")
            else:
                instructions.append(_tools_instruction(tool_defs))
        body["messages"] = _with_instructions(msgs, instructions) if instructions else msgs
        if temperature is not None and not self._no_temperature:
            body["temperature"] = temperature
            sent.add("temperature")
        if max_tokens is not None:
            body[self._max_tokens_field] = max_tokens
            sent.add("max_tokens")
        return body, sent

    def _learn(self, message: str, sent: set[str]) -> bool:
        """Whether a refusal names a feature we can drop (and remember dropping); ``False`` to raise."""
        m = message.lower()
        c = self.config
        if any(w in m for w in _MESSAGE_PROBLEM):
            return False
        if "max_tokens" in sent and "max_completion_tokens" in m and self._max_tokens_field == "max_tokens":
            self._max_tokens_field = "max_completion_tokens"
            return True
        if c.json_mode == "auto" and any(w in m for w in _JSON_WORDS):
            if "json_schema" in sent:
                self._no_json_schema = True
                return True
            if "json_object" in sent:
                self._no_json_object = True
                return True
        if c.tools == "auto" and "tools" in sent and any(w in m for w in _TOOL_WORDS):
            self._no_tools = True
            return True
        if "temperature" in sent and "temperature" in m and not self._no_temperature:
            # reasoning models take only their default temperature
            self._no_temperature = True
            return True
        return False

    def _parse(
        self, payload: dict[str, Any], fmt: _Format | None, tool_defs: list[dict[str, Any]], sent: set[str]
    ) -> LLMResponse:
        def bad(why: str) -> ProviderError:
            return ProviderError(f"invalid chat completion from {self.url}: {why}", provider="openai")

        choices = payload.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise bad("no 'choices'")
        message = choices[0].get("message")
        if not isinstance(message, dict):
            raise bad("the first choice has no 'message'")
        text = _content_text(message.get("content"))
        if not text and isinstance(message.get("refusal"), str):  # structured outputs: the model declined
            text = message["refusal"]
        calls: list[dict[str, Any]] = []
        for tc in message.get("tool_calls") or []:
            fn = tc.get("function") if isinstance(tc, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise bad(f"malformed tool call {tc!r}")
            call: dict[str, Any] = {"name": fn["name"], "arguments": {}}
            if tc.get("id"):
                call["id"] = tc["id"]
            raw = fn.get("arguments")
            if isinstance(raw, dict):
                call["arguments"] = raw
            elif isinstance(raw, str) and raw.strip():
                found = extract_json(raw)
                value = json.loads(found) if found is not None else None
                if isinstance(value, dict):
                    call["arguments"] = value
                else:
                    call["raw_arguments"] = raw
            calls.append(call)
        if tool_defs and "tools" not in sent and not calls:
            prompted = _prompted_tool_call(text, tool_defs)
            if prompted is not None:
                calls.append(prompted)
                text = ""
        if fmt is not None and text:
            text = extract_json(text) or text
        raw_usage = payload.get("usage")
        usage: dict[str, Any] = raw_usage if isinstance(raw_usage, dict) else {}
        input_tokens = _int(usage.get("prompt_tokens"))
        output_tokens = _int(usage.get("completion_tokens"))
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

    async def __aenter__(self) -> OpenAILLM:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"OpenAILLM(preset={self.config.preset!r}, model={self.model!r}, url={self.url!r})"


def _tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    if tool.get("type") == "function" and isinstance(tool.get("function"), Mapping):
        return dict(tool)
    if isinstance(tool.get("name"), str):  # {"name", "description", "parameters" | "input_schema"}
        fn = {"name": tool["name"]}
        if tool.get("description"):
            fn["description"] = tool["description"]
        fn["parameters"] = (
            tool.get("parameters") or tool.get("input_schema") or {"type": "object", "properties": {}}
        )
        return {"type": "function", "function": fn}
    raise InvalidInputError(
        f"a tool must be {{'type': 'function', 'function': {{'name', ...}}}}; got {dict(tool)!r}"
    )


def _json_instruction(fmt: _Format) -> str:
    text = "Reply with one JSON object and nothing else: no prose, no code fences."
    if fmt.kind == "json_schema":
        text += " The object must match this JSON schema:\n" + json.dumps(fmt.schema, ensure_ascii=False)
    return text


def _tools_instruction(tool_defs: list[dict[str, Any]]) -> str:
    listed = [
        {k: v for k, v in t["function"].items() if k in ("name", "description", "parameters")}
        for t in tool_defs
    ]
    return (
        "You can call one of these tools. To call one, reply with only a JSON object "
        '{"tool": <name>, "arguments": {...}} whose arguments match its parameters; otherwise reply normally.\n'
        "Tools: " + json.dumps(listed, ensure_ascii=False)
    )


def _with_instructions(msgs: list[dict[str, Any]], instructions: list[str]) -> list[dict[str, Any]]:
    """Add the instructions to the first system message (or a new one at the start)."""
    extra = "\n\n".join(instructions)
    out = [dict(m) for m in msgs]
    for m in out:
        if m.get("role") == "system" and isinstance(m.get("content"), str):
            m["content"] = f"{m['content']}\n\n{extra}"
            return out
    return [{"role": "system", "content": extra}, *out]


def _prompted_tool_call(text: str, tool_defs: list[dict[str, Any]]) -> dict[str, Any] | None:
    found = extract_json(text)
    if found is None:
        return None
    value = json.loads(found)
    if not isinstance(value, dict):
        return None
    name = value.get("tool", value.get("name"))
    args = value.get("arguments", value.get("parameters", {}))
    names = {t["function"]["name"] for t in tool_defs}
    if name in names and isinstance(args, dict):
        return {"name": name, "arguments": args}
    return None


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return "".join(
            p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return str(content)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
