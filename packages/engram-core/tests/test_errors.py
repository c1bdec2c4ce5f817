"""The error hierarchy: every class where its docstring tree says, with the builtin bases callers catch."""

from __future__ import annotations

import pytest
from engram.core import errors
from engram.core.errors import (
    ConfigurationError,
    EngramError,
    InvalidFilterError,
    InvalidInputError,
    InvalidMessageError,
    InvalidScopeError,
    MemoryNotFoundError,
    ProviderError,
    ProviderLoadError,
    ProviderNotFoundError,
    ProviderNotInstalledError,
    ProviderTimeoutError,
)

TREE = {
    ConfigurationError: EngramError,
    ProviderNotFoundError: ConfigurationError,
    ProviderNotInstalledError: ProviderNotFoundError,
    ProviderError: EngramError,
    ProviderLoadError: ProviderError,
    ProviderTimeoutError: ProviderError,
    InvalidInputError: EngramError,
    InvalidScopeError: InvalidInputError,
    InvalidFilterError: InvalidInputError,
    InvalidMessageError: InvalidInputError,
    MemoryNotFoundError: EngramError,
}


@pytest.mark.parametrize(("cls", "parent"), TREE.items(), ids=lambda c: getattr(c, "__name__", str(c)))
def test_tree(cls: type, parent: type) -> None:
    assert issubclass(cls, parent)
    assert issubclass(cls, EngramError) and issubclass(cls, Exception)
    assert cls.__name__ in (errors.__doc__ or ""), f"{cls.__name__} is missing from the docstring tree"


def test_all_exported() -> None:
    assert set(errors.__all__) == {c.__name__ for c in TREE} | {"EngramError"}


def test_builtin_bases() -> None:
    assert issubclass(InvalidInputError, ValueError)
    assert issubclass(InvalidFilterError, ValueError)
    assert issubclass(MemoryNotFoundError, KeyError)
    assert issubclass(ProviderTimeoutError, TimeoutError)
    assert not issubclass(ProviderError, ValueError)
    assert not issubclass(ConfigurationError, ValueError)
    with pytest.raises(ValueError):
        raise InvalidScopeError("bad scope")
    with pytest.raises(KeyError):
        raise MemoryNotFoundError("no memory with id 'x'")
    with pytest.raises(TimeoutError):
        raise ProviderTimeoutError("slow", provider="sqlite")


def test_memory_not_found_message_is_not_repr() -> None:
    assert str(MemoryNotFoundError("no memory with id 'x'")) == "no memory with id 'x'"
    assert str(MemoryNotFoundError()) == "memory not found"


def test_attributes() -> None:
    e = ProviderNotInstalledError("m", kind="vector store", name="qdrant", available=["memory"], extra="qdrant")
    assert (e.kind, e.name, e.available, e.extra) == ("vector store", "qdrant", ["memory"], "qdrant")
    f = ProviderNotFoundError("m", kind="embedder", name="x", available=[])
    assert f.available == [] and f.name == "x"
    assert ProviderError("boom", provider="sqlite").provider == "sqlite"
    assert ProviderError("boom").provider is None
    assert ProviderTimeoutError("t", provider="openai").provider == "openai"


def test_provider_error_keeps_cause() -> None:
    try:
        try:
            raise OSError("disk full")
        except OSError as exc:
            raise ProviderError("write failed", provider="sqlite") from exc
    except ProviderError as err:
        assert isinstance(err.__cause__, OSError)
