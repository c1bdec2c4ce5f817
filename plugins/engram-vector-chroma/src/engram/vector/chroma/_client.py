"""The two ways to reach Chroma, behind one small async interface.

- :class:`EmbeddedBackend`: ``chromadb.EphemeralClient`` / ``chromadb.PersistentClient``; every
  call is blocking and runs in a worker thread (``anyio.to_thread``).
- :class:`ServerBackend`: ``await chromadb.AsyncHttpClient(...)`` to a ``chroma run`` server;
  every call runs under the configured timeout.

Both turn Chroma's anonymized telemetry off (``Settings(anonymized_telemetry=False)``), and both
create and open collections with ``embedding_function=None``: engram always hands Chroma the
embeddings, so Chroma never loads (or downloads) an embedding model of its own.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import anyio
from engram.core.errors import ConfigurationError

from ._config import MEMORY, ChromaConfig
from ._errors import is_not_found

__all__ = ["Backend", "EmbeddedBackend", "ServerBackend", "connect"]

#: Collections are created with cosine distance (Chroma reports ``1 - cosine similarity``).
COLLECTION_CONFIGURATION: dict[str, Any] = {"hnsw": {"space": "cosine"}}


def _settings(**kwargs: Any) -> Any:
    from chromadb.config import Settings

    return Settings(anonymized_telemetry=False, **kwargs)


class Backend:
    """What the store needs from a Chroma client; subclasses say how a call runs (``_run``)."""

    client: Any

    async def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    async def get_collection(self, name: str) -> Any | None:
        try:
            return await self._run(self.client.get_collection, name, embedding_function=None)
        except Exception as exc:
            if is_not_found(exc):
                return None
            raise

    async def get_or_create_collection(self, name: str, metadata: dict[str, Any]) -> Any:
        return await self._run(
            self.client.get_or_create_collection, name, metadata=metadata,
            configuration=COLLECTION_CONFIGURATION, embedding_function=None,
        )

    async def delete_collection(self, name: str) -> None:
        try:
            await self._run(self.client.delete_collection, name)
        except Exception as exc:
            if not is_not_found(exc):
                raise

    async def max_batch_size(self) -> int:
        return int(await self._run(self.client.get_max_batch_size))

    async def call(self, collection: Any, method: str, **kwargs: Any) -> Any:
        return await self._run(getattr(collection, method), **kwargs)

    async def close(self) -> None:
        raise NotImplementedError


class EmbeddedBackend(Backend):
    """Chroma inside this process; blocking calls in worker threads."""

    def __init__(self, client: Any) -> None:
        self.client = client

    @classmethod
    async def connect(cls, config: ChromaConfig) -> EmbeddedBackend:
        def make() -> Any:
            import chromadb

            settings = _settings()
            kw = {"tenant": config.tenant, "database": config.database}
            try:
                if config.path == MEMORY:
                    return chromadb.EphemeralClient(settings, **kw)
                return chromadb.PersistentClient(str(Path(str(config.path)).expanduser()), settings, **kw)
            except ValueError as exc:
                if "different settings" not in str(exc):
                    raise
                raise ConfigurationError(
                    f"another Chroma client in this process already opened {config.where} with other settings; "
                    "engram opens it with Settings(anonymized_telemetry=False): create yours with the same "
                    "settings or close it first"
                ) from exc

        return cls(await anyio.to_thread.run_sync(make))

    async def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))

    async def close(self) -> None:
        await self._run(self.client.close)


def _shared_http_clients() -> dict[Any, Any] | None:
    """chromadb 1.x keeps the async server client's ``httpx.AsyncClient`` per event loop in a
    dict on the *class* ``AsyncFastAPI``: every AsyncHttpClient in the process shares it (with
    the headers of whichever made it first) and a closed loop's client stays behind. Returns
    that dict, or ``None`` when this chromadb has none."""
    try:
        from chromadb.api.async_fastapi import AsyncFastAPI
    except ImportError:  # pragma: no cover - another chromadb layout
        return None
    shared = vars(AsyncFastAPI).get("_clients")
    return shared if isinstance(shared, dict) else None


class ServerBackend(Backend):
    """A Chroma server through chromadb's ``AsyncHttpClient``; each call under ``timeout``.

    The HTTP connection pool is this backend's own (see :func:`_shared_http_clients`): after the
    handshake the pool the handshake made moves from chromadb's class-wide cache onto this client,
    so its headers are this store's and ``close()`` closes exactly it.
    """

    def __init__(self, client: Any, timeout: float, own: dict[Any, Any] | None) -> None:
        self.client = client
        self.timeout = timeout
        self._own = own

    @classmethod
    async def connect(cls, config: ChromaConfig) -> ServerBackend:
        import chromadb

        shared = _shared_http_clients()
        before = set(shared) if shared is not None else set()

        def take() -> dict[Any, Any]:
            if shared is None:
                return {}
            return {k: c for k in list(shared) if k not in before and (c := shared.pop(k, None)) is not None}

        try:
            with anyio.fail_after(config.timeout):
                client = await chromadb.AsyncHttpClient(
                    host=config.server_host, port=config.port, ssl=config.ssl, headers=config.http_headers(),
                    settings=_settings(chroma_server_ssl_verify=config.ssl_verify),
                    tenant=config.tenant, database=config.database,
                )
        except BaseException:
            with anyio.CancelScope(shield=True):
                for c in take().values():
                    await c.aclose()
            raise
        own = take() if shared is not None else None
        server = getattr(client, "_server", None)
        if own is not None and server is not None and isinstance(getattr(server, "_clients", None), dict):
            server._clients = own  # an instance attribute: this client's pool from now on
        else:
            own = None
        return cls(client, config.timeout, own)

    async def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        with anyio.fail_after(self.timeout):
            return await fn(*args, **kwargs)

    async def close(self) -> None:
        if self._own:
            with anyio.CancelScope(shield=True):
                while self._own:
                    _, c = self._own.popitem()
                    await c.aclose()



async def connect(config: ChromaConfig) -> Backend:
    """Open the client the config names (embedded or server)."""
    if config.embedded:
        return await EmbeddedBackend.connect(config)
    return await ServerBackend.connect(config)
