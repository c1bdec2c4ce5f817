"""Small helpers every provider that talks to a remote HTTP API shares (no HTTP client here)."""

from __future__ import annotations

import email.utils
import json
import math
import time
from collections.abc import Mapping
from typing import Any

__all__ = ["error_text", "parse_retry_after", "server_message"]


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms`` (OpenAI, Anthropic) or ``Retry-After`` (RFC 9110
    §10.2.3: delay-seconds or an HTTP-date); ``None`` when neither is usable. A date in the past
    gives 0.0."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            v = float(ms) / 1000.0
            if math.isfinite(v) and v >= 0:
                return v
        except ValueError:
            pass
    ra = headers.get("retry-after")
    if not ra:
        return None
    try:
        v = float(ra)
        return v if math.isfinite(v) and v >= 0 else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(ra)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_text(payload: Any) -> str:
    """The message of an error body: OpenAI's ``{"error": {"message", "type", "code"}}``,
    Anthropic's ``{"type": "error", "error": {"type", "message"}}``, FastAPI's ``{"detail": ...}``;
    otherwise the payload itself, cut to 500 characters."""
    if isinstance(payload, dict):
        err = payload.get("error", payload.get("detail", payload.get("message")))
        if isinstance(err, dict):
            msg = err.get("message") or err.get("msg") or json.dumps(err)
            code = err.get("code") or err.get("type")
            return f"{msg} ({code})" if code else str(msg)
        if err is not None:
            return err if isinstance(err, str) else json.dumps(err)
    return str(payload)[:500]


def server_message(resp: Any) -> str:
    """The server's own message for an HTTP error response (anything with ``json()``, ``text``
    and ``reason_phrase``, such as an ``httpx.Response``)."""
    try:
        return error_text(resp.json())
    except ValueError:
        text = resp.text.strip()
        return text[:500] if text else resp.reason_phrase
