"""Who is calling, and which scopes that caller may touch."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from engram.core import Scope
from engram.core.errors import ConfigurationError
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPBearer

from ._errors import ApiError
from ._keys import ApiKey, KeyStore

__all__ = ["Caller", "CallerDep", "current_caller", "security_dependencies"]

_FIELDS = ("user_id", "agent_id", "run_id")


@dataclass(frozen=True, slots=True)
class Caller:
    """The caller: ``key`` is ``None`` when the server runs without API keys (everything allowed)."""

    key: ApiKey | None

    @property
    def scope(self) -> Scope | None:
        return self.key.scope if self.key is not None else None

    @property
    def admin(self) -> bool:
        return self.scope is None

    def require_admin(self, what: str) -> None:
        if not self.admin:
            raise ApiError("forbidden", f"{what} needs an admin API key (one not limited to a scope)")

    def resolve(
        self, user_id: str | None, agent_id: str | None, run_id: str | None, *, required: bool = True
    ) -> Scope | None:
        """The scope a request may use.

        A scoped key fills in the ids it is limited to; an id that differs from the key's is 403
        ``forbidden``. A request may narrow the key's scope (add a run_id), never widen it.

        Raises:
            ApiError: forbidden, or invalid_input when ``required`` and no id is given by either.
            InvalidScopeError: a malformed id.
        """
        ids: dict[str, str | None] = {"user_id": user_id, "agent_id": agent_id, "run_id": run_id}
        limit = self.scope
        if limit is not None:
            for name, allowed in limit.items():
                asked = ids[name]
                if asked is not None and asked != allowed:
                    raise ApiError("forbidden", f"this API key is limited to {name}={allowed!r}")
                ids[name] = allowed
        if all(v is None for v in ids.values()):
            if required:
                raise ApiError("invalid_input", "this request needs a scope: user_id, agent_id or run_id")
            return None
        return Scope(**ids)

    def sees(self, record: Mapping[str, Any]) -> bool:
        """Whether a memory or history event (a dict with scope ids) is within this caller's scope."""
        limit = self.scope
        return limit is None or limit.matches(
            record.get("user_id"), record.get("agent_id"), record.get("run_id")
        )


def _presented(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() in ("bearer", "token") and value.strip():
            return value.strip()
        return None
    key = request.headers.get("x-api-key")
    return key.strip() if key and key.strip() else None


_BEARER = HTTPBearer(
    auto_error=False,
    description="`Authorization: Bearer <key>` (mem0's `Authorization: Token <key>` works too).",
)
_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="The key in an `X-API-Key` header.")


def security_dependencies(keys: KeyStore | None) -> list[Any]:
    """What declares the key headers in the OpenAPI document: nothing when auth is off. (They only
    document; :func:`current_caller` reads the headers itself, ``Token`` included.)"""
    return [Depends(_BEARER), Depends(_HEADER)] if keys is not None else []


async def current_caller(request: Request) -> Caller:
    """The :class:`Caller`: admin for everyone without a key store (``app.state.keys``); with one,
    a missing or unknown key is 401, and every key is 503 ``configuration_error`` while the keys
    file cannot be used (deleted, unreadable or malformed since the server read it)."""
    keys: KeyStore | None = request.app.state.keys
    if keys is None:
        return Caller(None)
    presented = _presented(request)
    challenge = {"WWW-Authenticate": "Bearer"}
    if presented is None:
        raise ApiError(
            "unauthorized", "an API key is required: Authorization: Bearer <key>", headers=challenge
        )
    try:
        found = keys.verify(presented)
    except ConfigurationError:  # fail closed; the file's path and the reason go to the server log
        raise ApiError(
            "configuration_error",
            "the server cannot read its API keys file: every API key is refused until it is fixed",
        ) from None
    if found is None:
        raise ApiError("unauthorized", "unknown API key", headers=challenge)
    return Caller(found)


CallerDep = Annotated[Caller, Depends(current_caller)]
