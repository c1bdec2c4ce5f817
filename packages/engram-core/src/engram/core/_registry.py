"""Resolve provider names to provider classes through Python entry points.

Built-in providers register through the same entry-point groups as third-party plugins; nothing
is special-cased. Each group is scanned once per :class:`Registry` (on first use), and only the
entry point asked for is imported.
"""

from __future__ import annotations

import difflib
import importlib.metadata as md
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError

from ._protocols import LLM, Embedder, GraphStore, HistoryStore, Reranker, VectorStore
from .errors import ConfigurationError, ProviderLoadError, ProviderNotFoundError, ProviderNotInstalledError

__all__ = ["KINDS", "Kind", "Registry"]


@dataclass(frozen=True, slots=True)
class Kind:
    """A provider kind: its config key, entry-point group, protocol and human name."""

    key: str
    group: str
    protocol: type
    label: str


KINDS: dict[str, Kind] = {
    k.key: k
    for k in (
        Kind("llm", "engram.llms", LLM, "LLM"),
        Kind("embedder", "engram.embedders", Embedder, "embedder"),
        Kind("vector_store", "engram.vector_stores", VectorStore, "vector store"),
        Kind("graph_store", "engram.graph_stores", GraphStore, "graph store"),
        Kind("history_store", "engram.history_stores", HistoryStore, "history store"),
        Kind("reranker", "engram.rerankers", Reranker, "reranker"),
    )
}

# First-party providers shipped as plugins: (kind, name) -> the pip extra that installs them.
FIRST_PARTY_EXTRAS: dict[tuple[str, str], str] = {
    ("vector_store", "qdrant"): "qdrant",
    ("vector_store", "chroma"): "chroma",
    ("graph_store", "kuzu"): "kuzu",
    ("graph_store", "neo4j"): "neo4j",
    ("reranker", "cohere"): "cohere",
    ("embedder", "fastembed"): "fastembed",
    ("reranker", "fastembed"): "fastembed",
}


# URL schemes that name another provider: (kind, scheme) -> provider name. Schemes with a "+"
# suffix (neo4j+s, bolt+ssc) name the provider before the "+". The provider's from_url gets the
# URL unchanged.
URL_SCHEME_ALIASES: dict[tuple[str, str], str] = {
    ("graph_store", "bolt"): "neo4j",
    ("graph_store", "bolt+s"): "neo4j",
    ("graph_store", "bolt+ssc"): "neo4j",
}


def _protocol_members(protocol: type) -> list[str]:
    """Public methods and properties a protocol declares (``__protocol_attrs__`` is 3.12+ only)."""
    return sorted(n for n in vars(protocol) if not n.startswith("_") and callable_or_property(vars(protocol)[n]))


def callable_or_property(obj: Any) -> bool:
    return callable(obj) or isinstance(obj, property)


