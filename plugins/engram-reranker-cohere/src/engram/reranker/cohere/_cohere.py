from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import httpx
from engram.core import check_rerank_args, error_text, parse_retry_after, url_fields
from engram.core.errors import ConfigurationError, ProviderError, ProviderTimeoutError
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from cohere import AsyncClientV2
from cohere.core.api_error import ApiError
from cohere.core.request_options import RequestOptions

try:  # cohere >= 6 raises this for a 2xx body it could not validate
    from cohere.core.parse_error import ParsingError

    _PARSING_ERRORS: tuple[type[Exception], ...] = (ParsingError,)
except ImportError:  # pragma: no cover - older SDKs have no such error
    _PARSING_ERRORS = ()

__all__ = ["MAX_BAD_BODY_RETRIES", "RETRY_STATUS", "CohereAPIError", "CohereReranker"]

"""Environment variables read, in this order, when the config has no ``api_key`` (the same ones,
in the same order, as the Cohere SDK reads)."""

RETRY_STATUS = frozenset({408, 409, 429}) | (frozenset(range(500, 600)) - {501, 505})
"""HTTP statuses that are retried: request timeout, conflict, rate limited, and server errors (the
Cohere SDK's own retry set, less 501 Not Implemented and 505 HTTP Version Not Supported, which a
retry cannot fix)."""

_AUTH_STATUS = frozenset({401, 498})  # 498: Cohere's "invalid token"

MAX_BAD_BODY_RETRIES = 2
"""An answer that is cut short or is not JSON is retried as a server fault at most this many times."""


