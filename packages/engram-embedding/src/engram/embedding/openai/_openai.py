from __future__ import annotations

import base64
import random
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import anyio
import httpx
import numpy as np
from engram.core import error_text, parse_retry_after, server_message, url_fields
from engram.core.errors import ConfigurationError, InvalidInputError, ProviderError, ProviderTimeoutError
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

KNOWN_DIMS: dict[str, int] = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
"""Native vector lengths of OpenAI's embedding models, used when the config gives none."""

_RETRY_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None, timeout: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.timeout = timeout


class OpenAIEmbedder:
    """Embeddings from any OpenAI-compatible server: ``POST {base_url}/embeddings`` (OpenAI, Azure
    OpenAI's v1 API, vLLM, llama.cpp, Ollama, LM Studio, text-embeddings-inference, ...).

    Texts are sent in batches of at most ``batch_size`` inputs, up to ``max_concurrency`` requests
    at a time, over one lazily created ``httpx.AsyncClient``. A request that fails with HTTP 408,
    409, 429 or 5xx, a connection error or a timeout is retried up to ``max_retries`` times with
    exponential backoff and jitter (delay ``min(backoff_max, backoff_initial * 2**attempt)``
    scaled by a random factor in [0.5, 1]), or after exactly the server's ``Retry-After`` /
    ``retry-after-ms`` when it sends one; one :meth:`embed` call never runs longer than
    ``total_timeout`` seconds, retries and waits included. Rows come back sorted by the server's
    ``index``, checked for count and length, and re-normalised to unit length.

    ``dims`` is, in order: ``dimensions`` (sent to the server, for models that can shorten their
    vectors), ``dims`` (not sent; the length the server returns), the native length of a known
    OpenAI model (:data:`KNOWN_DIMS`), or the length of the first response; before that first
    response it is ``0`` (unknown). Set ``dims`` for other models when a store needs the length
    before anything is embedded.

    The API key is only taken from the config: read environment variables (``OPENAI_API_KEY``,
    ``ENGRAM_...``) at the edge of the application and pass the key in.

    URL form: ``openai://host[:port]/path?model=...&dims=...`` for ``https://host[:port]/path``
    (``tls=false`` for ``http://``; a password part ``openai://:KEY@host/v1`` is the API key);
    ``openai://`` alone means api.openai.com.

    Args:
        config: an :class:`OpenAIEmbedder.Config`; or pass its fields as keyword arguments.
    """

    class Config(BaseModel):
        """Attributes:
        base_url: the API root; ``/embeddings`` is appended.
        model: the model name sent to the server.
        api_key: sent as ``Authorization: Bearer <key>`` when set.
        dimensions: ask the server for vectors of this length (text-embedding-3 models).
        dims: the length the server returns, when not asking for one (checked on every response).
        batch_size: most inputs per request (OpenAI accepts up to 2048).
        max_concurrency: most requests in flight at once for one :meth:`embed` call.
        timeout: seconds for one HTTP request (connect, write, read).
        total_timeout: seconds for one :meth:`embed` call, retries and waits included.
        max_retries: retries per request after the first attempt.
        backoff_initial: seconds before the first retry (before jitter).
        backoff_max: longest backoff between two attempts, in seconds (``Retry-After`` excepted).
        encoding_format: ``"float"`` (every server) or ``"base64"`` (smaller; OpenAI and most others).
        organization: sent as ``OpenAI-Organization`` when set.
        headers: extra HTTP headers for every request.
        """

        model_config = ConfigDict(extra="forbid")
        base_url: str = "https://api.openai.com/v1"
        model: str = "text-embedding-3-small"
        api_key: SecretStr | None = None
        dimensions: int | None = Field(None, ge=1)
        dims: int | None = Field(None, ge=1)
        batch_size: int = Field(256, ge=1, le=2048)
        max_concurrency: int = Field(4, ge=1, le=64)
        timeout: float = Field(30.0, gt=0)
        total_timeout: float = Field(120.0, gt=0)
        max_retries: int = Field(5, ge=0, le=20)
        backoff_initial: float = Field(0.5, ge=0)
        backoff_max: float = Field(20.0, ge=0)
        encoding_format: Literal["float", "base64"] = "float"
        organization: str | None = None
        headers: dict[str, str] = Field(default_factory=dict)

        @model_validator(mode="after")
        def _check(self) -> OpenAIEmbedder.Config:
            if self.dims is not None and self.dimensions is not None and self.dims != self.dimensions:
                raise ValueError(f"dims ({self.dims}) and dimensions ({self.dimensions}) disagree")
            if not self.base_url.startswith(("http://", "https://")):
                raise ValueError(f"base_url must start with http:// or https://, got {self.base_url!r}")
            return self

    capabilities = frozenset({"remote"})

    def __init__(self, config: Config | None = None, **kwargs: Any) -> None:
        if config is not None and kwargs:
            raise ConfigurationError("pass either an OpenAIEmbedder.Config or keyword fields, not both")
        self.config = config or self.Config(**kwargs)
        c = self.config
        self._url = c.base_url.rstrip("/") + "/embeddings"
        self._dims = c.dimensions or c.dims or KNOWN_DIMS.get(c.model, 0)
        self._client: httpx.AsyncClient | None = None
        self.last_usage: dict[str, Any] | None = None
        """The ``usage`` object of the last response (token counts), when the server sends one."""

    @classmethod
    def from_url(cls, url: str) -> OpenAIEmbedder:
        """Build from ``openai://[:KEY@]host[:port]/path?field=value&...`` (see the class docstring).

        Raises:
            ConfigurationError: a field the config does not have or a bad value.
        """
        try:
            return cls(cls.Config(**url_fields(url)))
        except ValueError as exc:  # pydantic.ValidationError
            raise ConfigurationError(f"bad openai embedder URL {url!r}: {exc}") from exc

    @property
    def dims(self) -> int:
        """Length of every vector; ``0`` until known (see the class docstring)."""
        return self._dims

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            c = self.config
            headers = {"User-Agent": "engram-embedding/0.1", "Accept": "application/json", **c.headers}
            if c.api_key is not None:
                headers["Authorization"] = f"Bearer {c.api_key.get_secret_value()}"
            if c.organization:
                headers["OpenAI-Organization"] = c.organization
            self._client = httpx.AsyncClient(
                headers=headers,
                timeout=httpx.Timeout(c.timeout),
                limits=httpx.Limits(max_connections=c.max_concurrency, max_keepalive_connections=c.max_concurrency),
            )
        return self._client

    async def embed(self, texts: Sequence[str], *, kind: Literal["document", "query"] = "document") -> np.ndarray:
        """Embed a batch of texts.

        Args:
            texts: any strings. An empty string is sent as a single space (OpenAI rejects empty inputs).
            kind: ignored (OpenAI's models are symmetric); accepted for the protocol.

        Returns:
            ``(len(texts), dims)`` float32, each row L2-normalised (so a dot product is the cosine).

        Raises:
            InvalidInputError: an item is not a string.
            ProviderError: the server refused the request (its message is kept), answered with
                something that is not a valid embeddings response, or kept failing after retries.
            ProviderTimeoutError: the call ran past ``total_timeout``, or its last attempt timed out.
        """
        if isinstance(texts, str):
            raise InvalidInputError("embed() takes a sequence of strings, not a single string")
        items = list(texts)
        for t in items:
            if not isinstance(t, str):
                raise InvalidInputError(f"embed() takes strings; got {type(t).__name__}")
        if not items:
            return np.zeros((0, self._dims), dtype=np.float32)
        items = [t if t else " " for t in items]
        c = self.config
        client = self._http()
        deadline = time.monotonic() + c.total_timeout
        batches = [items[i : i + c.batch_size] for i in range(0, len(items), c.batch_size)]
        results: list[np.ndarray | None] = [None] * len(batches)
        errors: list[BaseException] = []
        limiter = anyio.CapacityLimiter(c.max_concurrency)

        async def run(i: int, tg: TaskGroup) -> None:
            async with limiter:
                try:
                    results[i] = await self._request(client, batches[i], deadline)
                except Exception as exc:
                    errors.append(exc)
                    tg.cancel_scope.cancel()

        # A safety net a little past the deadline: each attempt already bounds itself by it.
        with anyio.move_on_after(c.total_timeout + 1.0) as scope:
            async with anyio.create_task_group() as tg:
                for i in range(len(batches)):
                    tg.start_soon(run, i, tg)
        if errors:
            raise errors[0]
        if scope.cancelled_caught:
            raise ProviderTimeoutError(
                f"embedding {len(items)} texts at {self._url} took longer than {c.total_timeout:g} s", provider="openai"
            )
        return np.concatenate([r for r in results if r is not None], axis=0)

    async def _request(self, client: httpx.AsyncClient, batch: list[str], deadline: float) -> np.ndarray:
        c = self.config
        body: dict[str, Any] = {"model": c.model, "input": batch, "encoding_format": c.encoding_format}
        if c.dimensions is not None:
            body["dimensions"] = c.dimensions
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ProviderTimeoutError(
                    f"embeddings request to {self._url} ran past total_timeout={c.total_timeout:g} s", provider="openai"
                )
            try:
                return await self._attempt(client, body, len(batch), min(c.timeout, remaining))
            except _Retryable as r:
                failure = r
            remaining = deadline - time.monotonic()
            if attempt >= c.max_retries:
                cls = ProviderTimeoutError if failure.timeout else ProviderError
                raise cls(
                    f"embeddings request to {self._url} failed after {attempt + 1} attempts: {failure}", provider="openai"
                ) from failure.__cause__
            if failure.retry_after is not None:
                delay = failure.retry_after
            else:
                delay = min(c.backoff_max, c.backoff_initial * 2**attempt) * random.uniform(0.5, 1.0)
            if delay >= remaining:
                cls = ProviderTimeoutError if failure.timeout else ProviderError
                raise cls(
                    f"embeddings request to {self._url} failed ({failure}) and the next retry, in {delay:.3g} s, "
                    f"would pass total_timeout={c.total_timeout:g} s",
                    provider="openai",
                ) from failure.__cause__
            attempt += 1
            await anyio.sleep(delay)

    async def _attempt(self, client: httpx.AsyncClient, body: dict[str, Any], n: int, timeout: float) -> np.ndarray:
        try:
            resp = await client.post(self._url, json=body, timeout=httpx.Timeout(timeout))
        except httpx.TimeoutException as exc:
            raise _Retryable(f"no answer within {timeout:.3g} s ({type(exc).__name__})", None, timeout=True) from exc
        except httpx.TransportError as exc:
            raise _Retryable(f"connection failed ({type(exc).__name__}: {exc})", None) from exc
        if resp.status_code != 200:
            message = f"HTTP {resp.status_code}: {server_message(resp)}"
            if resp.status_code in _RETRY_STATUS:
                raise _Retryable(message, parse_retry_after(resp.headers))
            raise ProviderError(f"embeddings request to {self._url} was refused: {message}", provider="openai")
        return self._parse(resp, n)

    def _parse(self, resp: httpx.Response, n: int) -> np.ndarray:
        def bad(why: str) -> ProviderError:
            return ProviderError(f"invalid embeddings response from {self._url}: {why}", provider="openai")

        try:
            payload = resp.json()
        except ValueError as exc:
            raise bad(f"not JSON ({resp.text[:200]!r})") from exc
        if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
            if isinstance(payload, dict) and "error" in payload:
                raise ProviderError(
                    f"embeddings request to {self._url} failed: {error_text(payload)}", provider="openai"
                )
            raise bad("no 'data' list")
        data = payload["data"]
        if len(data) != n:
            raise bad(f"{len(data)} embeddings for {n} inputs")
        try:
            order = sorted(range(n), key=lambda j: int(data[j].get("index", j)))
            if [int(data[j].get("index", j)) for j in order] != list(range(n)):
                raise bad("the 'index' fields are not 0..n-1")
            rows = [self._vector(data[j]["embedding"]) for j in order]
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise bad(f"malformed item ({type(exc).__name__}: {exc})") from exc
        width = {len(r) for r in rows}
        if len(width) != 1:
            raise bad(f"vectors of different lengths {sorted(width)}")
        (w,) = width
        if self._dims and w != self._dims:
            raise bad(f"vectors of length {w}, expected {self._dims}")
        if w == 0:
            raise bad("empty vectors")
        out = np.stack(rows).astype(np.float32, copy=False)
        if not np.isfinite(out).all():
            raise bad("non-finite values")
        self._dims = w
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out /= np.maximum(norms, 1e-12)
        usage = payload.get("usage")
        self.last_usage = usage if isinstance(usage, dict) else None
        return out

    @staticmethod
    def _vector(value: Any) -> np.ndarray:
        if isinstance(value, str):  # encoding_format="base64": little-endian float32
            return np.frombuffer(base64.b64decode(value), dtype="<f4").astype(np.float32)
        if not isinstance(value, list):
            raise TypeError(f"embedding is a {type(value).__name__}")
        return np.asarray(value, dtype=np.float32)

    async def aclose(self) -> None:
        """Close the HTTP client (a later :meth:`embed` opens a new one)."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def __aenter__(self) -> OpenAIEmbedder:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