class Registry:
    """Finds, loads and builds providers.

    Args:
        entry_points: override the installed entry points, ``{group: {name: object or "mod:attr"}}``;
            for tests and for applications that register providers in code.
    """

    def __init__(self, entry_points: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self._overrides = {g: dict(m) for g, m in (entry_points or {}).items()}
        self._scanned: dict[str, dict[str, Any]] = {}
        self._loaded: dict[tuple[str, str], type] = {}
        self._lock = threading.Lock()

    def _kind(self, kind: str) -> Kind:
        try:
            return KINDS[kind]
        except KeyError:
            raise ConfigurationError(f"unknown provider kind {kind!r}; expected one of {sorted(KINDS)}") from None

    def names(self, kind: str) -> list[str]:
        """Installed provider names of a kind, sorted."""
        return sorted(self._entries(self._kind(kind)))

    def _entries(self, kind: Kind) -> dict[str, Any]:
        with self._lock:
            found = self._scanned.get(kind.group)
            if found is None:
                found = {ep.name: ep for ep in md.entry_points(group=kind.group)}
                found.update(self._overrides.get(kind.group, {}))
                self._scanned[kind.group] = found
            return found

    def register(self, kind: str, name: str, provider: Any) -> None:
        """Register a provider class (or ``"module:attr"``) under a name, beside the entry points."""
        k = self._kind(kind)
        self._entries(k)[name] = provider
        self._loaded.pop((kind, name), None)

    def load(self, kind: str, name: str) -> type:
        """Import and return the provider class registered under ``name``.

        Raises:
            ProviderNotInstalledError: a first-party provider whose extra is not installed.
            ProviderNotFoundError: no such name; the message lists the installed ones and the closest.
            ProviderLoadError: the plugin fails to import (its real error is the ``__cause__``) or is
                not a provider of this kind.
        """
        k = self._kind(kind)
        key = (kind, name)
        if key in self._loaded:
            return self._loaded[key]
        entries = self._entries(k)
        if name not in entries:
            available = sorted(entries)
            extra = FIRST_PARTY_EXTRAS.get(key)
            if extra:
                raise ProviderNotInstalledError(
                    f'{k.label} {name!r} is not installed; install it with: pip install "engram[{extra}]"',
                    kind=k.label, name=name, available=available, extra=extra,
                )
            close = difflib.get_close_matches(name, available, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ";"
            raise ProviderNotFoundError(
                f"unknown {k.label} {name!r}{hint} installed: {', '.join(available) or 'none'}",
                kind=k.label, name=name, available=available,
            )
        target = entries[name]
        try:
            if isinstance(target, md.EntryPoint):
                obj = target.load()
            elif isinstance(target, str):
                obj = md.EntryPoint(name=name, value=target, group=k.group).load()
            else:
                obj = target
        except Exception as exc:
            raise ProviderLoadError(
                f"{k.label} {name!r} is installed but failed to import: {type(exc).__name__}: {exc}",
                provider=name,
            ) from exc
        missing = [m for m in _protocol_members(k.protocol) if not hasattr(obj, m)]
        if not isinstance(obj, type) or missing:
            what = "not a class" if not isinstance(obj, type) else f"missing {', '.join(missing)}"
            raise ProviderLoadError(
                f"entry point {name!r} in group {k.group!r} is not a {k.label} provider ({what})",
                provider=name,
            )
        self._loaded[key] = obj
        return obj

    def create(self, kind: str, spec: Any) -> Any:
        """Build a provider from an instance, a name, a URL or ``{"provider": ..., "config": {...}}``.

        Raises:
            ConfigurationError: a bad spec or a config the provider rejects (with its reasons).
            ProviderNotFoundError / ProviderLoadError: see :meth:`load`.
        """
        k = self._kind(kind)
        if isinstance(spec, BaseModel) and hasattr(spec, "provider"):
            spec = spec.model_dump()
        if isinstance(spec, str):
            if "://" in spec:
                scheme = urlsplit(spec).scheme
                if not scheme:
                    raise ConfigurationError(f"{k.label} URL {spec!r} has no scheme")
                # a transport variant names its provider's scheme: neo4j+s:// -> neo4j, bolt:// -> neo4j
                scheme = URL_SCHEME_ALIASES.get((kind, scheme), scheme.split("+", 1)[0])
                cls = self.load(kind, scheme)
                from_url = getattr(cls, "from_url", None)
                if from_url is None:
                    raise ConfigurationError(f"{k.label} {scheme!r} cannot be configured from a URL")
                return self._check(k, scheme, self._build(k, scheme, lambda: from_url(spec)))
            cls = self.load(kind, spec)
            return self._check(k, spec, self._build(k, spec, cls))
        if isinstance(spec, Mapping):
            unknown = set(spec) - {"provider", "config"}
            if "provider" not in spec or unknown:
                raise ConfigurationError(
                    f'{k.label} must be given as {{"provider": name, "config": {{...}}}}; got keys {sorted(spec)}'
                )
            name = spec["provider"]
            config = spec.get("config") or {}
            if not isinstance(name, str) or not isinstance(config, Mapping):
                raise ConfigurationError(f"{k.label}: 'provider' must be a string and 'config' a mapping")
            cls = self.load(kind, name)
            conf_cls = getattr(cls, "Config", None)
            if conf_cls is not None:
                return self._check(k, name, self._build(k, name, lambda: cls(conf_cls(**config))))
            return self._check(k, name, self._build(k, name, lambda: cls(**config)))
        if isinstance(spec, type):  # a provider class: build it with its defaults, as a name would be
            return self._check(k, spec.__name__, self._build(k, spec.__name__, spec))
        return self._check(k, type(spec).__name__, spec)

    @staticmethod
    def _build(k: Kind, name: str, factory: Any) -> Any:
        try:
            return factory()
        except ValidationError as exc:
            raise ConfigurationError(f"invalid config for {k.label} {name!r}:\n{exc}") from None
        except (ConfigurationError, ProviderLoadError):
            raise
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"invalid config for {k.label} {name!r}: {exc}") from exc

    @staticmethod
    def _check(k: Kind, name: str, obj: Any) -> Any:
        if not isinstance(obj, k.protocol):
            raise ConfigurationError(f"{name!r} is not a {k.label}: it does not implement {k.protocol.__name__}")
        return obj
