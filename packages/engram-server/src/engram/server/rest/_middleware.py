"""Pure ASGI middleware: a SERVER span per request, a last-resort error guard, a body-size limit.

Order, outermost first: :class:`Telemetry` -> :class:`Guard` -> :class:`BodyLimit` -> the app.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from ._errors import error_response, unexpected

__all__ = ["BodyLimit", "Guard", "Telemetry"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413 ``payload_too_large``, before any parsing.

    A ``Content-Length`` over the limit is refused without reading the body; otherwise the body is
    read (streamed or not) up to the limit, refused as soon as it passes it, and replayed to the
    app. A ``Content-Length`` that is not a number is a 422 ``invalid_input``.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                await error_response("invalid_input", "Content-Length must be a number of bytes")(
                    scope, receive, send
                )
                return
            if int(declared) > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            "payload_too_large",
            f"the request body is larger than this server's limit of {self.max_bytes} bytes",
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


class Guard:
    """Answer any exception the app let through with 500 ``internal`` (or an engram error's code, for
    a task group's errors): logged with its traceback on the server, never sent to the client."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            if started:  # too late for an error body; the server closes the connection
                raise
            await unexpected(scope.get("method", ""), scope.get("path", ""), exc)(scope, receive, send)


def _telemetry_version() -> str:
    try:
        return version("engram-telemetry")
    except PackageNotFoundError:  # pragma: no cover - a source tree without metadata
        return "0+unknown"


class Telemetry:
    """One OpenTelemetry SERVER span per HTTP request, named ``"{METHOD} {route template}"``.

    The W3C ``traceparent`` header is honoured (``opentelemetry.propagate.extract``), so the
    engine's ``engram.<op>`` spans become children of the caller's trace. Attributes:
    ``http.request.method``, ``http.route`` (the template, e.g. ``/memories/{memory_id}``) and
    ``http.response.status_code``; a 5xx sets the span's status to ERROR with ``error.type`` = the
    status code. Nothing from the request's path, query string, headers or body is recorded:
    those carry scope ids, memory ids and filter values. opentelemetry-api only: without an SDK
    the span is a no-op.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._version = _telemetry_version()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from opentelemetry import propagate, trace

        carrier = {
            bytes(k).decode("latin-1").lower(): bytes(v).decode("latin-1")
            for k, v in scope.get("headers") or ()
        }
        ctx = propagate.extract(carrier)
        tracer = trace.get_tracer("engram", self._version)
        method = scope.get("method", "")
        status = 500
        with tracer.start_as_current_span(
            method,
            context=ctx,
            kind=trace.SpanKind.SERVER,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            recording = span.is_recording()
            if recording:
                span.set_attribute("http.request.method", method)

            async def traced(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                await send(message)

            try:
                await self.app(scope, receive, traced)
            finally:
                if recording:
                    route = getattr(scope.get("route"), "path", None)
                    if route:
                        span.update_name(f"{method} {route}")
                        span.set_attribute("http.route", route)
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(trace.Status(trace.StatusCode.ERROR))
                        span.set_attribute("error.type", str(status))
