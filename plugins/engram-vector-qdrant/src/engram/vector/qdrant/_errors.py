"""qdrant-client, httpx and gRPC exceptions as engram errors."""

from __future__ import annotations

import json
from typing import Any

import httpx
from engram.core.errors import EngramError, ProviderError, ProviderTimeoutError
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

try:  # grpcio comes with qdrant-client; guard anyway so REST-only setups import cleanly
    import grpc
except ImportError:  # pragma: no cover
    grpc = None  # type: ignore[assignment]

__all__ = ["NotFound", "translate_error"]

PROVIDER = "qdrant"


class NotFound(ProviderError):
    """The collection does not exist (the store treats it as empty)."""


def _server_message(exc: UnexpectedResponse) -> str:
    try:
        body = json.loads(exc.content)
        status = body.get("status") if isinstance(body, dict) else None
        if isinstance(status, dict) and status.get("error"):
            return str(status["error"])
    except (ValueError, TypeError):
        pass
    text = exc.content.decode("utf-8", "replace").strip()[:300]
    return text or exc.reason_phrase or "no message"


def translate_error(exc: BaseException, where: str) -> EngramError:
    """The engram error for an exception raised by a Qdrant call (``where`` names the server or
    folder, for the message). Engram's own errors come back unchanged."""
    if isinstance(exc, EngramError):
        return exc
    if isinstance(exc, ResponseHandlingException):
        exc = exc.source if isinstance(exc.source, BaseException) else exc
    if isinstance(exc, httpx.TimeoutException):
        return ProviderTimeoutError(f"Qdrant at {where} did not answer in time: {exc!r}", provider=PROVIDER)
    if isinstance(exc, httpx.TransportError):
        return ProviderError(
            f"cannot reach Qdrant at {where}: {type(exc).__name__}: {exc}", provider=PROVIDER
        )
    if isinstance(exc, UnexpectedResponse):
        msg = _server_message(exc)
        if exc.status_code == 404:
            return NotFound(f"Qdrant at {where}: {msg}", provider=PROVIDER)
        return ProviderError(f"Qdrant at {where} answered {exc.status_code}: {msg}", provider=PROVIDER)
    if grpc is not None and isinstance(exc, grpc.RpcError):
        code: Any = exc.code() if callable(getattr(exc, "code", None)) else None  # type: ignore[attr-defined]
        details = exc.details() if callable(getattr(exc, "details", None)) else str(exc)  # type: ignore[attr-defined]
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return ProviderTimeoutError(
                f"Qdrant at {where} did not answer in time: {details}", provider=PROVIDER
            )
        if code == grpc.StatusCode.UNAVAILABLE:
            return ProviderError(f"cannot reach Qdrant at {where} over gRPC: {details}", provider=PROVIDER)
        if code == grpc.StatusCode.NOT_FOUND:
            return NotFound(f"Qdrant at {where}: {details}", provider=PROVIDER)
        name = getattr(code, "name", code)
        return ProviderError(f"Qdrant at {where} answered {name}: {details}", provider=PROVIDER)
    if isinstance(exc, TimeoutError):
        return ProviderTimeoutError(f"Qdrant at {where} did not answer in time: {exc!r}", provider=PROVIDER)
    if isinstance(exc, ValueError) and "not found" in str(exc).lower():  # local mode: missing collection
        return NotFound(f"Qdrant at {where}: {exc}", provider=PROVIDER)
    return ProviderError(f"Qdrant at {where} failed: {type(exc).__name__}: {exc}", provider=PROVIDER)
