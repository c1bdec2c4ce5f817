"""chromadb's exceptions as engram's, at the boundary."""

from __future__ import annotations

from engram.core.errors import EngramError, InvalidInputError, ProviderError, ProviderTimeoutError

__all__ = ["PROVIDER", "is_not_found", "translate"]

PROVIDER = "chroma"


def is_not_found(exc: BaseException) -> bool:
    """Whether Chroma says the collection (or database) does not exist."""
    from chromadb.errors import NotFoundError

    return isinstance(exc, NotFoundError)


def translate(exc: BaseException, what: str, where: str) -> EngramError:
    """The engram error for a chromadb (or transport) exception raised while doing ``what``
    against ``where`` (a folder or a server URL); the caller raises it ``from exc``."""
    import httpx
    from chromadb.errors import (
        AuthorizationError,
        ChromaAuthError,
        InvalidArgumentError,
        InvalidDimensionException,
        NotFoundError,
    )

    if isinstance(exc, EngramError):
        return exc
    text = str(exc) or type(exc).__name__
    if isinstance(exc, InvalidDimensionException) or (
        isinstance(exc, InvalidArgumentError) and "dimension" in text.lower()
    ):
        return InvalidInputError(f"chroma {what}: {text}")
    if isinstance(exc, ChromaAuthError | AuthorizationError):
        return ProviderError(f"chroma {what} at {where}: not authorised ({text}); check token and headers",
                             provider=PROVIDER)
    if isinstance(exc, NotFoundError):
        return ProviderError(f"chroma {what} at {where}: {text}", provider=PROVIDER)
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return ProviderTimeoutError(f"chroma {what} at {where}: no answer in time ({text})", provider=PROVIDER)
    if isinstance(exc, httpx.TransportError | ConnectionError) or "could not connect" in text.lower():
        return ProviderError(f"chroma {what}: cannot reach the Chroma server at {where} ({text})",
                             provider=PROVIDER)
    return ProviderError(f"chroma {what} at {where} failed: {type(exc).__name__}: {text}", provider=PROVIDER)
