"""engram's error hierarchy.

Every error engram raises on purpose is an :class:`EngramError`. Catch the narrowest class that
fits; the tree is::

    EngramError
    ├── ConfigurationError              bad or contradictory configuration
    │   └── ProviderNotFoundError       a provider name no installed plugin offers
    │       └── ProviderNotInstalledError   a first-party provider whose extra is not installed
    ├── ProviderError                   a provider failed (store, model, server); wraps the cause
    │   ├── ProviderLoadError           a plugin is installed but fails to import or is not a provider
    │   └── ProviderTimeoutError        a provider call ran past its deadline (also a TimeoutError)
    ├── InvalidInputError               bad input from the caller; nothing was changed (also a ValueError)
    │   ├── InvalidScopeError           no user_id / agent_id / run_id, or a malformed one
    │   ├── InvalidFilterError          unknown operator, wrong value type, malformed tree
    │   └── InvalidMessageError         a message that is not a string or a role/content mapping
    └── MemoryNotFoundError             no memory with that id (also a KeyError)

Providers translate their client's exceptions at the boundary (``raise ProviderError(...) from exc``)
so callers never need to import a driver to handle its errors.
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "EngramError",
    "InvalidFilterError",
    "InvalidInputError",
    "InvalidMessageError",
    "InvalidScopeError",
    "MemoryNotFoundError",
    "ProviderError",
    "ProviderLoadError",
    "ProviderNotFoundError",
    "ProviderNotInstalledError",
    "ProviderTimeoutError",
]


class EngramError(Exception):
    """Base class of every error engram raises on purpose."""


class ConfigurationError(EngramError):
    """The configuration is invalid: a wrong type, an unknown field, contradictory settings."""


class ProviderNotFoundError(ConfigurationError):
    """No installed plugin offers a provider by that name.

    Attributes:
        kind: the provider kind, e.g. ``"vector store"``.
        name: the name asked for.
        available: the names that are installed for that kind.
    """

    def __init__(self, message: str, *, kind: str, name: str, available: list[str]) -> None:
        super().__init__(message)
        self.kind = kind
        self.name = name
        self.available = available


class ProviderNotInstalledError(ProviderNotFoundError):
    """A first-party provider whose plugin is not installed; the message names the pip extra."""

    def __init__(self, message: str, *, kind: str, name: str, available: list[str], extra: str) -> None:
        super().__init__(message, kind=kind, name=name, available=available)
        self.extra = extra


class ProviderError(EngramError):
    """A provider failed while doing its job. ``__cause__`` holds the driver's own exception.

    Attributes:
        provider: the provider's name (``"sqlite"``, ``"openai"``, ...), when known.
    """

    def __init__(self, message: str, *, provider: str | None = None) -> None:
        super().__init__(message)
        self.provider = provider


class ProviderLoadError(ProviderError):
    """A plugin is installed but cannot be used: its import fails, or it is not a provider of the kind."""


class ProviderTimeoutError(ProviderError, TimeoutError):
    """A provider call did not finish within its deadline."""


class InvalidInputError(EngramError, ValueError):
    """The caller's input is invalid. Raised before anything is written: the store is unchanged."""


class InvalidScopeError(InvalidInputError):
    """The scope is missing (no user_id, agent_id or run_id) or one of its ids is malformed."""


class InvalidFilterError(InvalidInputError):
    """A metadata filter is malformed: unknown operator, wrong value type, or a bad AND/OR/NOT tree."""


class InvalidMessageError(InvalidInputError):
    """A message is neither a string nor a mapping with a string ``content`` and a known ``role``."""


class MemoryNotFoundError(EngramError, KeyError):
    """No memory has the given id."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "memory not found"
