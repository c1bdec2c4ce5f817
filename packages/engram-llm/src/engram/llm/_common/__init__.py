"""Private helpers shared by engram's HTTP LLM providers (``openai``, ``anthropic``).

One place for the parts every remote provider needs and must get right the same way:

- :class:`HTTPSettings`: the pydantic fields for timeouts, retries and connection limits, which each
  provider's ``Config`` inherits;
- :class:`RetryingClient`: a lazily created ``httpx.AsyncClient`` and ``post_json``, which bounds
  every attempt by ``timeout`` and the whole call by ``total_timeout``, retries 408 / 409 / 429 /
  5xx answers, connection errors, timeouts and broken bodies with exponential backoff and full
  jitter (or exactly the server's ``Retry-After`` / ``retry-after-ms``), and translates failures into
  :mod:`engram.core.errors` with the server's own message kept;
- :class:`TokenUsage`: the running token total a provider keeps;
- :func:`response_format_spec` and :func:`extract_json`: structured output helpers;
- :func:`check_messages`: the message-list validation every provider (the scripted one too) applies.

Not public API: import the providers from ``engram.llm.openai`` / ``engram.llm.anthropic``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
from engram.core import error_text, parse_retry_after, server_message, url_fields
from engram.core.errors import ConfigurationError, InvalidInputError, ProviderError, ProviderTimeoutError
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "RETRY_STATUS",
    "HTTPSettings",
    "RequestRefused",
    "RetryingClient",
    "TokenUsage",
    "check_messages",
    "error_text",
    "extract_json",
    "parse_retry_after",
    "response_format_spec",
    "url_fields",
]

log = logging.getLogger("engram.llm")

RETRY_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))
"""HTTP statuses that are retried: request timeout, conflict, rate limited, and every server error
(Anthropic's 529 "overloaded" included)."""

MAX_BAD_BODY_RETRIES = 2
"""A body that is cut short or is not JSON is retried as a server fault at most this many times."""


class HTTPSettings(BaseModel):
    """Timeouts, retries and connection limits shared by the HTTP providers' configs.

    Attributes:
        timeout: seconds for one HTTP attempt, from sending the request to the last byte of the
            answer (a body trickling in slowly counts too).
        total_timeout: seconds for one ``generate`` call, every attempt, retry wait and fallback
            included.
        max_retries: retries after the first attempt (0 disables retrying).
        backoff_initial: the backoff cap before the first retry, in seconds; it doubles per retry.
        backoff_max: the largest backoff cap, in seconds. The wait is drawn uniformly from
            ``[0, min(backoff_max, backoff_initial * 2**retry)]`` ("full jitter"), unless the server
            says how long to wait (``Retry-After`` / ``retry-after-ms``), which is honoured exactly.
        max_connections: most HTTP connections open at once (concurrent calls beyond it queue).
        headers: extra HTTP headers sent with every request.
    """

    model_config = ConfigDict(extra="forbid")
    timeout: float = Field(60.0, gt=0)
    total_timeout: float = Field(180.0, gt=0)
    max_retries: int = Field(4, ge=0, le=20)
    backoff_initial: float = Field(0.5, ge=0)
    backoff_max: float = Field(20.0, ge=0)
    max_connections: int = Field(64, ge=1, le=1024)
    headers: dict[str, str] = Field(default_factory=dict)


@dataclass
class TokenUsage:
    """Running token totals of one provider instance.

    Attributes:
        input_tokens: prompt tokens over every successful call (as the server reports them).
        output_tokens: completion tokens over every successful call.
        calls: successful ``generate`` calls.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    calls: int = 0

    def add(self, input_tokens: int | None, output_tokens: int | None) -> None:
        self.input_tokens += input_tokens or 0
        self.output_tokens += output_tokens or 0
        self.calls += 1


class RequestRefused(ProviderError):
    """The server answered with a 4xx status that is not worth retrying (400, 401, 403, 404, 422...).

    Attributes:
        status_code: the HTTP status.
        server_message: the server's own error message (``error.message`` of its JSON body, or the
            start of the body).
    """

    def __init__(self, message: str, *, provider: str | None, status_code: int, server_message: str) -> None:
        super().__init__(message, provider=provider)
        self.status_code = status_code
        self.server_message = server_message


class _Retryable(Exception):
    def __init__(
        self, message: str, retry_after: float | None = None, *, timeout: bool = False, bad_body: bool = False
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.timeout = timeout
        self.bad_body = bad_body


class RetryingClient:
    """``POST`` JSON with retries, backoff and deadlines over one lazily created ``httpx.AsyncClient``.

    Args:
        provider: the provider name put on errors (``"openai"``, ``"anthropic"``).
        settings: the timeouts and retry settings.
        headers: headers for every request (auth, versions), beside ``settings.headers``.
    """

    def __init__(self, provider: str, settings: HTTPSettings, headers: Mapping[str, str]) -> None:
        self.provider = provider
        self.settings = settings
        self._headers = {
            "User-Agent": "engram-llm/0.1",
            "Accept": "application/json",
            **headers,
            **settings.headers,
        }
        self._client: httpx.AsyncClient | None = None
        self._loop: object = None

    def _http(self) -> httpx.AsyncClient:
        # A client's connections belong to the event loop that opened them: one used from another
        # loop (a second ``asyncio.run``, a fresh loop per test) is dropped and a new one opened.
        loop = _running_loop()
        if self._client is not None and loop is not self._loop:
            self._client = None
        self._loop = loop
        if self._client is None:
            s = self.settings
            self._client = httpx.AsyncClient(
                headers=self._headers,
                timeout=httpx.Timeout(s.timeout),
                limits=httpx.Limits(
                    max_connections=s.max_connections, max_keepalive_connections=s.max_connections
                ),
            )
        return self._client

    def deadline(self) -> float:
        """The ``time.monotonic()`` by which a call starting now must end."""
        return time.monotonic() + self.settings.total_timeout

    async def post_json(
        self, url: str, body: Mapping[str, Any], *, deadline: float, params: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """Send ``body`` as JSON and return the JSON object the server answers with.

        Raises:
            RequestRefused: a 4xx answer other than 408 / 409 / 429 (not retried).
            ProviderError: the server kept failing (5xx, 429, broken bodies, connection errors)
                until the retries or the time ran out; or it answered 200 with an error object.
            ProviderTimeoutError: the last attempt timed out, or the deadline passed.
        """
        s = self.settings
        attempt = 0
        bad_bodies = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ProviderTimeoutError(
                    f"request to {url} ran past total_timeout={s.total_timeout:g} s", provider=self.provider
                )
            try:
                return await self._attempt(url, body, params, min(s.timeout, remaining))
            except _Retryable as r:
                failure = r
            bad_bodies += failure.bad_body
            cls = ProviderTimeoutError if failure.timeout else ProviderError
            if attempt >= s.max_retries or bad_bodies > MAX_BAD_BODY_RETRIES:
                raise cls(
                    f"request to {url} failed after {attempt + 1} attempt{'s' if attempt else ''}: {failure}",
                    provider=self.provider,
                ) from failure.__cause__
            if failure.retry_after is not None:
                delay = failure.retry_after
            else:
                delay = random.uniform(0.0, min(s.backoff_max, s.backoff_initial * 2**attempt))
            remaining = deadline - time.monotonic()
            if delay >= remaining:
                raise cls(
                    f"request to {url} failed ({failure}) and the next retry, in {delay:.3g} s, would pass "
                    f"total_timeout={s.total_timeout:g} s",
                    provider=self.provider,
                ) from failure.__cause__
            attempt += 1
            log.debug("%s: retry %d of %s in %.3f s after: %s", self.provider, attempt, url, delay, failure)
            await anyio.sleep(delay)

    async def _attempt(
        self, url: str, body: Mapping[str, Any], params: Mapping[str, str] | None, timeout: float
    ) -> dict[str, Any]:
        client = self._http()
        resp: httpx.Response | None = None
        try:
            # The cancel scope bounds the whole attempt, a body that trickles in included; httpx's
            # own timeout bounds each network operation.
            with anyio.move_on_after(timeout):
                resp = await client.post(url, json=body, params=params, timeout=httpx.Timeout(timeout))
        except httpx.TimeoutException as exc:
            raise _Retryable(
                f"no answer within {timeout:.3g} s ({type(exc).__name__})", timeout=True
            ) from exc
        except httpx.RemoteProtocolError as exc:
            raise _Retryable(f"the server broke off its answer ({exc})", bad_body=True) from exc
        except httpx.TransportError as exc:
            raise _Retryable(f"connection failed ({type(exc).__name__}: {exc})") from exc
        if resp is None:
            raise _Retryable(f"no complete answer within {timeout:.3g} s", timeout=True)
        if resp.status_code >= 300:
            message = f"HTTP {resp.status_code}: {server_message(resp)}"
            if resp.status_code in RETRY_STATUS:
                raise _Retryable(message, parse_retry_after(resp.headers))
            raise RequestRefused(
                f"request to {url} was refused: {message}",
                provider=self.provider,
                status_code=resp.status_code,
                server_message=server_message(resp),
            )
        try:
            payload = resp.json()
        except ValueError as exc:
            raise _Retryable(
                f"the answer is not valid JSON (truncated?): {resp.text[:200]!r}", bad_body=True
            ) from exc
        if not isinstance(payload, dict):
            raise _Retryable(f"the answer is not a JSON object: {resp.text[:200]!r}", bad_body=True)
        if "error" in payload and payload.get("type") != "message" and "choices" not in payload:
            raise ProviderError(f"request to {url} failed: {error_text(payload)}", provider=self.provider)
        return payload

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None and _running_loop() is self._loop:
            await client.aclose()
        # (a client opened on another, finished loop cannot be closed here; it is dropped)


def _running_loop() -> object:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # not asyncio (trio): one loop per run, nothing to track
        return None


@dataclass(frozen=True)
class ResponseFormat:
    """A caller's ``response_format``, normalised.

    Attributes:
        kind: ``"json_object"`` (any JSON object) or ``"json_schema"``.
        schema: the JSON schema (``json_schema`` only).
        name: a name for the schema, ``[A-Za-z0-9_-]{1,64}``.
        strict: OpenAI's ``strict`` flag, when given.
    """

    kind: str
    schema: dict[str, Any] | None = None
    name: str = "response"
    strict: bool | None = None


def response_format_spec(response_format: Mapping[str, Any] | None) -> ResponseFormat | None:
    """Normalise ``response_format``: ``None`` or ``{"type": "text"}`` (plain text),
    ``{"type": "json_object"}``, OpenAI's ``{"type": "json_schema", "json_schema": {"name", "schema",
    "strict"}}``, or a bare JSON schema (``{"type": "object", "properties": ...}``).

    Raises:
        ConfigurationError: something else.
    """
    if response_format is None:
        return None
    if not isinstance(response_format, Mapping):
        raise ConfigurationError(f"response_format must be a mapping, got {type(response_format).__name__}")
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return ResponseFormat("json_object")
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, Mapping):
            spec = response_format  # a flattened form: {"type": "json_schema", "schema": ..., "name": ...}
        schema = spec.get("schema")
        if not isinstance(schema, Mapping):
            raise ConfigurationError("response_format json_schema has no 'schema' object")
        strict = spec.get("strict")
        return ResponseFormat(
            "json_schema", dict(schema), _name(spec.get("name")), strict if isinstance(strict, bool) else None
        )
    if "properties" in response_format or kind in ("object", "array") or "$schema" in response_format:
        return ResponseFormat("json_schema", dict(response_format), _name(response_format.get("title")))
    raise ConfigurationError(
        f"unsupported response_format {dict(response_format)!r}: use {{'type': 'json_object'}}, "
        "{'type': 'json_schema', 'json_schema': {...}} or a JSON schema"
    )


def _name(value: Any) -> str:
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", str(value or "")).strip("_")[:64]
    return name or "response"


_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)


def extract_json(text: str) -> str | None:
    """The JSON value in a reply that wraps it in code fences or prose, re-serialised compactly;
    ``None`` when there is none. A reply that is JSON already is returned unchanged."""
    stripped = text.strip()
    try:
        json.loads(stripped)
        return stripped
    except ValueError:
        pass
    candidates = [m.group(1).strip() for m in _FENCE.finditer(text)]
    decoder = json.JSONDecoder()
    for candidate in candidates:
        try:
            return json.dumps(json.loads(candidate), ensure_ascii=False)
        except ValueError:
            continue
    for i, ch in enumerate(text):
        if ch in "{[":
            try:
                value, _ = decoder.raw_decode(text, i)
            except ValueError:
                continue
            if isinstance(value, dict | list):
                return json.dumps(value, ensure_ascii=False)
    return None




def check_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Copies of ``messages`` as dicts, after checking it is a list of mappings each with a string
    ``role``.

    Raises:
        InvalidInputError: a bare string, something that is not a sequence, or a message that is
            not a mapping with a ``role``.
    """
    if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
        raise InvalidInputError("messages must be a list of {'role', 'content'} mappings")
    out = []
    for m in messages:
        if not isinstance(m, Mapping) or not isinstance(m.get("role"), str):
            raise InvalidInputError(f"a message must be a mapping with a 'role'; got {m!r}")
        out.append(dict(m))
    return out
