"""Small helpers every provider that talks to a remote HTTP API shares (no HTTP client here)."""

from __future__ import annotations

import email.utils
import json
import math
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["error_text", "parse_retry_after", "server_message", "url_fields"]


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


def url_fields(url: str, *, path_field: str = "base_url") -> dict[str, Any]:
    """Config fields from ``scheme://[:KEY@]host[:port][/path]?field=value&...``: ``host`` becomes
    ``https://host[:port]/path`` (``tls=false`` for ``http://``) under ``path_field``, the password
    part the ``api_key``, and the query the other fields (last value wins)."""
    parts = urlsplit(url)
    fields: dict[str, Any] = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    tls = str(fields.pop("tls", "true")).lower() not in ("0", "false", "no", "off")
    if parts.hostname:
        host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        port = f":{parts.port}" if parts.port else ""
        fields.setdefault(path_field, f"{'https' if tls else 'http'}://{host}{port}{parts.path.rstrip('/')}")
    if parts.password:
        fields.setdefault("api_key", unquote(parts.password))
    return fields
