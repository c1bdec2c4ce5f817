"""The store's configuration and its URL forms."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from engram.core import FusionConfig
from engram.core.errors import ConfigurationError
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

__all__ = ["DEFAULT_URL", "QdrantConfig", "config_from_url"]

DEFAULT_URL = "http://localhost:6333"
_COLLECTION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class QdrantConfig(BaseModel):
    """Configuration of :class:`~engram.vector.qdrant.QdrantVectorStore`.

    Exactly one mode: ``location=":memory:"`` (local mode, in memory), ``path`` (local mode, a
    folder), or ``url`` (a Qdrant server); none of them means the server at
    ``http://localhost:6333``, as qdrant-client's own default.

    Attributes:
        url: server URL, ``http(s)://host[:port][/prefix]`` (port 6333 when left out); the scheme
            decides between http and https.
        location: ``":memory:"`` for qdrant-client's in-memory local mode.
        path: a folder for qdrant-client's local mode (created when missing; one process at a time).
        api_key: the server's API key (sent as the ``api-key`` header).
        prefer_grpc: talk gRPC instead of REST (server mode).
        grpc_port: the server's gRPC port (default 6334).
        timeout: seconds each request may take (whole seconds, as qdrant-client takes them).
        collection: the collection holding the memories; created on the first write.
        fusion: how ``hybrid`` search fuses the dense and BM25 hits.
        exact: dense search scans every candidate instead of using the HNSW index.
        bm25_k1, bm25_b: BM25's term-frequency saturation and length normalisation.
        bm25_avg_len: the document length (in terms) that BM25 normalises to; memories are
            short facts, hence 12.
    """

    model_config = ConfigDict(extra="forbid")

    url: str | None = None
    location: str | None = None
    path: str | None = None
    api_key: SecretStr | None = None
    prefer_grpc: bool = False
    grpc_port: int = Field(default=6334, ge=1, le=65535)
    timeout: int = Field(default=10, ge=1)
    collection: str = "engram"
    fusion: FusionConfig = FusionConfig()
    exact: bool = False
    bm25_k1: float = Field(default=1.2, ge=0)
    bm25_b: float = Field(default=0.75, ge=0, le=1)
    bm25_avg_len: float = Field(default=12.0, gt=0)

    @model_validator(mode="after")
    def _one_mode(self) -> QdrantConfig:
        given = [n for n in ("url", "location", "path") if getattr(self, n) is not None]
        if len(given) > 1:
            raise ValueError(f"give one of url, location or path, not {' and '.join(given)}")
        if self.location is not None and self.location != ":memory:":
            raise ValueError(f"location must be ':memory:' (a server goes in url), got {self.location!r}")
        if self.path is not None and not self.path.strip():
            raise ValueError("path is empty")
        if self.local and (self.api_key is not None or self.prefer_grpc):
            raise ValueError("api_key and prefer_grpc apply to a server (url), not to local mode")
        if not _COLLECTION.fullmatch(self.collection):
            raise ValueError(
                f"collection {self.collection!r}: 1-255 letters, digits, '_', '.' or '-', starting with a letter or digit"
            )
        if self.url is not None and urlsplit(self.url).scheme not in ("http", "https"):
            raise ValueError(f"url must start with http:// or https://, got {self.url!r}")
        return self

    @property
    def local(self) -> bool:
        """Whether this is qdrant-client's local mode (in memory or a folder)."""
        return self.location is not None or self.path is not None

    @property
    def where(self) -> str:
        """The server URL, folder or ``:memory:``, for messages."""
        return self.path or self.location or self.url or DEFAULT_URL


def _flag(fields: dict[str, Any], name: str, url: str) -> bool | None:
    raw = fields.pop(name, None)
    if raw is None:
        return None
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ConfigurationError(f"qdrant URL {url!r}: {name}={raw!r} is not true or false")


def config_from_url(url: str) -> QdrantConfig:
    """Parse the URL forms (see the package docstring) into a config.

    Raises:
        ConfigurationError: not a ``qdrant://`` URL, or a malformed one.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("qdrant", "qdrant+http", "qdrant+https"):
        raise ConfigurationError(
            f"not a qdrant URL: {url!r} (expected qdrant://, qdrant+https:// or qdrant+http://)"
        )
    fields: dict[str, Any] = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    https = _flag(fields, "https", url)
    grpc = _flag(fields, "grpc", url)
    prefer = _flag(fields, "prefer_grpc", url)
    for name in ("exact",):
        if (flag := _flag(fields, name, url)) is not None:
            fields[name] = flag
    if grpc is not None or prefer is not None:
        fields["prefer_grpc"] = bool(grpc or prefer)
    if "api_key" in fields:
        raise ConfigurationError(
            f"qdrant URL {url!r}: put the API key in the password part (qdrant://:KEY@host:6333/collection), "
            "not in the query string"
        )
    path = unquote(parts.path)
    if not parts.netloc:  # local mode: qdrant:///:memory:, qdrant:///relative/folder, qdrant:////abs/folder
        local = path[1:] if path.startswith("/") else path
        if not local:
            raise ConfigurationError(f"qdrant URL {url!r} names neither a host nor a local folder")
        if https is not None or scheme != "qdrant":
            raise ConfigurationError(f"qdrant URL {url!r}: https applies to a server, not to local mode")
        if local == ":memory:":
            fields["location"] = ":memory:"
        else:
            fields["path"] = local
    else:
        if https is None:
            https = scheme == "qdrant+https"
        elif scheme != "qdrant":
            raise ConfigurationError(
                f"qdrant URL {url!r}: give https in the scheme or in the query, not both"
            )
        try:
            port = parts.port or 6333
        except ValueError as exc:
            raise ConfigurationError(f"qdrant URL {url!r}: {exc}") from None
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        fields["url"] = f"{'https' if https else 'http'}://{host}:{port}"
        if parts.password:
            fields["api_key"] = unquote(parts.password)
        segments = [s for s in path.split("/") if s]
        if len(segments) > 1:
            raise ConfigurationError(f"qdrant URL {url!r}: the path names one collection, got {path!r}")
        if segments:
            if "collection" in fields:
                raise ConfigurationError(f"qdrant URL {url!r}: collection given in the path and in the query")
            fields["collection"] = segments[0]
    try:
        return QdrantConfig(**fields)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise ConfigurationError(f"qdrant URL {url!r}: {exc}") from None