class CohereAPIError(ProviderError):
    """The rerank server answered with an error status, or with a body that is not a rerank answer.

    Attributes:
        status_code: the HTTP status (``None`` when the failure was not an HTTP answer).
        server_message: the server's own message (``message`` of Cohere's ``{"id", "message"}`` error
            body, or the start of the body).
        retry_after: seconds the server asked to wait (``Retry-After``, ``retry-after-ms`` or
            ``x-ratelimit-reset``), when it said.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        server_message: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, provider="cohere")
        self.status_code = status_code
        self.server_message = server_message
        self.retry_after = retry_after


class _Retryable(CohereAPIError):
    """A failure worth another attempt (internal: :meth:`error` is what the caller sees)."""

    def __init__(self, message: str, *, timeout: bool = False, bad_body: bool = False, **fields: Any) -> None:
        super().__init__(message, **fields)
        self.timeout = timeout
        self.bad_body = bad_body

    def error(self, message: str) -> ProviderError:
        if self.timeout:
            return ProviderTimeoutError(message, provider="cohere")
        return CohereAPIError(
            message,
            status_code=self.status_code,
            server_message=self.server_message,
            retry_after=self.retry_after,
        )


class CohereReranker:
    """A reranker on Cohere's ``POST /v2/rerank`` API through the official SDK (``cohere.AsyncClientV2``),
    or on any server that speaks the same protocol at ``base_url`` (a proxy, a compatible server).

    :meth:`rerank` sends the query and the documents and returns ``(index, relevance)`` pairs, most
    relevant first. Cohere's models score each document against the query on its own, in ``[0, 1]``,
    so scores from separate requests compare.

    **Batching.** A list longer than ``max_documents_per_request`` (default 1,000, the most Cohere
    recommends sending in one request) is split into consecutive parts of at most that many
    documents; the parts are ranked by separate requests (up to ``max_concurrency`` at a time, each
    asking for ``top_n`` when given), and their results are merged by relevance, ties broken by the
    lower index, and cut to ``top_n``.

    **Retries and time.** The SDK's own retries are turned off (``max_retries=0`` per request) and
    this class retries instead, so that every attempt and the whole call have deadlines and the
    waits are ``anyio`` sleeps: a request that fails with HTTP 408, 409, 429 or 5xx (not 501 / 505),
    a connection error, a timeout, or an answer cut short or not JSON (at most
    :data:`MAX_BAD_BODY_RETRIES` times) is sent again up to ``max_retries`` times. Before a retry it
    waits exactly what the server asked (``Retry-After`` in seconds or as an HTTP date,
    ``retry-after-ms``, or ``x-ratelimit-reset``, the headers the Cohere SDK honours), otherwise a
    random time in ``[0, min(backoff_max, backoff_initial * 2**retry)]`` ("full jitter"). When that
    wait would run past ``total_timeout`` the call fails at once instead of sleeping. Other 4xx
    answers (400, 401, 403, 404, 422, 498, ...) are not retried.

    **Errors.** Every failure is an :mod:`engram.core.errors` exception, the SDK's or httpx's own as
    its ``__cause__``: :class:`CohereAPIError` (a :class:`~engram.core.errors.ProviderError`) with the
    HTTP status and the server's message for refused requests, exhausted retries and malformed
    answers; :class:`~engram.core.errors.ProviderTimeoutError` when the last attempt timed out or the
    call ran past ``total_timeout``. The API key never appears in a message or a ``repr``.

    **API key.** ``api_key`` from the config only: as everywhere in engram, environment variables
    (``CO_API_KEY``, ``ENGRAM_...``) are read at the edge of the application, which passes the key
    in. It is sent as ``Authorization: Bearer <key>``. A server that checks no key still
    needs some value (any string).

    **Lifecycle.** Nothing connects in ``__init__``: the SDK client and its ``httpx.AsyncClient`` are
    created on the first :meth:`rerank` (again after :meth:`aclose`, or when called from another
    event loop); :meth:`aclose` / ``async with`` closes the HTTP connections.

    URL form: ``cohere://[:KEY@]host[:port][/path]?model=...&timeout=...`` for
    ``https://host[:port]/path`` (``tls=false`` for ``http://``); ``cohere://`` alone is Cohere's API.

    Args:
        config: a :class:`CohereReranker.Config`; or pass its fields as keyword arguments.

    Raises:
        ConfigurationError: both a config and keyword fields, or a field the config rejects.
    """

    class Config(BaseModel):
        """Attributes:
        api_key: the Cohere API key (required before the first call; the environment is not read).
        model: the rerank model, e.g. ``"rerank-v3.5"``, ``"rerank-v4.0-pro"``, ``"rerank-v4.0-fast"``.
        base_url: the API root; the SDK appends ``/v2/rerank``. A trailing ``/v1`` or ``/v2`` is
            removed (the SDK adds the version itself).
        timeout: seconds for one HTTP attempt, from sending the request to the last byte of the answer.
        total_timeout: seconds for one :meth:`rerank` call, every part, attempt and retry wait included.
        max_retries: retries per request after the first attempt (0 disables retrying).
        backoff_initial: the backoff cap before the first retry, seconds; it doubles per retry.
        backoff_max: the largest backoff cap, seconds (a server's ``Retry-After`` is not capped by it).
        max_tokens_per_doc: sent as ``max_tokens_per_doc`` (the server truncates longer documents;
            Cohere's default is 4096); ``None`` leaves it to the server.
        max_documents_per_request: most documents in one request; longer lists are split (see
            the class docstring).
        max_concurrency: most requests in flight at once for one :meth:`rerank` call.
        max_connections: most HTTP connections the client keeps open.
        headers: extra HTTP headers for every request (a proxy's own auth, for instance).
        client_name: sent as ``X-Client-Name``.
        """

        model_config = ConfigDict(extra="forbid")
        api_key: SecretStr | None = None
        model: str = Field(default="rerank-v3.5", min_length=1)
        base_url: str = "https://api.cohere.com"
        timeout: float = Field(default=30.0, gt=0)
        total_timeout: float = Field(default=60.0, gt=0)
        max_retries: int = Field(default=2, ge=0, le=20)
        backoff_initial: float = Field(default=0.5, ge=0)
        backoff_max: float = Field(default=20.0, ge=0)
        max_tokens_per_doc: int | None = Field(default=None, ge=1)
        max_documents_per_request: int = Field(default=1000, ge=1)
        max_concurrency: int = Field(default=4, ge=1, le=64)
        max_connections: int = Field(default=16, ge=1, le=1024)
        headers: dict[str, str] = Field(default_factory=dict)
        client_name: str = "engram"

        @field_validator("base_url")
        @classmethod
        def _base_url(cls, value: str) -> str:
            if not value.startswith(("http://", "https://")):
                raise ValueError(f"base_url must start with http:// or https://, got {value!r}")
            value = value.rstrip("/")
            for suffix in ("/v1", "/v2"):
                if value.endswith(suffix):
                    value = value[: -len(suffix)]
            return value

    capabilities = frozenset({"remote"})

    def __init__(self, config: Config | None = None, **kwargs: Any) -> None:
        if config is not None and kwargs:
            raise ConfigurationError("pass either a CohereReranker.Config or keyword fields, not both")
        try:
            self.config = config or self.Config(**kwargs)
        except ValueError as exc:  # pydantic.ValidationError
            raise ConfigurationError(f"invalid config for reranker 'cohere':\n{exc}") from exc
        self.url = _display_url(self.config.base_url) + "/v2/rerank"
        """The rerank URL (without any credentials in the base URL), as shown in errors."""
        self._client: AsyncClientV2 | None = None
        self._http: httpx.AsyncClient | None = None
        self._loop: object = None
        self.search_units = 0.0
        """Search units billed over this instance's successful requests, as the server reports them."""

    @classmethod
    def from_url(cls, url: str) -> CohereReranker:
        """Build from ``cohere://[:KEY@]host[:port][/path]?field=value&...`` (see the class docstring).

        Raises:
            ConfigurationError: a field the config does not have or a bad value.
        """
        try:
            return cls(cls.Config(**url_fields(url)))
        except ValueError as exc:  # pydantic.ValidationError
            raise ConfigurationError(f"bad cohere reranker URL {url!r}: {exc}") from exc

    def __repr__(self) -> str:
        return f"CohereReranker(model={self.config.model!r}, url={self.url!r})"

    # -- client ----------------------------------------------------------------------------------

    def _api_key(self) -> str:
        if self.config.api_key is not None:
            return self.config.api_key.get_secret_value()
        raise ConfigurationError(
            "reranker 'cohere' has no API key: set api_key in its config (a server that checks no key "
            "accepts any value)"
        )

    def _sdk(self) -> AsyncClientV2:
        # An httpx client's connections belong to the event loop that opened them: one used from
        # another loop (a second ``asyncio.run``, a fresh loop per test) is dropped and a new one made.
        loop = _running_loop()
        if self._client is not None and loop is not self._loop:
            self._client = self._http = None
        if self._client is None:
            c = self.config
            key = self._api_key()
            self._http = httpx.AsyncClient(
                headers=c.headers,
                timeout=httpx.Timeout(c.timeout),
                limits=httpx.Limits(
                    max_connections=c.max_connections, max_keepalive_connections=c.max_connections
                ),
            )
            self._client = AsyncClientV2(
                api_key=key,
                base_url=c.base_url,
                client_name=c.client_name,
                timeout=c.timeout,
                httpx_client=self._http,
                log_warning_experimental_features=False,
            )
            self._loop = loop
        return self._client

    # -- rerank ----------------------------------------------------------------------------------

    async def rerank(
        self, query: str, documents: Sequence[str], *, top_n: int | None = None
    ) -> list[tuple[int, float]]:
        """Order ``documents`` by relevance to ``query``.

        Args:
            query: the search query.
            documents: the candidate texts (a sequence of strings, not one string).
            top_n: return only the best ``top_n`` (a positive integer); ``None`` returns them all.

        Returns:
            ``[(index into documents, relevance), ...]``, most relevant first (ties by the lower
            index), ``min(top_n, len(documents))`` pairs; relevance as the server reports it (Cohere:
            ``[0, 1]``). An empty ``documents`` gives ``[]`` without a request.

        Raises:
            InvalidInputError: ``query`` is not a string, ``documents`` is a string or holds a
                non-string, or ``top_n`` is not a positive integer. Nothing is sent.
            ConfigurationError: no API key (see the class docstring).
            CohereAPIError: the server refused the request (its status and message are kept), kept
                failing until the retries ran out, or answered with something that is not a rerank
                answer.
            ProviderTimeoutError: the call ran past ``total_timeout``, or its last attempt timed out.
        """
        docs = check_rerank_args(query, documents, top_n)
        if not docs:
            return []
        c = self.config
        client = self._sdk()
        deadline = time.monotonic() + c.total_timeout
        size = c.max_documents_per_request
        parts = [(start, docs[start : start + size]) for start in range(0, len(docs), size)]
        results: list[list[tuple[int, float]]] = [[] for _ in parts]
        errors: list[BaseException] = []
        limiter = anyio.CapacityLimiter(c.max_concurrency)

        async def run(k: int) -> None:
            start, part = parts[k]
            async with limiter:
                try:
                    ranked = await self._request(client, query, part, top_n, deadline)
                except Exception as exc:
                    errors.append(exc)
                    tg.cancel_scope.cancel()
                    return
            results[k] = [(start + i, s) for i, s in ranked]

        # A safety net a little past the deadline: every attempt already bounds itself by it.
        with anyio.move_on_after(c.total_timeout + 1.0) as scope:
            async with anyio.create_task_group() as tg:
                for k in range(len(parts)):
                    tg.start_soon(run, k)
        if errors:
            raise errors[0]
        if scope.cancelled_caught:
            raise ProviderTimeoutError(
                f"reranking {len(docs)} documents at {self.url} took longer than {c.total_timeout:g} s",
                provider="cohere",
            )
        merged = [pair for part in results for pair in part]
        merged.sort(key=lambda p: (-p[1], p[0]))
        return merged[:top_n] if top_n is not None else merged

    async def _request(
        self, client: AsyncClientV2, query: str, part: list[str], top_n: int | None, deadline: float
    ) -> list[tuple[int, float]]:
        c = self.config
        attempt = 0
        bad_bodies = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ProviderTimeoutError(
                    f"rerank request to {self.url} ran past total_timeout={c.total_timeout:g} s",
                    provider="cohere",
                )
            try:
                return await self._attempt(client, query, part, top_n, min(c.timeout, remaining))
            except _Retryable as r:
                failure = r
            bad_bodies += failure.bad_body
            if attempt >= c.max_retries or bad_bodies > MAX_BAD_BODY_RETRIES:
                raise failure.error(
                    f"rerank request to {self.url} failed after {attempt + 1} attempt{'s' if attempt else ''}: "
                    f"{failure}"
                ) from failure.__cause__
            if failure.retry_after is not None:
                delay = failure.retry_after
            else:
                delay = random.uniform(0.0, min(c.backoff_max, c.backoff_initial * 2**attempt))
            if delay >= deadline - time.monotonic():
                raise failure.error(
                    f"rerank request to {self.url} failed ({failure}) and the next retry, in {delay:.3g} s, "
                    f"would pass total_timeout={c.total_timeout:g} s"
                ) from failure.__cause__
            attempt += 1
            await anyio.sleep(delay)

    async def _attempt(
        self, client: AsyncClientV2, query: str, part: list[str], top_n: int | None, timeout: float
    ) -> list[tuple[int, float]]:
        c = self.config
        n = len(part)
        ask = min(top_n, n) if top_n is not None else None
        options: RequestOptions = {"max_retries": 0}  # this class retries (see the class docstring)
        kwargs: dict[str, Any] = {}
        if ask is not None:
            kwargs["top_n"] = ask
        if c.max_tokens_per_doc is not None:
            kwargs["max_tokens_per_doc"] = c.max_tokens_per_doc
        response: Any = None
        try:
            # The cancel scope bounds the whole attempt, a body that trickles in included; httpx's
            # own timeout bounds each network operation.
            with anyio.move_on_after(timeout):
                response = await client.rerank(
                    model=c.model, query=query, documents=part, request_options=options, **kwargs
                )
        except ApiError as exc:
            raise _translate(exc, self.url) from exc
        except _PARSING_ERRORS as exc:
            status, body = getattr(exc, "status_code", None), getattr(exc, "body", None)
            raise CohereAPIError(
                f"invalid rerank answer from {self.url} (HTTP {status}): {error_text(body)}",
                status_code=status,
            ) from exc
        except httpx.TimeoutException as exc:
            raise _Retryable(
                f"no answer within {timeout:.3g} s ({type(exc).__name__})", timeout=True
            ) from exc
        except httpx.RemoteProtocolError as exc:
            raise _Retryable(f"the server broke off its answer ({exc})", bad_body=True) from exc
        except httpx.TransportError as exc:
            raise _Retryable(f"connection failed ({type(exc).__name__}: {exc})") from exc
        except (TypeError, AttributeError) as exc:  # the SDK could not build a response from the JSON
            raise CohereAPIError(
                f"invalid rerank answer from {self.url}: not a JSON object ({type(exc).__name__}: {exc})"
            ) from exc
        if response is None:
            raise _Retryable(f"no complete answer within {timeout:.3g} s", timeout=True)
        return self._parse(response, n, ask)

    def _parse(self, response: Any, n: int, ask: int | None) -> list[tuple[int, float]]:
        def bad(why: str) -> CohereAPIError:
            return CohereAPIError(f"invalid rerank answer from {self.url}: {why}", status_code=200)

        items = getattr(response, "results", None)
        if not isinstance(items, list):
            raise bad("no 'results' list")
        expected = ask if ask is not None else n
        if len(items) != expected:
            raise bad(f"{len(items)} results for {n} documents (expected {expected})")
        out: list[tuple[int, float]] = []
        seen: set[int] = set()
        for item in items:
            index = getattr(item, "index", None)
            score = getattr(item, "relevance_score", None)
            if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < n or index in seen:
                raise bad(f"result index {index!r} is not a distinct integer in [0, {n})")
            if not isinstance(score, int | float) or isinstance(score, bool) or not math.isfinite(score):
                raise bad(f"relevance_score {score!r} of result {index} is not a finite number")
            seen.add(index)
            out.append((index, float(score)))
        billed = getattr(getattr(getattr(response, "meta", None), "billed_units", None), "search_units", None)
        if isinstance(billed, int | float) and not isinstance(billed, bool):
            self.search_units += float(billed)
        out.sort(key=lambda p: (-p[1], p[0]))
        return out

    # -- lifecycle -------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the HTTP connections (a later :meth:`rerank` opens new ones)."""
        http, loop = self._http, self._loop
        self._client = self._http = None
        if http is not None and _running_loop() is loop:
            await http.aclose()
        # (a client opened on another, finished loop cannot be closed here; it is dropped)

    async def __aenter__(self) -> CohereReranker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _translate(exc: ApiError, url: str) -> Exception:
    """An SDK ``ApiError`` as a retryable failure or a :class:`CohereAPIError` (never retried)."""
    status = exc.status_code
    message = error_text(exc.body) if exc.body not in (None, "") else "(no body)"
    if status is not None and 200 <= status < 300:  # the SDK could not parse a 2xx body as JSON
        return _Retryable(
            f"the answer is not valid JSON: {message[:200]!r}", status_code=status, bad_body=True
        )
    retry_after = _retry_after(getattr(exc, "headers", None) or {})  # cohere < 5.16 keeps no headers
    text = f"HTTP {status}: {message}"
    if status in RETRY_STATUS:
        return _Retryable(text, status_code=status, server_message=message, retry_after=retry_after)
    if status in _AUTH_STATUS:
        text += " (check the reranker's api_key)"
    return CohereAPIError(
        f"rerank request to {url} was refused: {text}",
        status_code=status,
        server_message=message,
        retry_after=retry_after,
    )


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``Retry-After`` / ``retry-after-ms`` (:func:`engram.core.parse_retry_after`),
    else from ``x-ratelimit-reset`` (a Unix time, seconds), as the Cohere SDK reads them."""
    lowered = {k.lower(): v for k, v in headers.items()}
    seconds = parse_retry_after(lowered)
    if seconds is not None:
        return seconds
    reset = lowered.get("x-ratelimit-reset")
    try:
        wait = float(reset) - time.time() if reset else None
    except ValueError:
        return None
    return wait if wait is not None and math.isfinite(wait) and wait > 0 else None


def _display_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _running_loop() -> object:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # not asyncio (trio): one loop per run, nothing to track
        return None
