"""The store's configuration and its URL forms."""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

from engram.core.errors import ConfigurationError
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

__all__ = ["MEMORY", "ChromaConfig", "config_from_url"]

MEMORY = ":memory:"
DEFAULT_PORT = 8000
# Chroma's own rule for collection names (checked here so a bad name fails before any connection).
_COLLECTION = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{1,510})[A-Za-z0-9]")
_BOOL = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


class ChromaConfig(BaseModel):
    """Configuration of :class:`~engram.vector.chroma.ChromaVectorStore`.

    One of three modes:

    - ``path=":memory:"``: Chroma's in-process ``EphemeralClient`` (nothing is written to disk);
    - ``path="some/folder"``: Chroma's embedded ``PersistentClient`` on that folder;
    - ``host`` (or neither field): a Chroma server (``chroma run``) through ``AsyncHttpClient``;
      with neither ``path`` nor ``host`` the server is ``localhost:8000``, Chroma's own default.

    Attributes:
        path: ``":memory:"`` or a folder for the embedded modes (``~`` is expanded; Chroma creates it).
        host: the server's host name or address.
        port: the server's port.
        ssl: talk HTTPS to the server.
        ssl_verify: check the server's certificate (``True``), skip the check (``False``), or the
            path of a CA bundle. Chroma's async client would not verify unless told; engram
            verifies by default.
        token: the server's auth token, sent in ``token_header``.
        token_header: ``"Authorization"`` (sent as ``Bearer <token>``) or ``"X-Chroma-Token"``.
        headers: more HTTP headers for every request (values are kept secret in reprs).
        tenant, database: the Chroma tenant and database holding the collection.
        timeout: seconds each server request may take before ``ProviderTimeoutError``.
        collection: the collection holding the memories (3-512 letters, digits, ``.``, ``_``,
            ``-``, starting and ending with a letter or digit); created on the first write.
    """

    model_config = ConfigDict(extra="forbid")

    path: str | None = None
    host: str | None = None
    port: int = Field(default=DEFAULT_PORT, ge=1, le=65535)
    ssl: bool = False
    ssl_verify: bool | str = True
    token: SecretStr | None = None
    token_header: Literal["Authorization", "X-Chroma-Token"] = "Authorization"
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    tenant: str = Field(default="default_tenant", min_length=1)
    database: str = Field(default="default_database", min_length=1)
    timeout: float = Field(default=30.0, gt=0)
    collection: str = "engram"

    @model_validator(mode="after")
    def _one_mode(self) -> ChromaConfig:
        if self.path is not None and self.host is not None:
            raise ValueError("give path (embedded Chroma) or host (a Chroma server), not both")
        if self.path is not None and not self.path.strip():
            raise ValueError("path is empty; use ':memory:' for an in-memory Chroma")
        if self.host is not None and not self.host.strip():
            raise ValueError("host is empty")
        if self.embedded:
            server_only = [n for n in ("ssl", "token", "headers") if getattr(self, n)]
            if server_only:
                raise ValueError(f"{', '.join(server_only)} apply to a Chroma server (host), not to embedded mode")
        if not _COLLECTION.fullmatch(self.collection):
            raise ValueError(
                f"collection {self.collection!r}: 3-512 letters, digits, '.', '_' or '-', starting and ending "
                "with a letter or digit (Chroma's rule)"
            )
        return self

    @property
    def mode(self) -> Literal["ephemeral", "persistent", "server"]:
        """Which Chroma client the store uses."""
        if self.path is None:
            return "server"
        return "ephemeral" if self.path == MEMORY else "persistent"

    @property
    def embedded(self) -> bool:
        """Chroma runs inside this process (ephemeral or persistent)."""
        return self.path is not None

    @property
    def server_host(self) -> str:
        return self.host or "localhost"

    @property
    def where(self) -> str:
        """The folder, ``:memory:`` or server URL, for messages."""
        if self.path is not None:
            return self.path
        host = self.server_host
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if self.ssl else 'http'}://{host}:{self.port}"

    def http_headers(self) -> dict[str, str]:
        """The headers sent to the server: ``headers`` plus the token's header."""
        out = {k: v.get_secret_value() for k, v in self.headers.items()}
        if self.token is not None:
            secret = self.token.get_secret_value()
            out[self.token_header] = f"Bearer {secret}" if self.token_header == "Authorization" else secret
        return out


def config_from_url(url: str) -> ChromaConfig:
    """Parse a ``chroma://`` URL into a config.

    Forms:
        ``chroma://host[:port]/collection`` (a server over HTTP, port 8000 by default),
        ``chroma+https://host[:port]/collection`` (HTTPS; ``chroma+http://`` is plain HTTP),
        ``chroma://:TOKEN@host:port/collection`` (the auth token in the password part),
        ``chroma:///:memory:`` or ``chroma://:memory:`` (in memory), ``chroma:///relative/folder``,
        ``chroma:////absolute/folder`` (embedded, on disk). The query string sets other fields:
        ``?collection=name&tenant=t&database=d&timeout=10&ssl_verify=false&token_header=X-Chroma-Token``
        (``ssl_verify`` also takes the path of a CA bundle).

    Raises:
        ConfigurationError: not a ``chroma`` URL, or a malformed one.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("chroma", "chroma+http", "chroma+https"):
        raise ConfigurationError(f"not a chroma URL: {url!r} (expected chroma://, chroma+http:// or chroma+https://)")
    fields: dict[str, Any] = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    if "token" in fields:
        raise ConfigurationError(
            f"chroma URL {url!r}: put the token in the password part (chroma://:TOKEN@host:8000/collection), "
            "not in the query string"
        )
    for name in ("ssl", "headers"):
        if name in fields:
            raise ConfigurationError(f"chroma URL {url!r}: {name} cannot be set in the query string "
                                     "(https: use chroma+https://)")
    if (verify := fields.get("ssl_verify")) is not None:  # a flag, or the path of a CA bundle
        fields["ssl_verify"] = _BOOL.get(verify.lower(), verify)
    path = unquote(parts.path)
    if parts.netloc in ("", MEMORY):  # embedded: chroma:///:memory:, chroma://:memory:, chroma:///folder
        local = MEMORY if parts.netloc == MEMORY else (path[1:] if path.startswith("/") else path)
        if parts.netloc == MEMORY and path not in ("", "/"):
            raise ConfigurationError(f"chroma URL {url!r}: nothing may follow :memory: but a query string")
        if not local:
            raise ConfigurationError(f"chroma URL {url!r} names neither a server nor a local folder")
        if scheme != "chroma":
            raise ConfigurationError(f"chroma URL {url!r}: http/https apply to a server, not to embedded Chroma")
        fields["path"] = local
    else:
        fields["ssl"] = scheme == "chroma+https"
        try:
            port = parts.port
        except ValueError as exc:
            raise ConfigurationError(f"chroma URL {url!r}: {exc}") from None
        if not parts.hostname:
            raise ConfigurationError(f"chroma URL {url!r} has no host")
        fields["host"] = parts.hostname
        if port is not None:
            fields["port"] = port
        if parts.password:
            fields["token"] = unquote(parts.password)
        segments = [s for s in path.split("/") if s]
        if len(segments) > 1:
            raise ConfigurationError(f"chroma URL {url!r}: the path names one collection, got {path!r}")
        if segments:
            if "collection" in fields:
                raise ConfigurationError(f"chroma URL {url!r}: collection given in the path and in the query")
            fields["collection"] = segments[0]
    try:
        return ChromaConfig(**fields)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise ConfigurationError(f"chroma URL {url!r}: {exc}") from None
