"""One JSON shape for every error the REST API returns, with stable codes.

``{"error": {"code": "not_found", "message": "no memory with id '...'"}}``, plus ``"details"`` (a
list of ``{"loc", "msg", "type"}``) for request validation errors. Exceptions from
:mod:`engram.core.errors` map to codes here; anything unexpected becomes ``internal`` with a
fixed message: the client never sees a traceback or an exception's text.
"""

from __future__ import annotations

import logging
from typing import Any

from engram.core.errors import (
    ConfigurationError,
    EngramError,
    InvalidFilterError,
    InvalidInputError,
    MemoryNotFoundError,
    ProviderError,
    ProviderTimeoutError,
)
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = ["CODES", "ApiError", "ErrorBody", "error_response", "install_handlers", "unexpected"]

log = logging.getLogger("engram.server.rest")

# code -> HTTP status. Stable: clients may branch on the code.
CODES: dict[str, int] = {
    "invalid_input": 422,
    "invalid_filter": 422,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "payload_too_large": 413,
    "internal": 500,
    "provider_error": 502,
    "configuration_error": 503,
    "timeout": 504,
}


class ApiError(Exception):
    """An error the API answers with ``CODES[code]`` and ``message``."""

    def __init__(self, code: str, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = headers


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str
    message: str
    details: list[dict[str, Any]] | None = None


class ErrorBody(BaseModel):
    """The body of every error response."""

    model_config = ConfigDict(extra="forbid")
    error: ErrorDetail


def error_response(
    code: str,
    message: str,
    *,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=CODES[code], headers=headers)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def engram_error(exc: EngramError) -> tuple[str, str]:
    """The code and the client-safe message for an engram error."""
    if isinstance(exc, MemoryNotFoundError):
        return "not_found", str(exc)
    if isinstance(exc, InvalidFilterError):
        return "invalid_filter", str(exc)
    if isinstance(exc, InvalidInputError):
        return "invalid_input", str(exc)
    if isinstance(exc, ProviderTimeoutError):
        return "timeout", _provider_message(exc, "did not answer in time")
    if isinstance(exc, ProviderError):
        return "provider_error", _provider_message(exc, "failed")
    if isinstance(exc, ConfigurationError):
        return "configuration_error", str(exc)
    return "internal", "internal server error"


def _provider_message(exc: ProviderError, what: str) -> str:
    # A provider's message may carry a driver's text (hosts, paths): keep it in the server's log.
    name = exc.provider or "a"
    return (
        f"{name} provider {what}; see the server log"
        if exc.provider
        else f"a provider {what}; see the server log"
    )


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    # loc, msg and type only: the input echoed back could be large, or be someone's secret.
    return [
        {
            "loc": [str(p) for p in e.get("loc", ())],
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in exc.errors()[:20]
    ]


async def _on_api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.code, exc.message, headers=exc.headers)


async def _on_validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = _validation_details(exc)
    first = details[0] if details else {"loc": [], "msg": "invalid request"}
    where = ".".join(p for p in first["loc"] if p not in ("body",)) or "request"
    return error_response("invalid_input", f"{where}: {first['msg']}", details=details)


def _allowed(request: Request) -> str:
    """Every method the path's routes take (Starlette's own 405 names only the first route's)."""
    from starlette.routing import Match

    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": ""})
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405:
        return error_response(
            "method_not_allowed", "Method Not Allowed", headers={"Allow": _allowed(request)}
        )
    code = {
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
        413: "payload_too_large",
    }.get(exc.status_code)
    if code is None:
        code = "internal" if exc.status_code >= 500 else "invalid_input"
    message = exc.detail if isinstance(exc.detail, str) and exc.status_code < 500 else code.replace("_", " ")
    return error_response(code, message, headers=getattr(exc, "headers", None))


async def _on_engram(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, EngramError)
    code, message = engram_error(exc)
    if CODES[code] >= 500:
        log.error("%s %s: %s", request.method, request.url.path, code, exc_info=exc)
    return error_response(code, message)


def unexpected(method: str, path: str, exc: BaseException) -> JSONResponse:
    """The response for an exception no handler took: a task group's engram errors keep their
    code; anything else is ``internal``, logged with its traceback, never shown."""
    leaves = _leaves(exc)
    engram = [e for e in leaves if isinstance(e, EngramError)]
    if engram and len(engram) == len(leaves):
        code, message = engram_error(engram[0])
    else:
        code, message = "internal", "internal server error"
    if CODES[code] >= 500:
        log.error("%s %s: %s", method, path, code, exc_info=exc)
    return error_response(code, message)


def install_handlers(app: FastAPI) -> None:
    """Route every exception to the error shape."""
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(EngramError, _on_engram)
    # Anything else reaches the Guard middleware (see _middleware.py), which answers ``internal``.
